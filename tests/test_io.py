"""Artefact I/O: a file appears whole or not at all, and one damaged since fails to read
with an error naming it, rather than reading wrong."""

from __future__ import annotations

import errno
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import geckokit.io
from geckokit.io import (
    SHARD_STAMP,
    DamagedFileError,
    DiskFullError,
    read_json,
    read_shards,
    read_table,
    write_json,
    write_table,
)


def _table(rows: int = 2000, seed: int = 3) -> pa.Table:
    rng = random.Random(seed)
    return pa.table({"text": [f"{rng.getrandbits(128):032x}" for _ in range(rows)]})


def test_a_table_reads_back_as_written(tmp_path: Path) -> None:
    table = _table()
    write_table(table, tmp_path / "part-00000.parquet")
    assert read_table(tmp_path / "part-00000.parquet").equals(table)
    assert [p.name for p in tmp_path.iterdir()] == ["part-00000.parquet"]  # no temporary left


@pytest.mark.parametrize("damage", ["cut short", "emptied", "a byte flipped"])
def test_a_damaged_table_fails_to_read_naming_its_file(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "part-00000.parquet"
    write_table(_table(), path)
    data = bytearray(path.read_bytes())
    if damage == "cut short":
        data = data[: len(data) // 2]
    elif damage == "emptied":
        data = bytearray()
    else:  # in the middle of the data page, where only its checksum notices
        data[len(data) // 4] ^= 0xFF
    path.write_bytes(bytes(data))
    if damage == "a byte flipped":  # pyarrow alone reads the flipped byte as data
        assert pq.read_table(path).num_rows == 2000
    with pytest.raises(DamagedFileError, match=r"part-00000\.parquet is damaged"):
        read_table(path)


def test_a_full_disk_leaves_no_file_and_says_how_to_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that the disk refuses part way (ENOSPC from the Parquet writer, as a full
    disk gives it: tests/reliability/test_damaged_runs.py fills a real tmpfs)."""
    real = pq.write_table

    def full(table: pa.Table, where: Any, **kwargs: Any) -> None:
        real(table.slice(0, 10), where, **kwargs)  # some bytes made it to the file
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(geckokit.io.pq, "write_table", full)
    with pytest.raises(DiskFullError, match=r"no space left .* rerun the same command") as info:
        write_table(_table(), tmp_path / "part-00000.parquet")
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_a_garbled_json_record_is_a_damaged_file(tmp_path: Path) -> None:
    write_json({"stage": "generate"}, tmp_path / "manifest.json")
    assert read_json(tmp_path / "manifest.json") == {"stage": "generate"}
    (tmp_path / "manifest.json").write_text('{"stage": "gen')
    with pytest.raises(DamagedFileError, match=r"manifest\.json is damaged: not JSON"):
        read_json(tmp_path / "manifest.json")
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(DamagedFileError, match="not a JSON object"):
        read_json(tmp_path / "manifest.json")
    assert read_json(tmp_path / "missing.json") is None


def test_shards_read_together_without_their_stamps(tmp_path: Path) -> None:
    for k in range(2):
        table = pa.table({"x": [k]}).replace_schema_metadata({SHARD_STAMP: b'{"shard": 0}'})
        write_table(table, tmp_path / "out" / f"part-0000{k}.parquet")
    both = read_shards(tmp_path / "out")
    assert both is not None and both["x"].to_pylist() == [0, 1]
    assert SHARD_STAMP not in (both.schema.metadata or {})  # nothing carries it elsewhere
    (tmp_path / "out" / "part-00001.parquet").write_bytes(b"")
    with pytest.raises(DamagedFileError, match=r"part-00001\.parquet is damaged.*delete it"):
        read_shards(tmp_path / "out")
