"""The estimate's speed probe with the real 0.5B model: writing is timed with as many answers
in one call as FRet step 1 writes together (``generate.parallel``)."""

from __future__ import annotations

import pytest

from geckokit.fret.cost import estimate_cost, probe_rates

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("parallel", [1, 3])
def test_the_probe_writes_as_many_answers_as_are_written_together(llm, parallel: int) -> None:
    before = llm.usage.copy()
    rates = probe_rates(llm, parallel=parallel)
    spent = llm.usage.since(before)
    assert rates is not None
    assert rates["prompt_tokens_per_s"] > 0 and rates["written_tokens_per_s"] > 0
    # the untimed warm-up writes nothing; each timed answer at most 16 tokens, at least one
    assert parallel <= spent["completion_tokens"] <= 16 * parallel
    if parallel > 1:  # one answer's worth would mean the prompts were written as one
        assert spent["completion_tokens"] > 16


def test_the_estimate_names_the_answers_written_together(llm) -> None:
    import pyarrow as pa

    from geckokit.cli.distill import describe_estimate
    from geckokit.pipeline.distill import load_config

    passages = pa.table({"passage_id": ["a", "b"], "text": ["A passage about seeds.", "Rain."]})
    config = load_config(None, {"corpus": "unused", "generate.parallel": 2})
    got = estimate_cost(passages, config, llm, stages=["generate"])
    assert got["written_together"] == 2 and got["seconds"] is not None
    assert "(2 answers written together)" in describe_estimate(got)
    # nothing left to write: no answers written together, and none named
    left = estimate_cost(passages, config, llm, stages=["mine"])
    assert left["written_together"] == 1 and "written together" not in describe_estimate(left)
