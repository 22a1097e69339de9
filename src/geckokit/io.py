"""Artefact I/O: Parquet shards and manifest.json, written atomically (write, then rename).

A shard file that exists is complete: it is written under a temporary name and renamed
into place, so a run killed mid-write leaves no file that looks finished.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST = "manifest.json"


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_table(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` as Parquet, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(payload: dict[str, Any], path: Path) -> None:
    """Write ``payload`` to ``path`` as indented JSON, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    try:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    return dict(json.loads(path.read_text()))


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def read_shards(folder: Path, *, columns: list[str] | None = None) -> pa.Table | None:
    """All finished shards of ``folder`` as one table (None when there are none); only
    ``columns`` when given (every shard must have them)."""
    files = sorted(folder.glob("part-*.parquet"))
    if not files:
        return None
    return pa.concat_tables(
        [pq.read_table(f, columns=columns) for f in files], promote_options="default"
    )


def environment() -> dict[str, str]:
    """Versions recorded in every manifest."""
    from geckokit import __version__

    return {"geckokit": __version__, "python": platform.python_version(), "pyarrow": pa.__version__}
