"""What a file of a run records it was made from, its *stamp*: kept in the file's own Parquet
metadata (under :data:`~geckokit.io.SHARD_STAMP`), so that it survives whatever becomes of the
run's manifests. A stamp holds a digest of the input rows and the settings that shaped the
file (a :class:`ShardKey` makes a shard's), and is sealed with a digest of the file's rows
and of the stamp itself, which :func:`read_stamped` checks. The sharded loop
(:mod:`geckokit.runs.shards`) stamps every shard; mine stamps its candidates.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from geckokit.io import SHARD_STAMP, DamagedFileError, read_table

#: The version of the stamp's layout
STAMP_FORMAT = 1


def rows_sha256(table: pa.Table) -> str:
    """A digest of ``table``'s rows (values and column names, in order) that does not
    depend on how they are stored: :func:`json_sha256` of its rows."""
    return json_sha256(table.to_pylist())


def json_sha256(rows: Iterable[Any]) -> str:
    """A digest of ``rows`` (JSON values), each as canonical JSON on a line."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=True, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()


@dataclass(frozen=True)
class ShardKey:
    """What shapes a sharded run's output besides where its rows sit: ``settings`` (JSON:
    the configuration, prompt hash, model id, each shard's output depends on), ``defaults``
    (the settings' defaults, which fill in those a shard written before a setting existed
    lacks: :func:`~geckokit.runs.folder.with_defaults`), and ``fingerprint``, the digest of a
    shard's input rows (default :func:`rows_sha256`; a stage whose rows name texts held
    elsewhere digests those texts too)."""

    settings: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    fingerprint: Callable[[pa.Table], str] = rows_sha256

    def stamp(self, index: int, shard: pa.Table) -> dict[str, Any]:
        """What shard ``index`` of these rows (``shard``) records it was made from."""
        return {
            "format": STAMP_FORMAT,
            "shard": index,
            "items": shard.num_rows,
            "input_sha256": self.fingerprint(shard),
            "settings": self.settings,
        }


def read_stamp(table: pa.Table) -> dict[str, Any] | None:
    """The stamp a shard's table carries, as written (None: written before shards were
    stamped); :func:`read_stamped` reads a file and checks it."""
    raw = (table.schema.metadata or {}).get(SHARD_STAMP)
    return None if raw is None else dict(json.loads(raw))


def stamped(table: pa.Table, stamp: dict[str, Any] | None) -> pa.Table:
    """``table`` carrying ``stamp`` in its metadata, sealed with a digest of the table's own
    rows (``output_sha256``) and one of the stamp itself (``check``), which
    :func:`read_stamped` verifies: Parquet's page checksums do not cover the file's footer,
    where a changed byte could change the rows read (a column's type, a count) or the stamp
    (unchanged for None)."""
    if stamp is None:
        return table
    sealed = {**stamp, "output_sha256": rows_sha256(table)}
    sealed["check"] = json_sha256([sealed])
    metadata = {**(table.schema.metadata or {}), SHARD_STAMP: json.dumps(sealed).encode()}
    return table.replace_schema_metadata(metadata)


def read_stamped(path: Path) -> tuple[pa.Table, dict[str, Any] | None]:
    """The table at ``path`` and its stamp (None: written before shards were stamped). One
    that does not read back whole, whose stamp is garbled, or whose rows are not those the
    stamp sealed raises :class:`~geckokit.io.DamagedFileError`."""
    table = read_table(path)
    try:
        stamp = read_stamp(table)
    except ValueError as exc:
        raise DamagedFileError(f"{path} is damaged (its stamp does not read: {exc})") from exc
    if stamp is None:
        return table, None
    check = stamp.pop("check", None)
    if check != json_sha256([stamp]):
        raise DamagedFileError(f"{path} is damaged (its stamp is garbled)")
    try:
        rows = rows_sha256(table)
    except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
        raise DamagedFileError(f"{path} is damaged (its rows do not read: {exc})") from exc
    if stamp.get("output_sha256") != rows:
        raise DamagedFileError(f"{path} is damaged (its rows are not those it was written with)")
    return table, stamp
