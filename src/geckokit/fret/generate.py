"""FRet step 1 (Gecko, section 3.2): an LLM writes a task description and a query per passage.

For each passage a task type is drawn uniformly from the prompt's pool (the paper found
diverse tasks best), the few-shot chat is completed, the JSON answer parsed and the query
validated. A failed attempt is retried with a new seed, at ``retry_temperature`` at least, up
to ``max_attempts`` times; every failed attempt is kept as a reject row with its reason, so
nothing is dropped silently.

The passages of a batch are written ``parallel`` at a time: each round hands the LLM the
next attempt of every passage still writing, in one call per ``parallel`` prompts, and a
backend that decodes several sequences at once (the in-process llama.cpp one) writes them
together. Each passage keeps its own seeds, but a token decoded beside other sequences
rounds differently, so at temperature 0 some answers change with the passages that share
their call (written four at a time, 7 of 16 SciFact answers equalled one at a time in
``bench/llm_throughput.py``): the default writes one passage at a time, and its answers depend on nothing but the passage and the seed.
An LLM behind servers (:class:`~geckokit.llm.base.ServedLLM`) sends each prompt as a
request of its own, so its answers never depend on the call: it is handed as many passages
at once as it sends requests at once (its ``max_concurrency``), or ``parallel`` if more.

The stage is :class:`QueryGenerator`: built once (prompt, LLM), then called on a batch of
passages (``pyarrow.Table`` in, ``pyarrow.Table`` out), locally or under Ray Data.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from geckokit.fret.parse import ParseError, parse_task_query
from geckokit.fret.prompts import GeneratePrompt
from geckokit.fret.validate import ValidationConfig, check_query
from geckokit.llm.base import LLM, Generation, Message, PrefixCachingLLM, ServedLLM

#: Passages written together by default: one, so that an answer does not depend on which
#: passages share its call (see the module docstring). A larger value trades that for speed;
#: the default llama.cpp context (4,096 tokens) holds the bundled prompt's few-shot prefix
#: (about 850 tokens) and four passages of up to 2,000 characters with their answers.
DEFAULT_PARALLEL = 1

#: One row per attempt outcome: accepted queries have ``reject_reason`` null.
GENERATION_SCHEMA = pa.schema(
    [
        ("query_id", pa.string()),
        ("passage_id", pa.string()),
        ("task_type", pa.string()),
        ("task", pa.string()),
        ("query", pa.string()),
        ("raw", pa.string()),
        ("attempt", pa.int32()),
        ("seed", pa.int64()),
        ("reject_reason", pa.string()),
        ("final", pa.bool_()),  # for rejects: the passage ended this query slot without a query
        ("seconds", pa.float64()),
        ("prompt_tokens", pa.int32()),
        ("completion_tokens", pa.int32()),
    ]
)


class GenerateConfig(BaseModel):
    """Settings of FRet step 1."""

    model_config = ConfigDict(extra="forbid")  # a misspelt setting is an error

    queries_per_passage: int = Field(1, ge=1, le=16, description="query slots per passage")
    max_attempts: int = Field(3, ge=1, le=10, description="tries per slot, each with a new seed")
    temperature: float = Field(
        0.7, ge=0.0, le=2.0, description="sampling temperature of the first attempt"
    )
    retry_temperature: float = Field(
        0.9, ge=0.0, le=2.0, description="at least this much on retries, so they differ"
    )
    max_tokens: int = Field(128, ge=16, le=1024, description="answer length limit in tokens")
    passage_max_chars: int = Field(
        2000, ge=100, description="passages are cut to this length in the prompt"
    )
    seed: int = 0
    task_types: list[str] | None = Field(
        None, description="restrict the pool (default: all of the prompt's)"
    )
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    reuse_prefix: bool = Field(True, description="keep the LLM's prefix cache between passages")
    parallel: int = Field(
        DEFAULT_PARALLEL,
        ge=1,
        le=64,
        description="passages whose answers the LLM writes together (1: one at a time)",
    )


#: GenerateConfig fields that say how the LLM is driven, not what it is asked: outside the
#: run's identity, so a run resumes with other values
DRIVING = ("reuse_prefix", "parallel")


def passage_seed(seed: int, passage_id: str, slot: int = 0) -> int:
    """A per-passage seed independent of order and sharding, so reruns agree."""
    digest = hashlib.sha256(f"{seed}\x1f{passage_id}\x1f{slot}".encode()).digest()
    return int.from_bytes(digest[:6], "big")


def attempt_temperature(config: GenerateConfig, attempt: int) -> float:
    """The sampling temperature of ``attempt`` (0 first): ``temperature`` first, then at least
    ``retry_temperature``, so that a retry after a rejected answer differs from it even when
    the first attempt decodes greedily."""
    return config.temperature if attempt == 0 else max(config.temperature, config.retry_temperature)


def task_type_pool(prompt: GeneratePrompt, names: list[str] | None) -> list[str]:
    """The task types query slots are drawn from: ``names`` (each checked against the
    prompt) or, by default, the prompt's whole pool."""
    pool = names or [t.name for t in prompt.task_types]
    for name in pool:
        prompt.task_type(name)  # raises on a name the prompt does not define
    return pool


class QueryGenerator:
    """FRet step 1 as a stage: ``generator(passages) -> generation rows``."""

    def __init__(
        self, llm: LLM, prompt: GeneratePrompt, config: GenerateConfig | None = None
    ) -> None:
        self.llm = llm
        self.prompt = prompt
        self.config = config or GenerateConfig()
        names = self.task_types = task_type_pool(prompt, self.config.task_types)
        self.example_queries = [e.query for e in prompt.examples]
        #: passages handed to the LLM in one call (see the module docstring), and so the
        #: rows a shard's writer hands this stage at once (``runs.shards.BatchedStage``)
        self.rows_per_call = self.config.parallel
        if isinstance(llm, ServedLLM):
            self.rows_per_call = max(self.config.parallel, llm.max_concurrency)
        #: the backend's prompt cache, when it has one (None: every prompt is evaluated whole)
        self.cache = llm if isinstance(llm, PrefixCachingLLM) else None
        if self.cache is not None:
            # the system turn and few-shot turns: evaluated once, reused for every passage
            a, b = (names * 2)[:2] if len(names) < 2 else names[:2]
            self.cache.set_shared_prefix(
                [prompt.messages(a, "a", "a"), prompt.messages(b, "b", "b")]
            )

    def __call__(self, passages: pa.Table) -> pa.Table:
        records = passages.select(["passage_id", "title", "text"]).to_pylist()
        states = [self._start(r["passage_id"], r["title"] or "", r["text"]) for r in records]
        self._write(states)
        rows = [row for state in states for row in state.rows]
        return pa.Table.from_pylist(rows, schema=GENERATION_SCHEMA)

    def generate_one(self, passage_id: str, title: str, text: str) -> list[dict[str, Any]]:
        """The generation rows of one passage: every attempt, accepted or rejected."""
        state = self._start(passage_id, title, text)
        self._write([state])
        return state.rows

    def _start(self, passage_id: str, title: str, text: str) -> _Passage:
        state = _Passage(passage_id, title, text)
        self._next_slot(state)
        return state

    def _next_slot(self, state: _Passage) -> None:
        """Move ``state`` to its next query slot's first attempt (done after the last)."""
        state.slot += 1
        state.attempt = 0
        if state.slot >= self.config.queries_per_passage:
            state.done = True
            return
        state.base_seed = passage_seed(self.config.seed, state.passage_id, state.slot)
        state.task_type = random.Random(state.base_seed).choice(self.task_types)
        passage = state.text[: self.config.passage_max_chars]
        state.chat = self.prompt.messages(state.task_type, state.title, passage)

    def _write(self, states: list[_Passage]) -> None:
        """Rounds until every passage is done: each round sends the current attempt of every
        passage still writing, grouped by sampling temperature, ``rows_per_call`` per call."""
        cfg = self.config
        while True:
            by_temperature: dict[float, list[_Passage]] = defaultdict(list)
            for state in states:
                if not state.done:
                    by_temperature[attempt_temperature(cfg, state.attempt)].append(state)
            if not by_temperature:
                return
            for temperature, group in by_temperature.items():
                for at in range(0, len(group), self.rows_per_call):
                    chunk = group[at : at + self.rows_per_call]
                    if not cfg.reuse_prefix and self.cache is not None:
                        self.cache.reset_cache()
                    t0 = time.perf_counter()
                    gens = self.llm.generate(
                        [s.chat for s in chunk],
                        max_tokens=cfg.max_tokens,
                        temperature=temperature,
                        seed=[s.base_seed + s.attempt for s in chunk],
                    )
                    # the call's time, shared by the passages written together
                    seconds = (time.perf_counter() - t0) / len(chunk)
                    for state, gen in zip(chunk, gens, strict=True):
                        self._take(state, gen, seconds)

    def _take(self, state: _Passage, gen: Generation, seconds: float) -> None:
        """Validate one answer, record its row, and move ``state`` on."""
        cfg = self.config
        try:
            task, query = parse_task_query(gen.text)
            reason = check_query(
                task,
                query,
                title=state.title,
                passage=state.text,
                earlier=state.accepted,
                example_queries=self.example_queries,
                config=cfg.validation,
            )
        except ParseError as exc:
            # an answer cut off by max_tokens is the usual cause of broken JSON
            task, query = "", ""
            reason = "truncated" if gen.finish_reason == "length" else exc.reason
        last = state.attempt == cfg.max_attempts - 1
        state.rows.append(
            {
                "query_id": f"{state.passage_id}:q{state.slot}",
                "passage_id": state.passage_id,
                "task_type": state.task_type,
                "task": task,
                "query": query,
                "raw": gen.text,
                "attempt": state.attempt,
                "seed": state.base_seed + state.attempt,
                "reject_reason": reason,
                "final": bool(reason is not None and last),
                "seconds": seconds,
                "prompt_tokens": gen.prompt_tokens,
                "completion_tokens": gen.completion_tokens,
            }
        )
        if reason is None:
            state.accepted.append(query)
        if reason is None or last:
            self._next_slot(state)
        else:
            state.attempt += 1


@dataclass
class _Passage:
    """Where one passage's writing stands: its slot, attempt, accepted queries and rows."""

    passage_id: str
    title: str
    text: str
    slot: int = -1
    attempt: int = 0
    base_seed: int = 0
    task_type: str = ""
    chat: list[Message] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
