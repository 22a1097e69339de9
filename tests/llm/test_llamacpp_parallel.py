"""Batched decoding in the llama.cpp backend against one sequence at a time, with the real
0.5B model: FRet step 2's pair scores on SciFact (Gecko, Appendix A), FRet step 1's answers
(section 3.2), and the sampler and stop rules of batched writing. The one-at-a-time side is a
backend with one sequence (``n_seq_max=1``), the path geckokit takes with ``--parallel 1``.

Measured on a 2-core AVX-512 machine (``pytest -s`` prints the figures): batched QL and
label log-probabilities equal one pair at a time exactly (gap 0.0 nats, in any batch).
Batched writing is not exact (a token decoded beside other sequences rounds differently),
so FRet step 1 writes one passage at a time by default; ``bench/llm_throughput.py`` prints
how many answers written together equal one at a time, with the speed of each.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from geckokit.fret.rerank import PairScore, PairScorer, load_rerank_prompt
from geckokit.llm.base import BranchingLLM, Generation
from geckokit.llm.llamacpp_batch import PADDING_TOKENS

pytestmark = pytest.mark.slow

TASK = "Given a scientific claim, retrieve documents that support or refute the claim"
#: Issue 37 asks batched pair scores to equal one pair at a time within 0.02 nats; the
#: backend places each pair so that it is computed as it is alone (0.0 measured).
SCORE_ATOL = 0.02
#: SciFact passages read by the tests
WRITTEN = 3


@pytest.fixture(scope="module")
def one_at_a_time(llm_path: str):  # type: ignore[no-untyped-def]
    from geckokit.llm.llamacpp import LlamaCppLLM

    model = LlamaCppLLM(llm_path, n_ctx=2048, n_seq_max=1)
    yield model
    model.close()


@pytest.fixture(scope="module")
def scifact(shared_data: Path) -> dict[str, Any]:
    root = shared_data / "beir" / "scifact"
    with (root / "corpus.jsonl").open() as f:
        passages = [json.loads(line) for line, _ in zip(f, range(WRITTEN), strict=False)]
    with (root / "queries.jsonl").open() as f:
        claims = [json.loads(line)["text"] for line, _ in zip(f, range(4), strict=False)]
    return {"passages": passages, "claims": claims}


def _written(gens: Sequence[Generation]) -> list[tuple[str, int, str]]:
    return [(g.text, g.completion_tokens, g.finish_reason) for g in gens]


def test_batched_writing_decodes_together_and_stops_as_one_at_a_time(  # type: ignore[no-untyped-def]
    llm, one_at_a_time, monkeypatch
) -> None:
    assert isinstance(llm, BranchingLLM) and llm.n_seq_max > 1 and one_at_a_time.n_seq_max == 1
    # one decode per prompt's own part, then one token of each prompt per decode: fewer
    # decodes than tokens written (one at a time takes one per token)
    decodes: list[int] = []
    real = llm._seqs.decode

    def counting(tokens: Sequence[Any]) -> int:
        decodes.append(len(tokens))
        return int(real(tokens))

    monkeypatch.setattr(llm._seqs, "decode", counting)
    system = {"role": "system", "content": "You are a poet. Answer briefly."}
    chats = [
        [system, {"role": "user", "content": f"Write three different words about the {t}."}]
        for t in ("sea", "sky", "forest", "desert")
    ]
    llm.set_shared_prefix(chats)
    try:
        got = llm.generate(chats, max_tokens=16, temperature=0.0)
        assert len(decodes) < sum(g.completion_tokens for g in got)
        # seeded sampling: each prompt takes its own seed, and the same call writes the same
        sampled = [
            llm.generate(chats, max_tokens=16, temperature=1.0, seed=[7, 3, 11, 5])
            for _ in range(2)
        ]
        assert _written(sampled[0]) == _written(sampled[1])
        assert len({g.text for g in sampled[0]}) > 1
    finally:
        llm.set_shared_prefix([])
    # stop strings: each text ends as llama-cpp-python's would
    prompts = ["1, 2, 3, 4,", "a, b, c, d,", "Monday, Tuesday,"]
    stop = [" 7", " h", " Friday"]
    got = llm.generate(prompts, max_tokens=20, temperature=0.0, stop=stop)
    want = [
        one_at_a_time.generate([p], max_tokens=20, temperature=0.0, stop=stop)[0] for p in prompts
    ]
    assert _written(got) == _written(want)
    assert " 7" not in got[0].text and got[0].finish_reason == "stop"


def _gaps(a: list[PairScore], b: list[PairScore]) -> tuple[float, float]:
    ql = max(abs(x.ql - y.ql) for x, y in zip(a, b, strict=True))
    labels = max(
        abs(x.label_logprobs[k] - y.label_logprobs[k])
        for x, y in zip(a, b, strict=True)
        for k in x.label_logprobs
    )
    return ql, labels


def test_batched_pair_scores_equal_one_pair_at_a_time(llm, one_at_a_time, scifact) -> None:  # type: ignore[no-untyped-def]
    prompt = load_rerank_prompt()
    queries = [(TASK, c) for c in scifact["claims"]]
    batched, alone = PairScorer(llm, prompt), PairScorer(one_at_a_time, prompt, parallel=1)
    assert batched.branches is llm and alone.branches is None
    got: list[PairScore] = []
    want: list[PairScore] = []
    try:
        for model in (llm, one_at_a_time):
            model.reset_cache()
            model.usage.reset()
        for p in scifact["passages"][:3]:
            got += batched.score(p["title"], p["text"], queries)
            want += alone.score(p["title"], p["text"], queries)
        ql, labels = _gaps(got, want)
        message = (
            f"{len(got)} pairs, batched against one at a time: max |QL| gap {ql:.4f} nats, "
            f"max |label log-prob| gap {labels:.4f} nats"
        )
        print("\n" + message)
        assert ql <= SCORE_ATOL and labels <= SCORE_ATOL, message
        # the same tokens evaluated: only the padding between branches is extra
        assert llm.usage.prompt_tokens_evaluated == one_at_a_time.usage.prompt_tokens_evaluated
        assert llm.usage.extra.get(PADDING_TOKENS, 0) > 0
        # a pair's scores do not depend on the pairs batched with it
        p = scifact["passages"][0]
        others = [
            batched.score(p["title"], p["text"], queries[-1:]),
            batched.score(p["title"], p["text"], queries[::-1])[:1],
            batched.score(p["title"], p["text"], [queries[1], queries[-1]])[1:],
        ]
        ql, labels = _gaps([x[0] for x in others], [want[len(queries) - 1]] * len(others))
        message = f"the same pair in other batches: max |QL| gap {ql:.4f}, label {labels:.4f} nats"
        print(message)
        assert ql <= SCORE_ATOL and labels <= SCORE_ATOL, message
    finally:
        llm.set_shared_tokens([])
        one_at_a_time.set_shared_tokens([])
