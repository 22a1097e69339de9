"""LLMs behind servers get several passages at once: FRet step 1 hands them as many prompts
per call as they send requests at once, and step 2 scores as many passages at once; an
in-process model still gets one passage at a time by default. Plumbing, with a scripted LLM
that declares itself served (the real servers: tests/fret/test_ray_fret.py, bench/scale.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from geckokit.fret.generate import GenerateConfig, QueryGenerator
from geckokit.fret.prompts import load_generate_prompt
from geckokit.llm.base import ServedLLM
from geckokit.testing import ScriptedLLM


class _Served(ScriptedLLM):
    """A scripted LLM that says it is behind servers taking ``at_once`` requests at once;
    records each call's prompts and the most scoring calls in flight together."""

    base_url = "http://127.0.0.1:9/v1"

    def __init__(self, at_once: int) -> None:
        super().__init__()
        self.at_once = at_once
        self.generate_calls: list[int] = []
        self.in_flight = self.most_in_flight = 0
        self._lock = threading.Lock()

    @property
    def max_concurrency(self) -> int:
        return self.at_once

    def generate(self, prompts: Sequence[Any], **kw: Any) -> Any:
        self.generate_calls.append(len(prompts))
        return super().generate(prompts, **kw)

    def score(self, prompts: Sequence[Any], continuations: Sequence[str]) -> Any:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(0.05)  # a request's time on the server
        try:
            return super().score(prompts, continuations)
        finally:
            with self._lock:
                self.in_flight -= 1


def _passages(n: int) -> pa.Table:
    return pa.table(
        {
            "passage_id": [f"p{i}" for i in range(n)],
            "title": [""] * n,
            "text": [
                f"Passage {i} about zebras, giraffes and elephants number {i}." for i in range(n)
            ],
        }
    )


def test_a_served_llm_is_handed_as_many_passages_as_it_sends_requests_at_once() -> None:
    llm = _Served(3)
    assert isinstance(llm, ServedLLM)
    stage = QueryGenerator(llm, load_generate_prompt(None), GenerateConfig(max_attempts=1))
    assert stage.rows_per_call == 3
    rows = stage(_passages(7))
    assert llm.generate_calls == [3, 3, 1]
    assert sorted(set(rows["passage_id"].to_pylist())) == [f"p{i}" for i in range(7)]
    # a larger parallel setting wins
    wide = QueryGenerator(_Served(3), load_generate_prompt(None), GenerateConfig(parallel=5))
    assert wide.rows_per_call == 5


def test_an_in_process_llm_writes_one_passage_at_a_time_by_default() -> None:
    llm = ScriptedLLM()
    stage = QueryGenerator(llm, load_generate_prompt(None), GenerateConfig(max_attempts=1))
    assert stage.rows_per_call == 1
    assert (
        QueryGenerator(llm, load_generate_prompt(None), GenerateConfig(parallel=4)).rows_per_call
        == 4
    )


def test_a_served_llm_scores_several_passages_at_once_with_the_same_scores() -> None:
    from geckokit.fret.mine_run import _scoring_stage
    from geckokit.fret.rerank import load_rerank_prompt

    passages = {
        f"p{i}": {"title": "", "text": f"zebras and giraffes, passage {i}"} for i in range(6)
    }
    queries = {f"q{i}": ("retrieve passages", f"where do zebras live {i}") for i in range(6)}
    batch = pa.table(
        {
            "passage_id": list(passages),
            "query_ids": [[f"q{i}", f"q{(i + 1) % 6}"] for i in range(6)],
        }
    )

    def run(llm: ScriptedLLM) -> pa.Table:
        stage = _scoring_stage(
            llm,
            prompt=load_rerank_prompt(),
            passage_max_tokens=384,
            parallel=1,
            passages=passages,
            queries=queries,
        )
        return stage(batch).drop_columns(["seconds"])

    served = _Served(4)
    together = run(served)
    assert served.most_in_flight > 1  # passages scored at once
    alone = run(ScriptedLLM())
    assert together.equals(alone)
