"""The optional abilities of an LLM are protocols that the backends name as bases, and what
uses them checks them with ``isinstance``: each backend declares what it can do, and an LLM
without an ability takes the general path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from geckokit.fret.rerank import PairScorer, load_rerank_prompt
from geckokit.llm import model_fingerprint
from geckokit.llm.base import (
    LLM,
    BranchingLLM,
    LocalFileLLM,
    LogitRowsLLM,
    PrefixCachingLLM,
    ServedLLM,
    TokenizingLLM,
)
from geckokit.testing import ScriptedLLM


def _bases(cls: type) -> set[type]:
    return set(cls.__mro__)


def test_each_backend_declares_its_abilities() -> None:
    from geckokit.llm.llamacpp import LlamaCppLLM
    from geckokit.llm.openai_http import OpenAICompatibleLLM
    from geckokit.llm.transformers_backend import TransformersLLM

    abilities = {
        TokenizingLLM,
        PrefixCachingLLM,
        LogitRowsLLM,
        BranchingLLM,
        LocalFileLLM,
        ServedLLM,
    }
    assert _bases(LlamaCppLLM) & abilities == abilities - {ServedLLM}
    assert _bases(OpenAICompatibleLLM) & abilities == {ServedLLM}
    assert _bases(TransformersLLM) & abilities == set()
    for backend in (LlamaCppLLM, OpenAICompatibleLLM, TransformersLLM):
        assert LLM in _bases(backend)


class Words(ScriptedLLM):
    """A scripted LLM with a tokenizer (one token per character), and nothing more."""

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = False) -> list[int]:
        return [ord(c) for c in text]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return "".join(chr(t) for t in tokens)


def test_a_tokenizer_cuts_passages_by_tokens_and_the_rest_by_characters() -> None:
    prompt = load_rerank_prompt()
    text = "x" * 100
    tokens = PairScorer(Words(), prompt, passage_max_tokens=16)
    assert isinstance(Words(), TokenizingLLM) and not isinstance(Words(), LogitRowsLLM)
    assert tokens.tokenizer is not None and tokens.rows is None
    assert "x" * 16 + "x" not in tokens.passage_text("", text)
    plain = PairScorer(ScriptedLLM(), prompt, passage_max_tokens=16)
    assert plain.tokenizer is None and "x" * 64 in plain.passage_text("", text)


def test_without_logits_rows_each_pair_costs_two_requests() -> None:
    llm = ScriptedLLM()
    scores = PairScorer(llm, load_rerank_prompt()).score(
        "Relays", "A relay forwards traffic.", [("Given a question", "what forwards traffic")] * 3
    )
    assert len(scores) == 3 and llm.usage.requests == 6
    assert all(s.ql <= 0 and s.rc <= 0 for s in scores)


class _Local(ScriptedLLM):
    def __init__(self, path: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_path = path


class _Served(ScriptedLLM):
    base_url = "http://127.0.0.1:8081/v1"
    max_concurrency = 4  # requests it sends at once


def test_the_fingerprint_names_where_the_model_is() -> None:
    assert model_fingerprint(ScriptedLLM()) == {"id": "scripted", "backend": "ScriptedLLM"}
    local = model_fingerprint(_Local("/models/small.gguf"))
    assert local["path"] == "/models/small.gguf" and "url" not in local
    served = model_fingerprint(_Served())
    assert served["url"] == "http://127.0.0.1:8081/v1" and "path" not in served


@pytest.mark.parametrize("ability", [TokenizingLLM, PrefixCachingLLM, LogitRowsLLM])
def test_a_method_missing_leaves_the_ability_undeclared(ability: type) -> None:
    class Half(ScriptedLLM):
        def tokenize(self, text: str, **kwargs: object) -> list[int]:
            return []

    assert not isinstance(Half(), ability)
