"""The executor's settings and the local executor (no Ray needed; the Ray executor:
test_ray_executor.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pytest

from geckokit.runs.executor import (
    EXECUTION_SETTINGS,
    Executor,
    ExecutorSettings,
    Loaded,
    shard_executor,
)


def test_the_executor_is_a_closed_set() -> None:
    assert Executor.parse("ray") is Executor.RAY
    with pytest.raises(ValueError, match="unknown executor 'dask'; valid: local, ray"):
        Executor.parse("dask")
    with pytest.raises(ValueError, match="workers"):
        ExecutorSettings(executor=Executor.RAY, workers=0)
    assert EXECUTION_SETTINGS == (
        "executor",
        "ray_address",
        "workers",
        "worker_cpus",
        "worker_gpus",
        "llm_timeout",
    )


def test_ray_settings_with_the_local_executor_are_named_in_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        ExecutorSettings(workers=4, ray_address="10.0.0.1:6379")
    assert "ray_address, workers only apply with executor 'ray'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        ExecutorSettings(workers=1)  # the default, given: nothing odd
        ExecutorSettings(executor=Executor.RAY, workers=4)
    assert not caplog.text


def test_the_local_executor_loads_once_and_counts_what_the_stage_spent(tmp_path: Path) -> None:
    loads: list[int] = []

    class Spent:
        def __init__(self) -> None:
            self.rows = 0

        def copy(self) -> Spent:
            other = Spent()
            other.rows = self.rows
            return other

        def since(self, before: Spent) -> dict[str, int]:
            return {"rows": self.rows - before.rows}

    def load() -> Loaded:
        loads.append(1)
        spent = Spent()
        return Loaded(spent, usage=spent, info={"model": {"id": "counter"}})

    def make_stage(spent: Spent):  # type: ignore[no-untyped-def]
        def stage(rows: pa.Table) -> pa.Table:
            spent.rows += rows.num_rows
            return rows

        return stage

    with shard_executor(load) as work:
        assert work.info == {"model": {"id": "counter"}}
        run = work.run(
            pa.table({"x": list(range(5))}),
            out=tmp_path,
            outputs=("x",),
            shard_size=2,
            make_stage=make_stage,
            split=lambda t: {"x": t},
            show_progress=False,
        )
    assert loads == [1]
    assert (run.shards_total, run.shards_written, run.items_processed) == (3, 3, 5)
    assert run.llm is not None and run.llm["rows"] == 5
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
