"""Queries of the user's own (a query log without labels) for FRet step 2.

They take the place of FRet step 1, or join the generated queries: retrieval and the LLM's
scores choose each one's positive and hard negative as for a generated query, except that
a user query has no seed passage (``passage_id`` null), so its candidates are simply the
initial encoder's top N and nothing is kept as positive unless the LLM ranks it first.

Formats, by the file's suffix:

- ``.jsonl`` / ``.ndjson`` / ``.json``: one JSON object a line with a ``query`` (or ``text``) field;
  an ``_id``, ``id`` or ``query_id`` field becomes the query id; other fields are ignored;
- ``.csv`` / ``.tsv``: a header row with a ``query`` (or ``text``) column, and optionally one
  of the id columns;
- anything else: plain text, one query a line.

Empty queries are skipped and the repeats of a query (the same words, whitespace aside) are
dropped; both are counted. A query without an id gets one derived from its text, so it is
the same in every run.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from geckokit.tasks import DEFAULT_QUERY_TASK
from geckokit.types import ClosedSet

#: The columns FRet step 2 reads from any queries: ``passage_id`` is the seed passage the
#: query was written for, null for a user query; ``source`` says which kind it is.
QUERY_SCHEMA = pa.schema(
    [
        ("query_id", pa.string()),
        ("passage_id", pa.string()),
        ("task_type", pa.string()),
        ("task", pa.string()),
        ("query", pa.string()),
        ("source", pa.string()),
    ]
)

_TEXT_FIELDS = ("query", "text")
_ID_FIELDS = ("_id", "id", "query_id")


class QuerySource(ClosedSet):
    GENERATED = "generated"  # written by the LLM for a seed passage (FRet step 1)
    USER = "user"  # read from the user's file: no seed passage


@dataclass(frozen=True)
class UserQueries:
    """A file of user queries, read: ``queries`` in :data:`QUERY_SCHEMA`, the file's
    ``sha256`` and ``counts`` (``read``: records or lines read, ``empty`` and ``duplicates``
    skipped, ``queries`` kept)."""

    path: Path
    sha256: str
    task: str
    queries: pa.Table
    counts: dict[str, int]

    def record(self) -> dict[str, Any]:
        """What a run's manifest keeps of the file: its path (``source``), hash, task, counts."""
        return {"source": str(self.path), "sha256": self.sha256, "task": self.task, **self.counts}


def generated_queries(table: pa.Table) -> pa.Table:
    """The queries of a generate run (FRet step 1; ``passage_id`` is each one's seed) in
    :data:`QUERY_SCHEMA`, marked as generated."""
    columns = [n for n in QUERY_SCHEMA.names if n != "source"]
    source = pa.array([QuerySource.GENERATED.value] * table.num_rows, pa.string())
    return table.select(columns).append_column("source", source).cast(QUERY_SCHEMA)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stable_id(query: str) -> str:
    """An id derived from the query's words, the same in every run: ``user:`` + 16 hex."""
    return "user:" + hashlib.sha256(_key(query).encode()).hexdigest()[:16]


def _key(query: str) -> str:
    return " ".join(query.split())


def read_user_queries(path: str | Path, *, task: str = DEFAULT_QUERY_TASK) -> UserQueries:
    """Read the queries in ``path`` (see the module docstring for the formats) with ``task``
    as their task string. Raises ``ValueError`` naming the file, the line and the fix for a
    JSONL line that is not a JSON object, a file without a ``query``/``text`` field or
    column, one id given to two different queries, and a file with no query at all."""
    path = Path(path)
    if not task.strip():
        raise ValueError("the task of the user queries is empty; give one, e.g. 'search result'")
    if not path.is_file():
        raise ValueError(f"{path}: no such queries file")
    ids: list[str] = []
    texts: list[str] = []
    seen: dict[str, str] = {}  # normalised text -> id
    line_of: dict[str, int] = {}  # id -> the line that gave it
    counts = {"read": 0, "empty": 0, "duplicates": 0}
    for line, qid, text in _records(path):
        counts["read"] += 1
        if not text.strip():
            counts["empty"] += 1
            continue
        key = _key(text)
        qid = qid or stable_id(text)
        if key in seen:
            counts["duplicates"] += 1
            continue
        if qid in line_of:
            raise ValueError(
                f"{path}:{line}: query id {qid!r} was already given to another query on line "
                f"{line_of[qid]}; give each query its own id (or none: one is derived from "
                "the text)"
            )
        seen[key], line_of[qid] = qid, line
        ids.append(qid)
        texts.append(text.strip())
    if not texts:
        raise ValueError(
            f"{path}: no queries found ({counts['read']} records read, {counts['empty']} "
            "empty); give one query per line, or JSONL/CSV records with a 'query' field"
        )
    n = len(texts)
    queries = pa.table(
        {
            "query_id": ids,
            "passage_id": pa.nulls(n, pa.string()),
            "task_type": pa.nulls(n, pa.string()),
            "task": [task.strip()] * n,
            "query": texts,
            "source": [QuerySource.USER.value] * n,
        },
        schema=QUERY_SCHEMA,
    )
    return UserQueries(
        path=path,
        sha256=file_sha256(path),
        task=task.strip(),
        queries=queries,
        counts={**counts, "queries": n},
    )


def _records(path: Path) -> Iterator[tuple[int, str | None, str]]:
    """(line number, id or None, query text) per record of ``path``."""
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        yield from _jsonl(path)
    elif suffix in {".csv", ".tsv"}:
        yield from _table(path, delimiter="\t" if suffix == ".tsv" else ",")
    else:
        with path.open(encoding="utf-8-sig") as f:
            for line, text in enumerate(f, start=1):
                yield line, None, text


def _jsonl(path: Path) -> Iterator[tuple[int, str | None, str]]:
    fix = 'write one JSON object a line, such as {"query": "..."}'
    with path.open(encoding="utf-8-sig") as f:
        for line, raw in enumerate(f, start=1):
            if not raw.strip():
                yield line, None, ""
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line}: not valid JSON ({exc.msg}); {fix}") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{line}: not a JSON object; {fix}")
            field = next((k for k in _TEXT_FIELDS if k in record), None)
            if field is None:
                raise ValueError(
                    f"{path}:{line}: no 'query' or 'text' field in {sorted(record)}; put each "
                    "query in a field named 'query'"
                )
            yield line, _id(record, path, line), _text(record[field], path, line)


def _table(path: Path, *, delimiter: str) -> Iterator[tuple[int, str | None, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        header = reader.fieldnames or []
        field = next((k for k in _TEXT_FIELDS if k in header), None)
        if field is None:
            kind = "TSV" if delimiter == "\t" else "CSV"
            raise ValueError(
                f"{path}:1: no 'query' or 'text' column in the header {header}; name the "
                f"{kind} column that holds the queries 'query' (or save the queries as plain "
                "text, one a line, with a .txt suffix)"
            )
        for record in reader:
            yield reader.line_num, _id(record, path, reader.line_num), record[field] or ""


def _id(record: dict[str, Any], path: Path, line: int) -> str | None:
    value = next((record[k] for k in _ID_FIELDS if record.get(k) not in (None, "")), None)
    if value is None:
        return None
    if isinstance(value, dict | list):
        raise ValueError(f"{path}:{line}: the query id {value!r} is not a string or number")
    return str(value)


def _text(value: Any, path: Path, line: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(
            f"{path}:{line}: the query {value!r} is not a string; write it as a JSON string"
        )
    return value
