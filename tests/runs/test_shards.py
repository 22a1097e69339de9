"""The sharded loop's plumbing: resuming, and progress that shows in a log file."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from geckokit.io import read_shards
from geckokit.runs.shards import ShardRun, run_sharded, unfinished_rows


def _run(out: Path, *, max_shards: int | None = None, show_progress: bool = True) -> ShardRun:
    items = pa.table({"x": list(range(10))})
    return run_sharded(
        items,
        out=out,
        outputs=("doubled",),
        shard_size=4,
        stage=lambda t: pa.table({"y": [2 * v for v in t["x"].to_pylist()]}),
        split=lambda t: {"doubled": t},
        description="double",
        max_shards=max_shards,
        show_progress=show_progress,
    )


def test_a_log_that_is_not_a_terminal_gets_a_line_per_shard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _run(tmp_path, max_shards=1)
    assert (first.shards_total, first.shards_written) == (3, 1)
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("double: 4/10 (40%), ") and "ETA" in line for line in lines)

    rest = _run(tmp_path)  # resumes: the first shard is skipped, the count goes on from it
    assert (rest.shards_skipped, rest.shards_written) == (1, 2)
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("double: 8/10 (80%), ") for line in lines)
    assert any(line.startswith("double: 10/10 (100%), ") for line in lines)
    got = read_shards(tmp_path / "doubled")
    assert got is not None and got["y"].to_pylist() == [2 * v for v in range(10)]


def test_no_progress_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run(tmp_path, show_progress=False)
    assert "double:" not in capsys.readouterr().out


def test_the_unfinished_rows_are_those_of_shards_with_no_file(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert unfinished_rows(out, "doubled", 10, 4) == list(range(10))
    _run(out, max_shards=2)  # rows 0-7 finished, 8-9 not
    assert unfinished_rows(out, "doubled", 10, 4) == [8, 9]
    _run(out)
    assert unfinished_rows(out, "doubled", 10, 4) == []
