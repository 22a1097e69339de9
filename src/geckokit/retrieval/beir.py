"""Reading a BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv. The one reader of
labelled benchmarks: evaluation, rerank-eval and the mixture's ``--pairs`` all read through it
(:mod:`geckokit.corpus` reads a BEIR folder's ``corpus.jsonl`` as passages to distil from)."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


@dataclass
class BeirData:
    name: str
    corpus: dict[str, dict[str, str]]  # passage_id -> {"title", "text"}
    queries: dict[str, str]  # query_id -> text (only queries judged in the split)
    qrels: dict[str, dict[str, float]]  # query_id -> passage_id -> grade


def load_beir(folder: str | Path, *, split: str = "test") -> BeirData:
    """Load a BEIR folder; only queries with judgements in ``split`` are kept."""
    root = Path(folder)
    qrels_path = root / "qrels" / f"{split}.tsv"
    for need in (root / "corpus.jsonl", root / "queries.jsonl", qrels_path):
        if not need.exists():
            raise ValueError(
                f"{root} is not a BEIR folder: {need.name} is missing (expected corpus.jsonl, queries.jsonl, qrels/{split}.tsv)"
            )
    corpus = {}
    with (root / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                corpus[str(r["_id"])] = {"title": r.get("title") or "", "text": r.get("text") or ""}
    qrels: dict[str, dict[str, float]] = defaultdict(dict)
    with qrels_path.open(encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader)
        if header[:2] != ["query-id", "corpus-id"]:
            f.seek(0)
            reader = csv.reader(f, delimiter="\t")
        for row in reader:
            qrels[row[0]][row[1]] = float(row[2])
    queries = {}
    with (root / "queries.jsonl").open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                if str(r["_id"]) in qrels:
                    queries[str(r["_id"])] = r["text"]
    return BeirData(name=root.name, corpus=corpus, queries=queries, qrels=dict(qrels))


def sort_ids(ids: list[str]) -> list[str]:
    """Numeric ids in numeric order, then the others in text order."""
    return sorted(ids, key=lambda x: (0, int(x), "") if x.isdigit() else (1, 0, x))
