"""FRet step 1's stage with the scripted LLM: the temperature of each attempt, the prompt
cache used only through the declared ability, and the rounds that hand ``parallel``
passages to one call, each with its own seeds (the real model: test_generate_run.py, and
tests/llm/test_llamacpp_parallel.py for batched against one-at-a-time answers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from geckokit.fret.generate import GenerateConfig, QueryGenerator, attempt_temperature
from geckokit.fret.prompts import load_generate_prompt
from geckokit.llm.base import Generation, Prompt
from geckokit.testing import ScriptedLLM

PASSAGES = pa.table(
    {
        "passage_id": ["p0", "p1"],
        "title": ["", "Relays"],
        "text": ["Bridges help users behind censoring firewalls.", "A relay forwards traffic."],
    }
)


class Recording(ScriptedLLM):
    """Records the temperature, the number of prompts and the seeds of every generate call."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.temperatures: list[float] = []
        self.sizes: list[int] = []
        self.seeds: list[Any] = []

    def generate(
        self, prompts: Sequence[Prompt], *, temperature: float = 0.0, **kwargs: Any
    ) -> list[Generation]:
        self.temperatures.append(temperature)
        self.sizes.append(len(prompts))
        self.seeds.append(kwargs.get("seed"))
        return super().generate(prompts, temperature=temperature, **kwargs)


class Caching(ScriptedLLM):
    """A scripted LLM that declares the prefix-caching ability (by having its methods)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.events: list[str] = []

    def set_shared_prefix(self, prompts: Sequence[Prompt]) -> int:
        self.events.append(f"prefix of {len(prompts)}")
        return 1

    def reset_cache(self) -> None:
        self.events.append("reset")


def test_retries_sample_at_the_retry_temperature_at_least() -> None:
    config = GenerateConfig(temperature=0.0, retry_temperature=0.9, max_attempts=3)
    assert [attempt_temperature(config, a) for a in range(3)] == [0.0, 0.9, 0.9]
    hot = GenerateConfig(temperature=1.2, retry_temperature=0.9)
    assert [attempt_temperature(hot, a) for a in range(2)] == [1.2, 1.2]
    llm = Recording(answer=lambda prompt: "not json")  # every attempt is rejected
    rows = QueryGenerator(llm, load_generate_prompt(), config)(PASSAGES.slice(0, 1))
    assert rows["reject_reason"].to_pylist() == ["no_json"] * 3
    assert llm.temperatures == [0.0, 0.9, 0.9]


def test_an_llm_without_a_prompt_cache_writes_every_prompt_whole() -> None:
    llm = ScriptedLLM()
    rows = QueryGenerator(llm, load_generate_prompt())(PASSAGES)
    assert rows["reject_reason"].to_pylist() == [None, None]
    assert llm.usage.requests == 2


def test_a_prompt_cache_is_pinned_once_and_reset_per_attempt_without_reuse() -> None:
    llm = Caching()
    generator = QueryGenerator(llm, load_generate_prompt())
    assert generator.cache is llm and llm.events == ["prefix of 2"]
    generator(PASSAGES)
    assert llm.events == ["prefix of 2"]  # reused between passages
    fresh = Caching()
    one_by_one = GenerateConfig(reuse_prefix=False, parallel=1)
    QueryGenerator(fresh, load_generate_prompt(), one_by_one)(PASSAGES)
    assert fresh.events == ["prefix of 2", "reset", "reset"]  # one attempt per passage
    together = Caching()
    QueryGenerator(
        together, load_generate_prompt(), GenerateConfig(reuse_prefix=False, parallel=2)
    )(PASSAGES)
    assert together.events == ["prefix of 2", "reset"]  # one call wrote both


def test_passages_are_written_together_each_with_its_own_seeds() -> None:
    from geckokit.fret.generate import passage_seed

    passages = pa.concat_tables([PASSAGES] * 3).set_column(
        0, "passage_id", pa.array([f"p{i}" for i in range(6)])
    )
    config = GenerateConfig(parallel=4, queries_per_passage=2, max_attempts=1)
    llm = Recording()
    rows = QueryGenerator(llm, load_generate_prompt(), config)(passages)
    # each round hands over the next slot of every passage, four prompts per call
    assert llm.sizes == [4, 2, 4, 2]
    ids = [f"p{i}" for i in range(6)]
    assert llm.seeds[0] == [passage_seed(0, p, 0) for p in ids[:4]]
    assert llm.seeds[3] == [passage_seed(0, p, 1) for p in ids[4:]]
    # rows come passage by passage, slot by slot, as one passage at a time writes them
    assert rows["query_id"].to_pylist() == [f"{p}:q{s}" for p in ids for s in (0, 1)]
    one = Recording()
    alone = QueryGenerator(one, load_generate_prompt(), config.model_copy(update={"parallel": 1}))
    same = alone(passages)
    assert one.sizes == [1] * 12
    assert same.drop(["seconds"]).equals(rows.drop(["seconds"]))


def test_retries_of_several_passages_share_a_call_at_the_retry_temperature() -> None:
    llm = Recording(answer=lambda prompt: "not json")
    config = GenerateConfig(temperature=0.0, retry_temperature=0.9, max_attempts=2, parallel=8)
    rows = QueryGenerator(llm, load_generate_prompt(), config)(PASSAGES)
    assert llm.sizes == [2, 2] and llm.temperatures == [0.0, 0.9]
    assert rows["attempt"].to_pylist() == [0, 1, 0, 1]
    assert rows["final"].to_pylist() == [False, True, False, True]
