"""The sharded LLM stages on a pool of Ray actors (``executor = "ray"``).

How a shard travels: each actor is created with the stage's ``load`` (small: e.g.
``load_llm`` and a spec string) and calls it once, when it starts (and again when Ray
restarts it). For a run, the driver puts the job once (``make_stage``, the output
folder and names, ``split``), then sends each actor a shard at a time: its index and a copy
of its rows (a slice of the work table would carry the whole table with it). The actor
builds the stage from its model on its first shard of the job, runs the shard through
:func:`~geckokit.runs.shards.write_shard` (the local loop's own code: same files, same
names, written atomically, the primary last) and returns the rows it processed and the
tokens the shard cost. The driver writes nothing but sums those counts, so a stage
manifest's ``llm_this_run`` counts this sitting's tokens as the local loop does.

Failures: an actor that dies (a crash, a killed process, lost memory) is restarted by Ray
(``max_restarts=-1``) and its shard is sent again; a shard whose stage raised (an LLM error
that outlasted the backend's own retries) is sent again too. After :data:`MAX_ATTEMPTS`
failed attempts of one shard no new shard is started, the shards in flight finish (their
files are kept), and :class:`ShardFailedError` names the shard and the last error: no row
is dropped silently. A driver killed with ``kill -9`` takes its actors with it (Ray ends the
actors of a dead driver); started again, it redoes the shards with no primary file, which
includes at most those that were in flight.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from geckokit._deps import require
from geckokit.runs.executor import ExecutorSettings, Loaded, Loader, StageFactory
from geckokit.runs.shards import (
    ShardCheck,
    ShardProgress,
    ShardRun,
    resumable_shards,
    write_shard,
)
from geckokit.runs.stamps import ShardKey

log = logging.getLogger(__name__)

#: Tries per shard (a first attempt and two more) before the run stops with an error.
MAX_ATTEMPTS = 3
#: How long a worker that died is waited for while Ray restarts it and it loads its model.
RESTART_WAIT_S = 600.0


class ShardFailedError(RuntimeError):
    """A shard failed :data:`MAX_ATTEMPTS` times on the Ray workers."""


def _ray() -> Any:
    return require("ray", extra="ray", purpose="executor 'ray'")


@dataclass(frozen=True)
class _Job:
    """What every shard of one run shares: put in the object store once per run."""

    make_stage: StageFactory
    out: str
    outputs: tuple[str, ...]
    split: Callable[[pa.Table], dict[str, pa.Table]]


class ShardWorker:
    """A Ray actor (see the module docstring): loads its model once, then writes shards."""

    def __init__(self, load: Loader) -> None:
        self.loaded: Loaded = load()
        self._job_id: str | None = None
        self._job: _Job | None = None
        self._stage: Callable[[pa.Table], pa.Table] | None = None

    def info(self) -> dict[str, Any]:
        return self.loaded.info

    def process(
        self, index: int, shard: pa.Table, job: list[Any], stamp: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Write shard ``index`` of the job whose object reference is ``job[0]`` (in a list,
        so that Ray passes the reference and the actor fetches the job once, not per call),
        each file carrying ``stamp``; returns ``{"index", "items", "usage", "seconds",
        "pid"}``."""
        ref = job[0]
        if self._job_id != ref.hex():
            self._job = _ray().get(ref)
            self._stage = self._job.make_stage(self.loaded.model)
            self._job_id = ref.hex()
        assert self._job is not None and self._stage is not None
        usage = self.loaded.usage
        before = usage.copy() if usage is not None else None
        t0 = time.perf_counter()
        items = write_shard(
            self._stage,
            shard,
            index,
            out=Path(self._job.out),
            outputs=self._job.outputs,
            split=self._job.split,
            stamp=stamp,
        )
        return {
            "index": index,
            "items": items,
            "usage": usage.since(before) if usage is not None else None,
            "seconds": time.perf_counter() - t0,
            "pid": os.getpid(),
        }


class RayShards:
    """The Ray executor: joins (or starts) a cluster and keeps a pool of
    :class:`ShardWorker` actors. One actor starts at once, so that :attr:`info` identifies
    the model before the run folder is opened; the others start when a run has shards left.
    :meth:`close` stops the actors, and the local cluster when it started one."""

    def __init__(self, load: Loader, settings: ExecutorSettings) -> None:
        ray = _ray()
        self.settings = settings
        self._started = False
        if not ray.is_initialized():
            # None: RAY_ADDRESS, else a new local cluster. Workers' output goes to Ray's
            # session logs (/tmp/ray/session_latest/logs), not to this terminal.
            ray.init(address=settings.ray_address, include_dashboard=False, log_to_driver=False)
            self._started = True
        elif settings.ray_address is not None:
            log.info("Ray is already initialised in this process; ray_address is not used")
        self.actors: list[Any] = []
        try:
            self._check_resources(ray)
            self._load = load
            self.info = self._start(1)[0]
        except BaseException:
            self.close()
            raise

    def _check_resources(self, ray: Any) -> None:
        """Refuse a pool the cluster cannot place: its actors would wait for resources
        forever, and the run with them, without a word."""
        s = self.settings
        have = ray.cluster_resources()
        for what, per in (("CPU", s.worker_cpus), ("GPU", s.worker_gpus)):
            need, got = s.workers * per, float(have.get(what, 0.0))
            if need > got + 1e-9:
                raise ValueError(
                    f"{s.workers} Ray workers of {per:g} {what} each need {need:g} {what}s "
                    f"but the Ray cluster has {got:g}; lower workers or "
                    f"worker_{what.lower()}s (or start the cluster with more nodes)"
                )

    def _start(self, n: int) -> list[dict[str, Any]]:
        """Start actors up to ``n`` in all; returns the new ones' :attr:`Loaded.info` once
        each has loaded its model."""
        ray = _ray()
        remote = ray.remote(ShardWorker).options(
            num_cpus=self.settings.worker_cpus,
            num_gpus=self.settings.worker_gpus,
            max_restarts=-1,  # a worker that dies is restarted, and loads its model again
            max_task_retries=0,  # its shard is sent again by run(), which counts the tries
        )
        new = [remote.remote(self._load) for _ in range(n - len(self.actors))]
        self.actors += new
        try:
            return list(ray.get([a.info.remote() for a in new]))
        except ray.exceptions.RayError as exc:  # its last line is the cause's own
            cause = str(exc).strip().splitlines()[-1]
            raise RuntimeError(f"a Ray worker could not load its model: {cause}") from exc

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
        """As :func:`~geckokit.runs.shards.run_sharded`, on the pool (see the module
        docstring); ``ShardRun.llm`` also records the executor and the number of workers."""
        if shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, got {shard_size}")
        ray = _ray()
        n = items.num_rows
        n_shards = (n + shard_size - 1) // shard_size
        check = checked or resumable_shards(
            items,
            out=out,
            outputs=outputs,
            shard_size=shard_size,
            key=key,
            description=description,
        )
        todo = check.todo
        done_items = n - sum(min(shard_size, n - k * shard_size) for k in todo)
        if done_items:
            log.info(
                "%s: %d of %d shards already finished, resuming",
                description,
                n_shards - len(todo),
                n_shards,
            )
        queue = deque(todo if max_shards is None else todo[:max_shards])
        t0 = time.perf_counter()
        if queue:
            self._start(min(self.settings.workers, len(queue)))
        job = ray.put(_Job(make_stage, str(out), outputs, split))
        idle = list(self.actors)
        in_flight: dict[Any, tuple[Any, int]] = {}
        attempts: Counter[int] = Counter()
        spent: Counter[str] = Counter()
        counted = False
        written = processed = 0
        failed: tuple[int, str] | None = None
        with ShardProgress(description, total=n, completed=done_items, show=show_progress) as bar:
            while in_flight or (queue and failed is None):
                while idle and queue and failed is None:
                    actor, k = idle.pop(), queue.popleft()
                    rows = _own_copy(items, k * shard_size, shard_size)
                    stamp = key.stamp(k, rows) if key is not None else None
                    in_flight[actor.process.remote(k, rows, [job], stamp)] = (actor, k)
                if not in_flight:  # every worker is gone, none came back
                    failed = failed or (queue[0], "no Ray worker is left")
                    break
                (ref,), _ = ray.wait(list(in_flight), num_returns=1)
                actor, k = in_flight.pop(ref)
                idle.append(actor)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayActorError as exc:  # the worker died: Ray restarts it
                    error = f"its worker died ({type(exc).__name__})"
                    if not self._restarted(actor):  # no shard goes to it until it is back
                        idle.remove(actor)
                except ray.exceptions.RayTaskError as exc:  # the stage raised
                    error = f"{type(exc.cause).__name__}: {exc.cause}"
                else:
                    written += 1
                    processed += result["items"]
                    if result["usage"] is not None:
                        spent.update(result["usage"])
                        counted = True
                    bar.advance(result["items"])
                    bar.shard_done()
                    continue
                attempts[k] += 1
                if attempts[k] >= MAX_ATTEMPTS:
                    failed = failed or (k, error)
                    continue
                log.warning(
                    "%s: shard %d failed, %s; sending it again (try %d of %d)",
                    description,
                    k,
                    error,
                    attempts[k] + 1,
                    MAX_ATTEMPTS,
                )
                queue.appendleft(k)
        if failed is not None:
            k, error = failed
            raise ShardFailedError(
                f"{description}: shard {k} failed {MAX_ATTEMPTS} times on the Ray workers; "
                f"last error: {error}. The {written} shards written in this sitting are kept: "
                "rerun the same command to resume once the cause is fixed"
            )
        seconds = time.perf_counter() - t0
        llm = None
        if counted and processed:
            llm = {
                **spent,
                "seconds": round(seconds, 1),
                "executor": "ray",
                "workers": len(self.actors),
            }
        return ShardRun(
            n_shards, n_shards - len(todo), written, processed, seconds, llm, len(check.damaged)
        )

    def _restarted(self, actor: Any) -> bool:
        """Wait until a worker that died is back (Ray restarts it and it loads its model
        again; a shard sent before that fails at once, which would spend its tries), at most
        :data:`RESTART_WAIT_S`; False if it is not, and it takes no more shards."""
        ray = _ray()
        try:
            ray.get(actor.info.remote(), timeout=RESTART_WAIT_S)
        except (ray.exceptions.RayError, TimeoutError) as exc:
            log.warning("a Ray worker did not come back (%s); going on without it", exc)
            return False
        return True

    def close(self) -> None:
        """Stop the workers, and the local cluster if this executor started it."""
        ray = _ray()
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self._started:
            ray.shutdown()
            self._started = False


def _own_copy(items: pa.Table, start: int, length: int) -> pa.Table:
    """Rows ``start`` to ``start + length`` in buffers of their own: a slice shares the
    whole table's buffers, and pickling it for an actor would send them all."""
    stop = min(items.num_rows, start + length)
    return items.take(pa.array(range(start, stop), type=pa.int64()))
