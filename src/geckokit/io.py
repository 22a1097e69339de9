"""Artefact I/O: Parquet shards and manifest.json, written atomically (write, then rename).

A shard file that exists is complete: it is written under a temporary name, flushed to the
disk and renamed into place, so a run killed mid-write (or a disk that fills up) leaves no
file that looks finished. Parquet files carry page checksums, which :func:`read_table`
verifies, so a file damaged later (a bit flipped, a copy cut short) fails to read instead of
reading wrong.
"""

from __future__ import annotations

import errno
import json
import os
import platform
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST = "manifest.json"
#: The key of a shard's Parquet metadata that records what it was made from (its stamp:
#: :mod:`geckokit.runs.shards`); :func:`read_shards` drops it from the tables it returns.
SHARD_STAMP = b"geckokit.shard"

#: The errors of a full disk (or a full quota)
_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """A write failed because the disk (or the user's quota) is full; nothing half-written
    was left behind."""


class DamagedFileError(ValueError):
    """A file a run wrote no longer reads back whole (cut short, emptied, garbled)."""


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _disk_full(exc: OSError, path: Path) -> DiskFullError:
    error = DiskFullError(
        f"no space left on the device of {path.parent} while writing {path.name}; nothing "
        "half-written was kept (the files finished before are whole): free some space there "
        "and rerun the same command to resume"
    )
    error.errno = exc.errno
    return error


def write_table(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` as Parquet with page checksums, atomically: the file
    appears whole or not at all. A full disk raises :class:`DiskFullError`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    try:
        with open(tmp, "wb") as f:
            pq.write_table(table, f, compression="zstd", write_page_checksum=True)
            f.flush()
            os.fsync(f.fileno())  # on the disk before it takes the finished name
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno in _FULL:
            raise _disk_full(exc, path) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def read_table(path: Path, *, columns: list[str] | None = None) -> pa.Table:
    """The Parquet file at ``path`` (only ``columns`` when given), its page checksums
    verified; one that does not read back whole raises :class:`DamagedFileError`."""
    try:  # one file: ParquetFile reads it in a fraction of read_table's time
        with pq.ParquetFile(path, page_checksum_verification=True) as parquet:
            return parquet.read(columns=columns)
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise DamagedFileError(f"{path} is damaged ({exc})") from exc


def write_json(payload: dict[str, Any], path: Path) -> None:
    """Write ``payload`` to ``path`` as indented JSON, atomically. A full disk raises
    :class:`DiskFullError`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    try:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno in _FULL:
            raise _disk_full(exc, path) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path`` (None: no such file); one that is not a JSON object
    (cut short, garbled) raises :class:`DamagedFileError`."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DamagedFileError(f"{path} is damaged: not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise DamagedFileError(f"{path} is damaged: not a JSON object")
    return data


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def read_shards(folder: Path, *, columns: list[str] | None = None) -> pa.Table | None:
    """All finished shards of ``folder`` as one table (None when there are none); only
    ``columns`` when given (every shard must have them). A shard that does not read back
    whole raises :class:`DamagedFileError`, which says how to have it made again."""
    files = sorted(folder.glob("part-*.parquet"))
    if not files:
        return None
    tables = []
    for f in files:
        try:
            tables.append(read_table(f, columns=columns))
        except DamagedFileError as exc:
            raise DamagedFileError(
                f"{exc}: delete it and rerun the command that wrote {folder.parent} to "
                "make it again"
            ) from exc
    table = pa.concat_tables(tables, promote_options="default")
    metadata = {k: v for k, v in (table.schema.metadata or {}).items() if k != SHARD_STAMP}
    return table.replace_schema_metadata(metadata or None)


def environment() -> dict[str, str]:
    """Versions recorded in every manifest."""
    from geckokit import __version__

    return {"geckokit": __version__, "python": platform.python_version(), "pyarrow": pa.__version__}
