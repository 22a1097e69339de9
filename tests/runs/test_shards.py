"""The sharded loop's plumbing: resuming, progress that shows in a log file, and what a
rerun does with shards that are damaged or that another run made."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from geckokit.io import SHARD_STAMP, DamagedFileError, read_shards, write_table
from geckokit.runs.folder import RunMismatchError
from geckokit.runs.shards import ShardRun, run_sharded, unfinished_rows
from geckokit.runs.stamps import ShardKey, json_sha256, read_stamp, read_stamped, rows_sha256


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


# -- what a shard records it was made from, and what a rerun does with it


def _keyed(
    out: Path,
    items: pa.Table | None = None,
    *,
    factor: int = 2,
    max_shards: int | None = None,
    defaults: dict[str, int] | None = None,
) -> ShardRun:
    """Ten numbers multiplied by ``factor`` in shards of 4, the factor a setting."""
    items = items if items is not None else pa.table({"x": list(range(10))})
    return run_sharded(
        items,
        out=out,
        outputs=("product", "small"),
        shard_size=4,
        stage=lambda t: pa.table({"y": [factor * v for v in t["x"].to_pylist()]}),
        split=lambda t: {"product": t, "small": t.filter(pc.less(t["y"], 10))},
        description="multiply",
        max_shards=max_shards,
        show_progress=False,
        key=ShardKey(settings={"factor": factor}, defaults=defaults or {}),
    )


def _products(out: Path) -> list[int]:
    got = read_shards(out / "product")
    return [] if got is None else got["y"].to_pylist()


def test_each_shard_records_its_rows_digest_and_settings(tmp_path: Path) -> None:
    _keyed(tmp_path)
    path = tmp_path / "product" / "part-00001.parquet"
    table, stamp = read_stamped(path)
    assert stamp == {
        "format": 1,
        "shard": 1,
        "items": 4,
        "input_sha256": rows_sha256(pa.table({"x": [4, 5, 6, 7]})),
        "settings": {"factor": 2},
        "output_sha256": rows_sha256(pa.table({"y": [8, 10, 12, 14]})),
    }
    assert table["y"].to_pylist() == [8, 10, 12, 14]
    assert read_stamp(pq.read_table(path)) == {**stamp, "check": json_sha256([stamp])}
    # the digest is of the values, not of how they are stored
    assert rows_sha256(pa.table({"x": pa.array([4, 5, 6, 7], pa.int32())})) == stamp["input_sha256"]
    assert rows_sha256(pa.table({"x": [4, 5, 6, 8]})) != stamp["input_sha256"]


@pytest.mark.parametrize("damage", ["cut short", "emptied", "its secondary file lost"])
def test_a_damaged_shard_is_made_again(tmp_path: Path, damage: str) -> None:
    _keyed(tmp_path)
    primary = tmp_path / "product" / "part-00001.parquet"
    if damage == "cut short":
        primary.write_bytes(primary.read_bytes()[:40])
    elif damage == "emptied":
        primary.write_bytes(b"")
    else:
        (tmp_path / "small" / "part-00001.parquet").unlink()
    assert unfinished_rows(tmp_path, "product", 10, 4) == (
        [4, 5, 6, 7] if damage != "its secondary file lost" else []
    )
    again = _keyed(tmp_path)
    assert (again.shards_skipped, again.shards_written, again.shards_repaired) == (2, 1, 1)
    assert _products(tmp_path) == [2 * v for v in range(10)]
    small = read_shards(tmp_path / "small")  # every file reads again, with its rows
    assert small is not None and small["y"].to_pylist() == [0, 2, 4, 6, 8]
    for name in ("product", "small"):
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == [
            f"part-0000{k}.parquet" for k in range(3)
        ]


def test_shards_of_other_rows_are_refused_and_kept(tmp_path: Path) -> None:
    """Another input of the same size (one row differs in shard 1): the finished shard 1
    was made from other rows, and the run stops before writing anything."""
    _keyed(tmp_path, max_shards=2)
    before = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*.parquet"))}
    other = pa.table({"x": [0, 1, 2, 3, 4, 5, 60, 7, 8, 9]})
    with pytest.raises(RunMismatchError, match=r"other input rows: product/part-00001.parquet\)"):
        _keyed(tmp_path, other)
    assert {p: p.read_bytes() for p in sorted(tmp_path.rglob("*.parquet"))} == before


def test_shards_made_with_other_settings_are_refused_naming_the_setting(tmp_path: Path) -> None:
    _keyed(tmp_path, max_shards=1)
    with pytest.raises(RunMismatchError, match=r"other settings \(factor: 2 there, 3 now\)"):
        _keyed(tmp_path, factor=3)
    _keyed(tmp_path)  # the settings that made them: it resumes
    assert _products(tmp_path) == [2 * v for v in range(10)]


def test_a_setting_added_since_takes_its_default_for_older_shards(tmp_path: Path) -> None:
    items = pa.table({"x": list(range(10))})
    run_sharded(
        items,
        out=tmp_path,
        outputs=("product", "small"),
        shard_size=4,
        stage=lambda t: pa.table({"y": [2 * v for v in t["x"].to_pylist()]}),
        split=lambda t: {"product": t, "small": t.slice(0, 0)},
        max_shards=1,
        show_progress=False,
        key=ShardKey(settings={}),  # written before "factor" existed
    )
    run = _keyed(tmp_path, defaults={"factor": 2})
    assert (run.shards_skipped, run.shards_written) == (1, 2)
    with pytest.raises(RunMismatchError, match="factor: 2 there, 3 now"):
        _keyed(tmp_path, factor=3, defaults={"factor": 2})


def test_a_shard_copied_from_another_place_is_refused(tmp_path: Path) -> None:
    _keyed(tmp_path)
    for name in ("product", "small"):
        shutil.copy(tmp_path / name / "part-00000.parquet", tmp_path / name / "part-00001.parquet")
    with pytest.raises(RunMismatchError, match="a shard copied from another run"):
        _keyed(tmp_path)


def test_a_shard_beyond_the_input_is_refused(tmp_path: Path) -> None:
    """A larger input made part-00003 (its manifest gone, nothing else tells)."""
    _keyed(tmp_path, pa.table({"x": list(range(14))}))
    (tmp_path / "product" / "part-00000.parquet").unlink()
    with pytest.raises(RunMismatchError, match=r"beyond this run's 3 shards: product/part-00003"):
        _keyed(tmp_path)


def test_a_shard_written_before_stamps_is_kept(tmp_path: Path) -> None:
    """Older versions wrote shards without a stamp: they resume, read back whole."""
    for name in ("product", "small"):
        write_table(pa.table({"y": [0, 2, 4, 6]}), tmp_path / name / "part-00000.parquet")
    run = _keyed(tmp_path)
    assert (run.shards_skipped, run.shards_written, run.shards_repaired) == (1, 2, 0)
    assert _products(tmp_path) == [2 * v for v in range(10)]
    assert read_stamp(pq.read_table(tmp_path / "product" / "part-00000.parquet")) is None


def test_a_shard_whose_footer_changed_what_it_reads_is_damaged(tmp_path: Path) -> None:
    """Page checksums do not cover the footer; the stamp's seals do: a column made
    nullable there reads other rows, and a changed byte in the stamp garbles it."""
    _keyed(tmp_path)
    path = tmp_path / "product" / "part-00000.parquet"
    table = pq.read_table(path)
    schema = pa.schema([pa.field("y", pa.float64())], metadata=table.schema.metadata)
    pq.write_table(table.cast(schema), path)  # other values under the same stamp
    with pytest.raises(DamagedFileError, match="its rows are not those it was written with"):
        read_stamped(path)
    stamp = read_stamp(table)
    assert stamp is not None
    garbled = {**stamp, "items": 5}
    pq.write_table(table.replace_schema_metadata({SHARD_STAMP: json.dumps(garbled)}), path)
    with pytest.raises(DamagedFileError, match="its stamp is garbled"):
        read_stamped(path)
    run = _keyed(tmp_path)  # made again, not taken for another run's
    assert (run.shards_repaired, run.shards_written) == (1, 1)
    assert _products(tmp_path) == [2 * v for v in range(10)]


class _Batched:
    """A stage that takes ``rows_per_call`` rows at a time and records each call's size."""

    def __init__(self, rows_per_call: int) -> None:
        self.rows_per_call = rows_per_call
        self.calls: list[int] = []

    def __call__(self, rows: pa.Table) -> pa.Table:
        self.calls.append(rows.num_rows)
        return pa.table({"y": [2 * v for v in rows["x"].to_pylist()]})


@pytest.mark.parametrize("per_call", [1, 3, 4, 9])
def test_a_batched_stage_gets_several_rows_per_call_and_writes_the_same_rows(
    tmp_path: Path, per_call: int
) -> None:
    from geckokit.runs.shards import write_shard

    stage = _Batched(per_call)
    shard = pa.table({"x": list(range(7))})
    seen: list[int] = []
    done = write_shard(
        stage,
        shard,
        0,
        out=tmp_path,
        outputs=("doubled",),
        split=lambda t: {"doubled": t},
        on_item=seen.append,
    )
    step = min(per_call, 7)
    assert stage.calls == [step] * (7 // step) + ([7 % step] if 7 % step else [])
    assert done == sum(seen) == 7 and seen == stage.calls  # progress moves by each call's rows
    got = read_shards(tmp_path / "doubled")
    assert got is not None and got["y"].to_pylist() == [2 * v for v in range(7)]
