"""Text pairs for pre-finetuning (Gecko, section 3.3: a first stage on large sets of text
pairs, such as title-body or question-answer, with in-batch negatives only).

:func:`load_pairs` accepts, and turns into one table of ``query``/``positive``/``source``
rows in the unified format (:mod:`geckokit.format`):

- a JSONL, Parquet or CSV file with columns ``query`` and ``positive``, or ``question`` and
  ``answer``, or ``title`` and ``text``/``body`` (title-body pairs); an optional ``task``
  column overrides the task string per row;
- a BEIR folder or any corpus :func:`geckokit.corpus.load_corpus` reads: the title-body
  pairs of its passages that have a title;
- a ``geckokit mix`` output folder: its (query, positive) pairs, already formatted.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from geckokit.format import document_text, query_text
from geckokit.io import read_shards
from geckokit.tasks import DEFAULT_QUERY_TASK

_PAIR_COLUMNS = (
    ("query", "positive"),
    ("question", "answer"),
    ("title", "text"),
    ("title", "body"),
)


def load_pairs(
    path: str | Path, *, task: str = DEFAULT_QUERY_TASK, limit: int | None = None
) -> pa.Table:
    """(query, positive, source) rows from ``path`` (see the module docstring); the first
    ``limit`` pairs when given. Pairs with an empty side are dropped."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"pre-finetuning pairs not found: {path}")
    if path.is_dir() and (path / "mixture").is_dir():
        table = read_shards(path / "mixture")
        if table is None or table.num_rows == 0:
            raise ValueError(f"{path}: the mixture/ folder holds no shards")
        rows = table.select(["query", "positive", "source"]).to_pydict()
        out = {"query": rows["query"], "positive": rows["positive"], "source": rows["source"]}
        return _finish(out, path, limit)
    if path.is_dir():
        return _from_corpus(path, task=task, limit=limit)
    table = _read_file(path)
    names = set(table.column_names)
    pair = next((p for p in _PAIR_COLUMNS if set(p) <= names), None)
    if pair is None:
        raise ValueError(
            f"{path}: no pair columns among {sorted(names)}; expected one of "
            + ", ".join(f"({a}, {b})" for a, b in _PAIR_COLUMNS)
        )
    left = [str(v or "") for v in table.column(pair[0]).to_pylist()]
    right = [str(v or "") for v in table.column(pair[1]).to_pylist()]
    tasks = (
        [str(t or task) for t in table.column("task").to_pylist()]
        if "task" in names
        else [task] * len(left)
    )
    source = f"pairs:{pair[0]}-{pair[1]}"
    out = {"query": [], "positive": [], "source": []}
    for q, p, t in zip(left, right, tasks, strict=True):
        if q.strip() and p.strip():
            out["query"].append(query_text(t, q))
            out["positive"].append(document_text(None, p))
            out["source"].append(source)
    return _finish(out, path, limit)


def _from_corpus(path: Path, *, task: str, limit: int | None) -> pa.Table:
    from geckokit.corpus import load_corpus

    passages = load_corpus(path).passages.to_pydict()
    out: dict[str, list[str]] = {"query": [], "positive": [], "source": []}
    for title, text in zip(passages["title"], passages["text"], strict=True):
        if title and title.strip() and text.strip():
            out["query"].append(query_text(task, title))
            out["positive"].append(document_text(None, text))
            out["source"].append("pairs:title-text")
    return _finish(out, path, limit)


def _read_file(path: Path) -> pa.Table:
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    if suffix in {".jsonl", ".json", ".jsonl.gz"}:
        import pyarrow.json as pajson

        return pajson.read_json(path)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path)
    if suffix in {".csv", ".csv.gz"}:
        import pyarrow.csv as pacsv

        return pacsv.read_csv(path)
    raise ValueError(
        f"{path}: pairs must be .jsonl, .parquet or .csv (or a folder), got {suffix!r}"
    )


def _finish(out: dict[str, list[str]], path: Path, limit: int | None) -> pa.Table:
    table = pa.table(out)
    if limit is not None:
        table = table.slice(0, limit)
    if table.num_rows < 2:
        raise ValueError(
            f"{path}: {table.num_rows} usable pair(s); in-batch negatives need at least a batch"
        )
    return table
