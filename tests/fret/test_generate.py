"""FRet step 1's stage with the scripted LLM: the temperature of each attempt, and the prompt
cache used only through the declared ability (the real model: test_generate_run.py)."""

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
    """Records the temperature of every generate call."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.temperatures: list[float] = []

    def generate(
        self, prompts: Sequence[Prompt], *, temperature: float = 0.0, **kwargs: Any
    ) -> list[Generation]:
        self.temperatures.append(temperature)
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
    QueryGenerator(fresh, load_generate_prompt(), GenerateConfig(reuse_prefix=False))(PASSAGES)
    assert fresh.events == ["prefix of 2", "reset", "reset"]  # one attempt per passage
