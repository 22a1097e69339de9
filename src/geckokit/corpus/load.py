"""Readers for each corpus layout, and the normalisation they share."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from geckokit.corpus.split import split_passage
from geckokit.types import ClosedSet

log = logging.getLogger(__name__)

ID_FIELDS = ("passage_id", "_id", "id", "doc_id", "docid", "pid")
TITLE_FIELDS = ("title", "heading", "name")
TEXT_FIELDS = ("text", "body", "contents", "content", "passage", "abstract")

PASSAGE_SCHEMA = pa.schema(
    [("passage_id", pa.string()), ("title", pa.string()), ("text", pa.string())]
)


class CorpusError(ValueError):
    """The corpus cannot be read as given; the message names the file (and line) and the fix."""


class CorpusFormat(ClosedSet):
    JSONL = "jsonl"
    PARQUET = "parquet"
    CSV = "csv"
    BEIR = "beir"
    TEXT_DIR = "text-dir"


@dataclass
class CorpusStats:
    """What loading did: documents read, passages kept, and what was dropped and why."""

    documents: int = 0
    passages: int = 0
    split_documents: int = 0
    dropped_empty: int = 0
    dropped_duplicate: int = 0
    derived_ids: int = 0
    skipped_invalid: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Corpus:
    passages: pa.Table  # passage_id, title, text
    stats: CorpusStats
    source: str
    format: CorpusFormat
    max_tokens: int = 512
    overlap: int = 64

    def __len__(self) -> int:
        return int(self.passages.num_rows)


def detect_format(path: Path) -> CorpusFormat:
    if path.is_dir():
        if (path / "corpus.jsonl").exists():
            return CorpusFormat.BEIR
        return CorpusFormat.TEXT_DIR
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    by_suffix = {
        ".jsonl": CorpusFormat.JSONL,
        ".json": CorpusFormat.JSONL,
        ".parquet": CorpusFormat.PARQUET,
        ".csv": CorpusFormat.CSV,
        ".tsv": CorpusFormat.CSV,
    }
    if suffix.lower() in by_suffix:
        return by_suffix[suffix.lower()]
    raise CorpusError(
        f"{path}: cannot tell the corpus format from the name; use .jsonl, .parquet, .csv, a BEIR "
        "folder with corpus.jsonl, or a folder of .txt/.md files (or pass format=...)"
    )


def content_id(title: str, text: str) -> str:
    """A stable id from a passage's content (same content, same id, on every machine)."""
    digest = hashlib.sha1(f"{title}\x1f{text}".encode()).hexdigest()
    return f"p{digest[:16]}"


def _pick(record: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if name in record and record[name] is not None:
            return record[name]
    return None


def _read_jsonl(path: Path, errors: str, stats: CorpusStats) -> Iterator[dict[str, Any]]:
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                _bad(
                    f"{path}:{lineno}: invalid UTF-8 at byte {exc.start} of the line", errors, stats
                )
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                _bad(
                    f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})",
                    errors,
                    stats,
                )
                continue
            if not isinstance(record, dict):
                _bad(
                    f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}",
                    errors,
                    stats,
                )
                continue
            yield record


def _read_csv(path: Path, errors: str, stats: CorpusStats) -> Iterator[dict[str, Any]]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        if errors == "raise":
            raise CorpusError(
                f"{path}:{line}: invalid UTF-8; re-encode the file as UTF-8 or pass errors='skip'"
            ) from None
        stats.skipped_invalid.append(f"{path}:{line}: invalid UTF-8 (replaced)")
        text = data.decode("utf-8-sig", errors="replace")
    dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
    yield from csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)


def _read_parquet(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        yield from batch.to_pylist()


def _read_text_dir(path: Path, errors: str, stats: CorpusStats) -> Iterator[dict[str, Any]]:
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and p.suffix.lower() in {".txt", ".md", ".markdown"}
    )
    if not files:
        raise CorpusError(f"{path}: no .txt or .md files found (and no corpus.jsonl)")
    for file in files:
        data = file.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            _bad(f"{file}:{line}: invalid UTF-8", errors, stats)
            continue
        title = file.stem.replace("_", " ").replace("-", " ")
        lines = text.lstrip().splitlines()
        if file.suffix.lower() != ".txt" and lines and lines[0].startswith("#"):
            title = lines[0].lstrip("#").strip()
            text = "\n".join(lines[1:])
        yield {"passage_id": file.relative_to(path).as_posix(), "title": title, "text": text}


def _bad(message: str, errors: str, stats: CorpusStats) -> None:
    if errors == "raise":
        raise CorpusError(
            message + "; fix the line or pass errors='skip' (--skip-invalid) to skip it"
        )
    log.warning("skipping %s", message)
    stats.skipped_invalid.append(message)


def load_corpus(
    path: str | Path,
    *,
    format: str | None = None,
    max_tokens: int = 512,
    overlap: int = 64,
    errors: str = "raise",
    limit: int | None = None,
) -> Corpus:
    """Read ``path`` into a :class:`Corpus`.

    ``format`` is detected from the path when None. Documents longer than ``max_tokens``
    (see :func:`geckokit.corpus.count_tokens`) become several passages with ``overlap``
    tokens in common, ids ``{id}#{k}``. ``errors="skip"`` skips invalid lines (recorded in
    ``stats.skipped_invalid``) instead of raising :class:`CorpusError`. ``limit`` keeps the
    first N passages.
    """
    if errors not in ("raise", "skip"):
        raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
    source = Path(path).expanduser()
    if not source.exists():
        raise CorpusError(f"{source}: no such file or folder")
    fmt = CorpusFormat.parse(format) if format else detect_format(source)
    stats = CorpusStats()
    records: Iterator[dict[str, Any]]
    if fmt is CorpusFormat.BEIR:
        records = _read_jsonl(source / "corpus.jsonl" if source.is_dir() else source, errors, stats)
    elif fmt is CorpusFormat.JSONL:
        records = _read_jsonl(source, errors, stats)
    elif fmt is CorpusFormat.CSV:
        records = _read_csv(source, errors, stats)
    elif fmt is CorpusFormat.PARQUET:
        records = _read_parquet(source)
    else:
        records = _read_text_dir(source, errors, stats)

    ids: list[str] = []
    titles: list[str] = []
    texts: list[str] = []
    seen_ids: Counter[str] = Counter()
    seen_content: set[tuple[str, str]] = set()
    for n, record in enumerate(records, start=1):
        text = _pick(record, TEXT_FIELDS)
        if text is None:
            raise CorpusError(
                f"{source}: record {n} has no text field; expected one of {', '.join(TEXT_FIELDS)}, "
                f"found {', '.join(map(str, record)) or 'none'}"
            )
        stats.documents += 1
        title = str(_pick(record, TITLE_FIELDS) or "").strip()
        text = str(text).strip()
        if not text:
            stats.dropped_empty += 1
            continue
        raw_id = _pick(record, ID_FIELDS)
        if raw_id is None or str(raw_id).strip() == "":
            doc_id = content_id(title, text)
            stats.derived_ids += 1
        else:
            doc_id = str(raw_id).strip()
        seen_ids[doc_id] += 1
        pieces = split_passage(text, max_tokens=max_tokens, overlap=overlap)
        if len(pieces) > 1:
            stats.split_documents += 1
        for k, piece in enumerate(pieces):
            key = (title, piece)
            if key in seen_content:
                stats.dropped_duplicate += 1
                continue
            seen_content.add(key)
            ids.append(doc_id if len(pieces) == 1 else f"{doc_id}#{k}")
            titles.append(title)
            texts.append(piece)
        if limit is not None and len(ids) >= limit:
            break
    duplicates = [i for i, c in seen_ids.items() if c > 1]
    if duplicates:
        shown = ", ".join(repr(d) for d in duplicates[:10])
        more = f" and {len(duplicates) - 10} more" if len(duplicates) > 10 else ""
        raise CorpusError(
            f"{source}: duplicate passage ids: {shown}{more}. Ids must be unique; drop the id field to derive ids from content"
        )
    if limit is not None:
        ids, titles, texts = ids[:limit], titles[:limit], texts[:limit]
    stats.passages = len(ids)
    if not ids:
        raise CorpusError(f"{source}: no passages with text found ({stats.documents} records read)")
    table = pa.table({"passage_id": ids, "title": titles, "text": texts}, schema=PASSAGE_SCHEMA)
    log.info(
        "corpus %s: %d documents -> %d passages (%d split, %d empty and %d duplicate dropped)",
        source,
        stats.documents,
        stats.passages,
        stats.split_documents,
        stats.dropped_empty,
        stats.dropped_duplicate,
    )
    return Corpus(
        passages=table,
        stats=stats,
        source=str(source),
        format=fmt,
        max_tokens=max_tokens,
        overlap=overlap,
    )
