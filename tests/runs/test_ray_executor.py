"""The Ray executor's plumbing on a real local Ray cluster, with a stage that needs no LLM:
the local loop's files, resuming across executors, token counts, a worker that dies, a
shard that keeps failing, a cluster too small. (The FRet stages on Ray with the real LLM:
tests/fret/test_ray_fret.py.)"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from geckokit.runs.executor import (
    Executor,
    ExecutorSettings,
    Loaded,
    ShardExecutor,
    shard_executor,
)
from geckokit.runs.shards import ShardRun
from geckokit.runs.stamps import ShardKey, read_stamp

pytestmark = pytest.mark.slow  # starts a Ray cluster

ITEMS = pa.table({"x": list(range(10))})
OUTPUTS = ("doubled", "odd")  # the primary, and a secondary written before it
KEY = ShardKey(settings={"factor": 2})  # what each shard records it was made with


@dataclass
class Tally:
    """A stand-in for an LLM's usage counter: the rows a worker has processed."""

    rows: int = 0

    def copy(self) -> Tally:
        return Tally(self.rows)

    def since(self, before: Tally) -> dict[str, int]:
        return {"rows": self.rows - before.rows}


def load_tally() -> Loaded:
    tally = Tally()
    return Loaded(tally, usage=tally, info={"model": {"id": "tally"}})


def load_nothing() -> Loaded:
    raise FileNotFoundError("no model at /nowhere.gguf")


def doubler(
    tally: Tally, *, crash_at: int | None = None, fail_at: int | None = None, marker: str = ""
) -> Any:
    """A stage that doubles ``x``. ``crash_at``: the first time it meets that x (no file at
    ``marker`` yet) its process dies; ``fail_at``: it raises on that x every time, and on
    x = 1 once (``marker``)."""

    def stage(rows: pa.Table) -> pa.Table:
        xs = rows["x"].to_pylist()
        if crash_at in xs and not os.path.exists(marker):
            Path(marker).touch()
            os._exit(1)  # the worker process dies mid-shard
        if fail_at is not None:
            if fail_at in xs:
                raise RuntimeError("server gone")
            if 1 in xs and not os.path.exists(marker):
                Path(marker).touch()
                raise RuntimeError("a transient error")
        tally.rows += len(xs)
        return pa.table({"y": [2 * x for x in xs]})

    return stage


def split(table: pa.Table) -> dict[str, pa.Table]:
    odd = pa.table({"y": [y for y in table["y"].to_pylist() if y % 4 == 2]}, schema=table.schema)
    return {"doubled": table, "odd": odd}


def ray(workers: int) -> ExecutorSettings:
    return ExecutorSettings(executor=Executor.RAY, workers=workers, worker_cpus=0.25)


def run(work: ShardExecutor, out: Path, **options: Any) -> ShardRun:
    make_stage = functools.partial(
        doubler, **{k: options.pop(k) for k in ("crash_at", "fail_at", "marker") if k in options}
    )
    return work.run(
        ITEMS,
        out=out,
        outputs=OUTPUTS,
        shard_size=3,
        make_stage=make_stage,
        split=split,
        show_progress=False,
        key=KEY,
        **options,
    )


def files(out: Path) -> dict[str, pa.Table]:
    return {str(f.relative_to(out)): pq.read_table(f) for f in sorted(out.glob("*/part-*.parquet"))}


def test_ray_writes_the_local_loops_files_and_resumes_its_runs(
    ray_cluster: str, tmp_path: Path
) -> None:
    with shard_executor(load_tally) as local:
        whole = run(local, tmp_path / "local")
    assert whole.llm is not None and whole.llm["rows"] == 10

    with shard_executor(load_tally) as local:  # a local sitting writes 2 shards of 4 ...
        first = run(local, tmp_path / "mixed", max_shards=2)
    with shard_executor(load_tally, ray(2)) as pool:  # ... and Ray the other 2
        assert pool.info == {"model": {"id": "tally"}}
        rest = run(pool, tmp_path / "mixed")
    assert (first.shards_written, rest.shards_skipped, rest.shards_written) == (2, 2, 2)
    assert rest.items_processed == 4
    # the workers' token counts come back: this sitting's alone, with the executor's size
    assert rest.llm is not None
    assert (rest.llm["rows"], rest.llm["executor"], rest.llm["workers"]) == (4, "ray", 2)
    expected = files(tmp_path / "local")
    assert len(expected) == 8  # 4 shards of each output
    got = files(tmp_path / "mixed")
    assert got.keys() == expected.keys()
    for name, table in expected.items():
        assert got[name].equals(table), name
        # each records what it was made from, whoever wrote it
        assert read_stamp(got[name]) == read_stamp(table) is not None, name
    # and a local sitting after Ray finds nothing left
    with shard_executor(load_tally) as local:
        again = run(local, tmp_path / "mixed")
    assert (again.shards_skipped, again.shards_written, again.llm) == (4, 0, None)


def test_a_worker_that_dies_is_restarted_and_its_shard_redone(
    ray_cluster: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "crashed"
    with caplog.at_level(logging.WARNING), shard_executor(load_tally, ray(2)) as pool:
        result = run(pool, tmp_path / "out", crash_at=4, marker=str(marker))
    assert marker.exists(), "the worker never crashed"
    assert "shard 1 failed, its worker died" in caplog.text
    assert (result.shards_written, result.items_processed) == (4, 10)
    got = pa.concat_tables(
        t for name, t in sorted(files(tmp_path / "out").items()) if name.startswith("doubled")
    )
    assert got["y"].to_pylist() == [2 * x for x in range(10)]


def test_a_shard_that_keeps_failing_stops_the_run_and_keeps_the_others(
    ray_cluster: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from geckokit.runs.ray_executor import ShardFailedError

    out, marker = tmp_path / "out", tmp_path / "failed once"
    with (
        caplog.at_level(logging.WARNING),
        shard_executor(load_tally, ray(1)) as pool,
        pytest.raises(ShardFailedError, match=r"shard 2 failed 3 times.*RuntimeError: server gone"),
    ):
        run(pool, out, fail_at=7, marker=str(marker))
    # shard 0 failed once (transient) and was redone; shard 2 failed for good, and no shard
    # was started after that
    assert "shard 0 failed, RuntimeError: a transient error" in caplog.text
    assert sorted(files(out)) == [f"{o}/part-0000{k}.parquet" for o in OUTPUTS for k in (0, 1)]
    with shard_executor(load_tally, ray(1)) as pool:  # the cause fixed: the rest is done
        rest = run(pool, out)
    assert (rest.shards_skipped, rest.shards_written) == (2, 2)


def test_a_worker_that_cannot_load_its_model_says_so(ray_cluster: str) -> None:
    with (
        pytest.raises(RuntimeError, match=r"could not load its model.*no model at /nowhere"),
        shard_executor(load_nothing, ray(1)),
    ):
        pass


def test_a_pool_the_cluster_cannot_place_is_refused(ray_cluster: str) -> None:
    settings = ExecutorSettings(executor=Executor.RAY, workers=9, worker_cpus=1)
    with (
        pytest.raises(ValueError, match=r"9 Ray workers of 1 CPU each need 9 CPUs .* has 4"),
        shard_executor(load_tally, settings),
    ):
        pass
