"""The test tools themselves: the scripted LLM answers, scores and counts as documented, and
the tiny encoder is deterministic and puts texts that share words near each other."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from geckokit.llm.base import LLM, PrefixCachingLLM, TokenizingLLM, yes_no_labels
from geckokit.testing import (
    TINY_ENCODER,
    ScriptedLLM,
    TinyEncoder,
    fret_answer,
    tiny_encoder,
)


def test_the_scripted_llm_is_an_llm_without_optional_abilities() -> None:
    llm = ScriptedLLM()
    assert isinstance(llm, LLM)
    assert not isinstance(llm, TokenizingLLM) and not isinstance(llm, PrefixCachingLLM)


def test_the_scripted_llm_answers_from_its_script_and_counts_usage() -> None:
    llm = ScriptedLLM(answer=lambda prompt: f"echo {prompt}")
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]
    [gen] = llm.generate([chat])
    assert gen.text == "echo be brief\nhi there" and gen.finish_reason == "stop"
    assert (gen.prompt_tokens, gen.completion_tokens) == (4, 5)
    [cut] = llm.generate(["one two three"], max_tokens=2)
    assert cut.text == "echo one" and cut.finish_reason == "length"
    assert llm.generate(["a"], stop=[" "])[0].text == "echo"
    assert llm.usage.requests == 3
    assert llm.usage.prompt_tokens_evaluated == 4 + 3 + 1
    assert llm.usage.completion_tokens == 5 + 2 + 1


def test_the_default_answer_is_a_valid_fret_query_about_the_passage() -> None:
    from geckokit.fret.parse import parse_task_query
    from geckokit.fret.validate import check_query

    text = "Passage: The ControlPort option opens a port for controllers to connect."
    task, query = parse_task_query(fret_answer(text))
    assert query == "which passage talks about controllers and controlport"
    passage = text.removeprefix("Passage: ")
    assert check_query(task, query, title="", passage=passage) is None
    assert json.loads(fret_answer(text)) == json.loads(fret_answer(text))  # repeatable


def test_the_scripted_llm_scores_words_and_labels_deterministically() -> None:
    llm = ScriptedLLM()
    [s] = llm.score(["a passage about tor relays"], [" tor bridges"])
    assert s.tokens == ("tor", "bridges")
    assert s.token_logprobs == pytest.approx((math.log(0.5), math.log(0.05)))
    labels = yes_no_labels()
    first = llm.label_logprobs(["relevant? answer:"], labels)[0]
    assert first == llm.label_logprobs(["relevant? answer:"], labels)[0]
    assert math.exp(first["yes"]) + math.exp(first["no"]) == pytest.approx(1.0)
    assert 0.05 <= math.exp(first["yes"]) < 0.95
    fixed = ScriptedLLM(relevance=lambda prompt: 0.8)
    assert fixed.label_logprobs(["x"], labels)[0] == pytest.approx(
        {"yes": math.log(0.8), "no": math.log(0.2)}
    )
    with pytest.raises(ValueError, match="2 prompts but 1 continuations"):
        llm.score(["a", "b"], ["c"])


def test_the_scripted_llm_stops_like_a_ctrl_c_at_its_request_limit() -> None:
    llm = ScriptedLLM(stop_after=2)
    llm.generate(["a", "b"])
    with pytest.raises(KeyboardInterrupt):
        llm.score(["c"], [" d"])
    assert llm.usage.requests == 2
    llm.stop_after = None
    llm.score(["c"], [" d"])
    assert llm.usage.requests == 3


def test_the_tiny_encoder_puts_texts_that_share_words_near() -> None:
    encoder = TinyEncoder(dim=32)
    vectors = encoder.encode(
        ["tor relay bandwidth", "relay bandwidth limits", "chocolate cake recipe"],
        batch_size=2,
        normalize_embeddings=True,
        show_progress_bar=False,
        convert_to_numpy=True,
    )
    assert vectors.shape == (3, 32) and vectors.dtype == np.float32
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0, 1.0])
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    again = TinyEncoder(dim=32).encode("tor relay bandwidth", normalize_embeddings=True)
    assert again.shape == (32,) and np.array_equal(again, vectors[0])  # one text: one vector
    assert encoder.calls == [3] and encoder.get_embedding_dimension() == 32
    with pytest.raises(ValueError, match="dim must be at least 2"):
        TinyEncoder(dim=1)


def test_a_tiny_encoder_reference_is_named_and_not_pinned() -> None:
    ref = tiny_encoder()
    assert ref.name == TINY_ENCODER and not ref.pinned and ref.cache_name == TINY_ENCODER
    assert isinstance(ref.model, TinyEncoder)
