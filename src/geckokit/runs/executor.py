"""Where the sharded LLM stages run: one loop in this process, or a pool of Ray workers.

A stage hands its executor two things. ``load`` loads what every worker keeps for the whole
run (the LLM, built once from its spec) and says what identifies it (:class:`Loaded`);
``make_stage`` turns that into the stage a shard goes through (``pyarrow.Table`` in,
``pyarrow.Table`` out). The local executor calls both once, here, and runs
:func:`~geckokit.runs.shards.run_sharded`; the Ray executor
(:mod:`geckokit.runs.ray_executor`) calls them once in each worker. Either way a shard's
files are written by :func:`~geckokit.runs.shards.write_shard` under the same names, so a
run folder does not record which executor wrote it: a run started locally may be finished
on Ray, and the reverse.

How a run is executed is not part of what it computes: :data:`EXECUTION_SETTINGS` never
enter a run folder's recorded settings, so changing them never makes a run "different".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from geckokit.registry import DEFAULT_LLM_TIMEOUT
from geckokit.runs.shards import ShardCheck, ShardRun, run_sharded
from geckokit.runs.stamps import ShardKey
from geckokit.types import ClosedSet

log = logging.getLogger(__name__)


class Executor(ClosedSet):
    """Where the sharded LLM stages run."""

    LOCAL = "local"  # one loop in this process
    RAY = "ray"  # a pool of Ray actors, each with its own LLM


class ExecutorSettings(BaseModel):
    """How the sharded LLM stages (generate, mine's scoring) are executed."""

    model_config = ConfigDict(extra="forbid")

    executor: Executor = Field(
        Executor.LOCAL,
        description="where the sharded LLM stages run: local (one loop in this process) or "
        "ray (a pool of Ray workers, each loading the LLM once and taking whole shards)",
    )
    ray_address: str | None = Field(
        None,
        description="the Ray cluster to join (HOST:PORT or ray://HOST:PORT); unset: the one in "
        "RAY_ADDRESS, else a local cluster started for the run",
    )
    workers: int = Field(1, ge=1, description="Ray workers (executor ray)")
    worker_cpus: float = Field(
        0.5,
        gt=0,
        description="CPUs Ray reserves for each worker; below 1 so that workers waiting on LLM "
        "servers do not starve Ray's own tasks",
    )
    worker_gpus: float = Field(
        0.0, ge=0, description="GPUs Ray reserves for each worker (an in-process model on a GPU)"
    )
    llm_timeout: float = Field(
        DEFAULT_LLM_TIMEOUT,
        gt=0,
        le=86400,
        description="seconds an LLM server (an http(s) URL) has to answer one request before "
        "it is tried again; after the last try the run stops, keeping its finished shards",
    )

    @model_validator(mode="after")
    def _warn_unused(self) -> ExecutorSettings:
        if self.executor is Executor.LOCAL:
            unused = [
                k
                for k in ("ray_address", "workers", "worker_cpus", "worker_gpus")
                if k in self.model_fields_set and getattr(self, k) != _DEFAULTS[k]
            ]
            if unused:
                log.warning(
                    "%s only apply with executor 'ray'; the local executor is one loop in "
                    "this process",
                    ", ".join(unused),
                )
        return self


_DEFAULTS = {k: f.default for k, f in ExecutorSettings.model_fields.items()}

#: The settings that say how a run is executed, not what it computes: never part of a run
#: folder's recorded settings.
EXECUTION_SETTINGS: tuple[str, ...] = tuple(ExecutorSettings.model_fields)


@dataclass
class Loaded:
    """What a worker loads once and keeps for the whole run: ``model`` (the LLM), the
    counter of what it spends (an LLM's :class:`~geckokit.llm.base.UsageStats`; None: not
    counted), and ``info``, what identifies it in a manifest (``{"model": ...}``)."""

    model: Any
    usage: Any = None
    info: dict[str, Any] = field(default_factory=dict)


#: Loads a worker's model; under Ray it is pickled to each worker, so it must not hold a
#: loaded model (a ``functools.partial`` of a module-level function and a spec string).
Loader = Callable[[], Loaded]
#: Builds the stage a shard goes through from a worker's model (picklable, like a Loader).
StageFactory = Callable[[Any], Callable[[pa.Table], pa.Table]]


class ShardExecutor(Protocol):
    """Runs the unfinished shards of a table through a stage (see the module docstring)."""

    #: what identifies the workers' model: :attr:`Loaded.info` (of the first worker)
    info: dict[str, Any]

    def run(
        self,
        items: pa.Table,
        *,
        out: Path,
        outputs: tuple[str, ...],
        shard_size: int,
        make_stage: StageFactory,
        split: Callable[[pa.Table], dict[str, pa.Table]],
        description: str = "working",
        max_shards: int | None = None,
        show_progress: bool = True,
        key: ShardKey | None = None,
        checked: ShardCheck | None = None,
    ) -> ShardRun:
        """As :func:`~geckokit.runs.shards.run_sharded`, with the stage made by
        ``make_stage`` from the loaded model; ``ShardRun.llm`` counts the tokens spent;
        ``key`` stamps the shards and checks the finished ones (unless ``checked``: the
        check made already)."""
        ...


class LocalShards:
    """The local executor: ``load`` once, here, and the sharded loop in this process."""

    def __init__(self, load: Loader) -> None:
        self.loaded = load()
        self.info = self.loaded.info

    def run(
        self,
        items: pa.Table,
        *,
        out: Path,
        outputs: tuple[str, ...],
        shard_size: int,
        make_stage: StageFactory,
        split: Callable[[pa.Table], dict[str, pa.Table]],
        description: str = "working",
        max_shards: int | None = None,
        show_progress: bool = True,
        key: ShardKey | None = None,
        checked: ShardCheck | None = None,
    ) -> ShardRun:
        return run_sharded(
            items,
            out=out,
            outputs=outputs,
            shard_size=shard_size,
            stage=make_stage(self.loaded.model),
            split=split,
            description=description,
            max_shards=max_shards,
            show_progress=show_progress,
            usage=self.loaded.usage,
            key=key,
            checked=checked,
        )


@contextmanager
def shard_executor(
    load: Loader, settings: ExecutorSettings | None = None
) -> Iterator[ShardExecutor]:
    """The executor ``settings`` ask for (default: local), with its workers' model loaded
    by ``load``; a Ray one stops its workers (and the local cluster it started) on exit."""
    settings = settings or ExecutorSettings()
    if settings.executor is Executor.LOCAL:
        yield LocalShards(load)
        return
    from geckokit.runs.ray_executor import RayShards

    pool = RayShards(load, settings)
    try:
        yield pool
    finally:
        pool.close()
