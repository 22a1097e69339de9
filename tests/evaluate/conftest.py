"""Fixtures for evaluation tests: small slices of the shared benchmarks, written as a user's
files would be, and a fake run folder for the report."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from geckokit.io import write_json, write_table


def _jsonl(path: Path, rows: list[dict]) -> None:  # type: ignore[type-arg]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _read_jsonl(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def slices(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """SciFact with its first 30 test queries and a corpus of their relevant abstracts plus
    70 others; the first 200 STS-B test pairs; Banking77 cut to 10 intents (16 training and
    10 test texts each)."""
    root = tmp_path_factory.mktemp("slices")
    src = shared_data / "beir" / "scifact"
    header, *lines = (src / "qrels" / "test.tsv").read_text().splitlines()
    queries: list[str] = []
    kept = [header]
    for line in lines:
        qid = line.split("\t")[0]
        if qid not in queries and len(queries) == 30:
            continue
        if qid not in queries:
            queries.append(qid)
        kept.append(line)
    relevant = {line.split("\t")[1] for line in kept[1:]}
    corpus = _read_jsonl(src / "corpus.jsonl")
    docs = [d for d in corpus if d["_id"] in relevant]
    docs += [d for d in corpus if d["_id"] not in relevant][:70]
    scifact = root / "scifact"
    (scifact / "qrels").mkdir(parents=True)
    (scifact / "qrels" / "test.tsv").write_text("\n".join(kept) + "\n")
    _jsonl(scifact / "corpus.jsonl", docs)
    _jsonl(
        scifact / "queries.jsonl",
        [q for q in _read_jsonl(src / "queries.jsonl") if q["_id"] in queries],
    )
    sts = root / "stsbenchmark"
    _jsonl(
        sts / "test.jsonl", _read_jsonl(shared_data / "sts" / "stsbenchmark" / "test.jsonl")[:200]
    )
    banking = root / "banking77"
    for split, per_label in (("train", 16), ("test", 10)):
        counts: dict[int, int] = {}
        rows = []
        for r in _read_jsonl(shared_data / "classification" / "banking77" / f"{split}.jsonl"):
            if r["label"] < 10 and counts.get(r["label"], 0) < per_label:
                counts[r["label"]] = counts.get(r["label"], 0) + 1
                rows.append(r)
        _jsonl(banking / f"{split}.jsonl", rows)
    return {"scifact": scifact, "stsbenchmark": sts, "banking77": banking}


def eval_rows() -> list[dict]:  # type: ignore[type-arg]
    """Result rows of two models at three dims on three tasks (made up, for the report)."""
    rows = []
    for model, base in (("all-minilm-l6-v2", 0.64), ("run1/model", 0.70)):
        for task, metric, shift in (
            ("scifact", "ndcg_at_10", 0.0),
            ("stsbenchmark", "cosine_spearman", 0.18),
            ("banking77", "accuracy", 0.15),
        ):
            for dim, loss in ((384, 0.0), (128, 0.02), (64, 0.06)):
                rows.append(
                    {
                        "model": model,
                        "format": "plain",
                        "dim": dim,
                        "task": task,
                        "kind": "retrieval",
                        "metric": metric,
                        "score": base + shift - loss,
                        "seconds": 1.0,
                    }
                )
    return rows


@pytest.fixture
def fake_run(tmp_path: Path) -> Path:
    """A run folder laid out as `geckokit distill` does, with made-up stage manifests (the
    report reads files; real stages are tested in their own packages)."""
    run = tmp_path / "run"
    write_json(
        {
            "stage": "generate",
            "status": "finished",
            "counts": {"queries": 40, "rejects": 3},
            "summary": {
                "passages": 43,
                "queries": 40,
                "task_types": {"question answering": 18, "fact checking": 9, "search result": 13},
                "mean_query_words": 9.4,
                "reject_rate": 0.0698,
                "reject_rate_by_reason": {"too_long": 0.0465, "copied_passage": 0.0233},
            },
        },
        run / "queries" / "manifest.json",
    )
    ql = [[-1.0 - 0.1 * i - 0.05 * j for i in range(5)] for j in range(40)]
    rc = [[4.0 - i * 0.5 + 0.01 * j for i in range(5)] for j in range(40)]
    write_table(
        pa.table({"ql_scores": ql, "rc_scores": rc}), run / "mine" / "fret" / "part-00000.parquet"
    )
    spread = {"mean": -1.2, "stdev": 0.3, "mean_range_per_query": 0.4}
    write_json(
        {
            "stage": "mine",
            "status": "finished",
            "counts": {"examples": 40, "pairs": 200},
            "summary": {
                "examples": 40,
                "relabel_rate": 0.15,
                "seed_rank_mean": 1.6,
                "seed_at_rank_1": 0.8,
                "positive_first_for_encoder": 0.625,
                "solved_dropped": 23,
                "ql": spread,
                "rc": spread,
                "encoder": spread,
            },
        },
        run / "mine" / "manifest.json",
    )
    write_json(
        {
            "stage": "mix",
            "rows": 140,
            "sources": {"fret": 40, "nli:snli": 100},
            "weights": {"fret": 1.0, "nli:snli": 0.5},
        },
        run / "mix" / "manifest.json",
    )
    write_json(
        {
            "stage": "train",
            "config": {"base": "all-minilm-l6-v2"},
            "steps": 30,
            "seconds": 12.5,
            "matryoshka_dims": [384, 256, 128, 64],
            "loss_curve": [{"step": s, "loss": 3.0 / (1 + 0.1 * s)} for s in range(1, 31)],
        },
        run / "train" / "manifest.json",
    )
    (run / "train" / "checkpoints" / "checkpoint-10").mkdir(parents=True)
    write_json(
        {"stage": "train", "steps": 10},
        run / "train" / "checkpoints" / "checkpoint-10" / "manifest.json",
    )
    write_json(
        {
            "stage": "eval",
            "models": [
                {
                    "name": "all-minilm-l6-v2",
                    "revision": "abc",
                    "width": 384,
                    "dims": [384, 128, 64],
                    "formats": ["plain"],
                }
            ],
            "tasks": [
                {
                    "name": "scifact",
                    "kind": "retrieval",
                    "split": "test",
                    "task_string": "fact checking",
                    "source": "x",
                }
            ],
            "results": eval_rows(),
            "seconds": 3.0,
            "environment": {"geckokit": "0.1.0", "mteb": "2"},
        },
        run / "eval" / "manifest.json",
    )
    return run
