"""The in-process llama.cpp backend with the real Qwen2.5-Coder-0.5B model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from geckokit.llm import yes_no_labels

pytestmark = pytest.mark.slow

PASSAGE = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. "
    "It was designed by the company of engineer Gustave Eiffel and built for the 1889 World's Fair."
)
#: Log-probabilities of one text reached through different decode paths (a token evaluated
#: alone or inside a batch, a cached prefix or a fresh one) differ in rounding: llama.cpp
#: picks other kernels for a single token than for a batch, and with quantized weights the
#: gap reached 0.026 nats on an AVX-512 build with llama.cpp's repacked weights (under 0.02
#: with AVX2 alone), and 0.052 with the weights in the file's layout, the backend's default
#: (test_chat_prompts_for_scoring_and_labels: "Yes" scored cold, then as a label after it).
PATH_ATOL = 0.06
PREFIX = f"Passage: {PASSAGE}\nQuery:"
QUERY = " where is the eiffel tower"


def test_generate_is_deterministic_when_greedy(llm) -> None:
    chat = [{"role": "user", "content": "Name the capital of France in one word."}]
    first, second = llm.generate([chat, chat], max_tokens=8, temperature=0.0)
    assert "Paris" in first.text
    assert first.text == second.text
    assert first.prompt_tokens > 10 and 0 < first.completion_tokens <= 8


def test_generate_respects_seed_and_stop(llm) -> None:
    system = {"role": "system", "content": "You are a poet. Answer briefly."}
    sea = [system, {"role": "user", "content": "Write three different words about the sea."}]
    sky = [system, {"role": "user", "content": "Write three different words about the sky."}]
    shared = llm.set_shared_prefix([sea, sky])
    try:
        assert shared > 10
        a = llm.generate([sea], max_tokens=12, temperature=1.0, seed=7)[0]
        llm.generate([sky], max_tokens=12, temperature=1.0, seed=3)
        b = llm.generate([sea], max_tokens=12, temperature=1.0, seed=7)[0]
        llm.reset_cache()
        c = llm.generate([sea], max_tokens=12, temperature=1.0, seed=7)[0]
        # with a declared shared prefix the result does not depend on what ran before
        assert a.text == b.text == c.text
        llm.usage.reset()
        llm.generate([sky], max_tokens=4, temperature=0.0)
        assert llm.usage.prompt_tokens_cached >= shared
    finally:
        llm.set_shared_prefix([])
    counted = llm.generate(["1, 2, 3, 4,"], max_tokens=20, temperature=0.0, stop=[" 7"])[0]
    assert " 7" not in counted.text and "5" in counted.text
    assert counted.finish_reason == "stop"


def test_the_same_prompt_again_reuses_itself(llm) -> None:
    # another query slot or a retry for the same passage: only the last prompt token is
    # evaluated again, and the answer is the one a fresh evaluation gives
    system = {"role": "system", "content": "You are a poet. Answer briefly."}
    sea = [system, {"role": "user", "content": "Write three different words about the sea."}]
    sky = [system, {"role": "user", "content": "Write three different words about the sky."}]
    llm.set_shared_prefix([sea, sky])
    try:
        llm.reset_cache()
        first = llm.generate([sea], max_tokens=12, temperature=0.0)[0]
        llm.usage.reset()
        again = llm.generate([sea], max_tokens=12, temperature=0.0)[0]
        assert llm.usage.prompt_tokens_evaluated == 1
        assert again.text == first.text
        # another prompt in between: back to the shared prefix
        llm.generate([sky], max_tokens=4, temperature=0.0)
        llm.usage.reset()
        llm.generate([sea], max_tokens=1, temperature=0.0)
        assert llm.usage.prompt_tokens_evaluated > 5
    finally:
        llm.set_shared_prefix([])


def test_score_reads_the_previous_position(llm) -> None:
    # llama-cpp-python's echo path reports -21.1 for "iff" (the following position's logits);
    # the right value, from the logits before the token, is near 0.
    score = llm.score([PREFIX], [QUERY])[0]
    assert len(score.tokens) == len(score.token_logprobs) >= 5
    assert "".join(score.tokens) == QUERY
    assert all(math.isfinite(v) and v <= 0 for v in score.token_logprobs)
    by_piece = dict(zip(score.tokens, score.token_logprobs, strict=True))
    assert by_piece["iff"] > -1.0
    assert score.total == pytest.approx(sum(score.token_logprobs))
    assert score.mean == pytest.approx(score.total / len(score.tokens))


def test_score_matches_a_full_logits_evaluation(llm, llm_path: str) -> None:
    import llama_cpp
    from llama_cpp import Llama

    from geckokit.llm.llamacpp import _file_layout

    # the weights in the file's layout, as the backend loads them
    with _file_layout(llama_cpp):
        reference = Llama(
            model_path=llm_path, n_ctx=512, logits_all=True, verbose=False, n_threads=2
        )
    try:
        prompt_ids = reference.tokenize(PREFIX.encode(), add_bos=True, special=True)
        cont_ids = reference.tokenize(QUERY.encode(), add_bos=False)
        reference.eval(prompt_ids + cont_ids)
        expected = []
        for k, tok in enumerate(cont_ids):
            row = np.asarray(reference.scores[len(prompt_ids) - 1 + k], dtype=np.float64)
            expected.append(row[tok] - (row.max() + math.log(np.exp(row - row.max()).sum())))
    finally:
        reference.close()
    got = llm.score([PREFIX], [QUERY])[0].token_logprobs
    assert np.allclose(got, expected, atol=PATH_ATOL)


def test_prefix_is_evaluated_once(llm) -> None:
    llm.reset_cache()
    llm.usage.reset()
    llm.score([PREFIX], [QUERY])
    first = llm.usage.prompt_tokens_evaluated
    llm.usage.reset()
    again = llm.score([PREFIX, PREFIX], [" who designed the eiffel tower", " when was it built"])
    later = llm.usage.prompt_tokens_evaluated
    # only the queries (plus the one position before each) are evaluated the second time
    assert later <= sum(len(s.tokens) + 1 for s in again)
    assert later < first / 3
    assert llm.usage.prompt_tokens_cached > 0
    fresh = llm.score([PREFIX], [" who designed the eiffel tower"])[0]
    llm.reset_cache()
    cold = llm.score([PREFIX], [" who designed the eiffel tower"])[0]
    assert np.allclose(fresh.token_logprobs, cold.token_logprobs, atol=PATH_ATOL)


def test_label_logprobs_sum_spellings(llm) -> None:
    prompt = "Question: Is Paris the capital of France? Answer Yes or No.\nAnswer:"
    labels = yes_no_labels()
    result = llm.label_logprobs([prompt], labels)[0]
    assert set(result) == {"yes", "no"}
    assert result["yes"] > result["no"]
    # one call, one distribution: the label's value is the sum over its spellings
    both = llm.label_logprobs(
        [prompt], {"yes": labels["yes"], **{f"={s}": [s] for s in labels["yes"]}}
    )[0]
    singles = [both[f"={s}"] for s in labels["yes"]]
    assert both["yes"] >= max(singles)
    assert math.exp(both["yes"]) == pytest.approx(sum(math.exp(v) for v in singles), rel=1e-9)
    assert both["yes"] == pytest.approx(result["yes"], abs=PATH_ATOL)


def test_chat_prompts_for_scoring_and_labels(llm) -> None:
    chat = [{"role": "user", "content": "Is the sky blue on a clear day? Answer Yes or No."}]
    labels = llm.label_logprobs([chat], yes_no_labels())[0]
    assert labels["yes"] > labels["no"]
    score = llm.score([chat], ["Yes"])[0]
    assert score.total == pytest.approx(
        llm.label_logprobs([chat], {"y": ["Yes"]})[0]["y"], abs=PATH_ATOL
    )


def test_multi_token_label_spelling(llm) -> None:
    prompt = "Question: Is water wet? Answer Yes or No.\nAnswer:"
    spelled = " Yes, definitely"
    assert len(llm.tokenize(spelled)) > 1
    got = llm.label_logprobs([prompt], {"sure": [spelled]})[0]["sure"]
    assert got == pytest.approx(llm.score([prompt], [spelled])[0].total, abs=PATH_ATOL)


def test_bad_input_is_refused(llm) -> None:
    with pytest.raises(ValueError, match="continuations"):
        llm.score(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="empty continuation"):
        llm.score(["a"], [""])
    with pytest.raises(ValueError, match="spellings"):
        llm.label_logprobs(["a"], {"yes": "Yes"})
    with pytest.raises(ValueError, match="do not fit the context"):
        llm.score(["word " * 3000], [" x"])


def test_rows_evaluated_in_aligned_blocks_do_not_depend_on_the_cache(llm) -> None:
    """eval_rows(..., block=): the same rows, bit for bit, whether the prompt is evaluated
    from nothing or after another one that shares a prefix of some blocks (the cache then
    serves the whole blocks), and whatever else was evaluated in between."""
    shared = llm.tokenize(PREFIX * 4, add_bos=True)  # some 200 tokens
    a = shared + llm.tokenize(" who designed the eiffel tower")
    b = shared + llm.tokenize(" when was it built and by whom")
    where = [len(b) - 3, len(b) - 1]
    llm.reset_cache()
    cold = llm.eval_rows(b, where, block=32)
    llm.eval_rows(a, [len(a) - 1], block=32)
    llm.generate(["The capital of France is"], max_tokens=2, temperature=0.0)
    llm.eval_rows(a, [len(a) - 1], block=32)
    llm.usage.reset()
    warm = llm.eval_rows(b, where, block=32)
    assert llm.usage.prompt_tokens_cached == len(shared) - len(shared) % 32
    assert all(np.array_equal(warm[p], cold[p]) for p in where)
    with pytest.raises(ValueError, match="block must lie in"):
        llm.eval_rows(b, where, block=4096)
