"""How hard are generated claims for the base encoder, next to SciFact's real claims?

For each claim, the rank the base encoder (all-MiniLM-L6-v2, unified format, SciFact's
evaluation task string) gives its document among all 5,183 SciFact abstracts: the seed
passage's document for a generated claim, the best-ranked relevant document for a real one.
A claim whose document already comes first teaches the encoder little; real train claims
that lift SciFact test nDCG@10 by 5.7 points (docs/scifact.md) are the yardstick.

    python -m experiments.scifact.claim_difficulty runs/rrf-500/distill/queries \\
        runs/prompt-check/default ...

Each argument is the ``--out`` folder of a ``geckokit generate`` run on the SciFact corpus,
or the ``queries/`` folder of a ``geckokit distill`` run on it. Claims of several folders are compared on the passages they share, so
two prompts are judged on the same passages. Prints one row per folder plus SciFact's real
train and test claims: the share of claims whose abstract ranks first and in the top 10,
the median rank, words per claim, and the mean share of a claim's content words found in
its abstract ("shared %"). The abstracts' embeddings are cached under ``--cache``.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any

import numpy as np

from experiments.scifact import ROOT, SHARED_DATA


@functools.cache
def scifact_split(scifact: Path, split: str) -> Any:
    """SciFact's ``split`` (``load_beir``), read once per run however many helpers ask."""
    from geckokit.retrieval.beir import load_beir

    return load_beir(scifact, split=split)


def abstract_embeddings(
    encoder: object, scifact: Path, cache: Path
) -> tuple[list[str], np.ndarray]:
    """The ids of SciFact's abstracts and their embeddings (unified format), cached."""
    from geckokit.format import document_text
    from geckokit.retrieval.index import cached_encode

    corpus = scifact_split(scifact, "test").corpus
    doc_ids = sorted(corpus)
    texts = [document_text(corpus[d]["title"], corpus[d]["text"]) for d in doc_ids]
    docs = cached_encode(encoder, texts, cache=cache, key={"encoder": "all-minilm-l6-v2"})
    return doc_ids, docs


def real_claims(scifact: Path, split: str) -> tuple[list[str], list[str], list[set[str]]]:
    """SciFact's claims of ``split``: their ids, texts and relevant abstracts, in the order
    ``evaluate_retrieval`` scores them (its ``per_query`` lists line up with these)."""
    from geckokit.retrieval.beir import sort_ids

    data = scifact_split(scifact, split)
    qids = sort_ids(list(data.queries))
    relevant = [{d for d, g in data.qrels[q].items() if g > 0 and d in data.corpus} for q in qids]
    return qids, [data.queries[q] for q in qids], relevant


def ranks(
    encoder: object,
    docs: np.ndarray,
    doc_ids: list[str],
    claims: list[str],
    relevant: list[set[str]],
) -> np.ndarray:
    """Rank (1 = first) of each claim's best relevant document among all ``docs``."""
    from geckokit.format import query_text
    from geckokit.tasks import task_string

    task = task_string("scifact", "retrieval")
    q = encoder.encode(  # type: ignore[attr-defined]
        [query_text(task, c) for c in claims], normalize_embeddings=True, batch_size=64
    )
    scores = q @ docs.T  # (claims, docs)
    row = {d: i for i, d in enumerate(doc_ids)}
    out = []
    for i, rel in enumerate(relevant):
        best = max(scores[i, row[d]] for d in rel)
        out.append(int((scores[i] > best).sum()) + 1)
    return np.array(out)


def overlaps(
    corpus: dict[str, dict[str, str]], claims: list[str], relevant: list[set[str]]
) -> np.ndarray:
    """Per claim, the share of its content words found in its abstract (title and text;
    ``geckokit.fret.validate.word_overlap``), the highest over its relevant abstracts."""
    from geckokit.fret.validate import word_overlap

    return np.array(
        [
            max(word_overlap(c, f"{corpus[d]['title']}\n{corpus[d]['text']}") for d in rel)
            for c, rel in zip(claims, relevant, strict=True)
        ]
    )


def describe(name: str, r: np.ndarray, claims: list[str], overlap: np.ndarray) -> str:
    words = np.mean([len(c.split()) for c in claims])
    return (
        f"{name:<44} {len(r):>6} {100 * np.mean(r == 1):>8.1f} {100 * np.mean(r <= 10):>8.1f} "
        f"{np.median(r):>7.0f} {words:>6.1f} {100 * overlap.mean():>8.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.scifact.claim_difficulty", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "queries", nargs="*", type=Path, help="generate --out folders (distill: RUN/queries)"
    )
    parser.add_argument("--shared", type=Path, default=SHARED_DATA)
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "claim-difficulty")
    args = parser.parse_args()

    from geckokit.encoder import load_encoder
    from geckokit.io import read_shards

    scifact = args.shared / "beir" / "scifact"
    encoder = load_encoder("all-minilm-l6-v2")
    doc_ids, docs = abstract_embeddings(encoder, scifact, args.cache / "abstracts.npy")

    runs = {}
    for folder in args.queries:
        table = read_shards(folder / "queries")
        if table is None:
            raise SystemExit(f"{folder}: no queries/ shards; pass a generate --out folder")
        runs[folder] = table.select(["passage_id", "query"]).to_pylist()
    shared = (
        set.intersection(*({r["passage_id"] for r in rows} for rows in runs.values()))
        if runs
        else set()
    )

    corpus = scifact_split(scifact, "test").corpus
    print(
        f"{'claims':<44} {'count':>6} {'rank 1 %':>8} {'top10 %':>8} {'median':>7} {'words':>6} "
        f"{'shared %':>8}"
    )
    for folder, rows in runs.items():
        rows = [r for r in rows if r["passage_id"] in shared]
        claims = [r["query"] for r in rows]
        seed_docs = [{r["passage_id"].split("#")[0]} for r in rows]  # a long abstract's part
        r = ranks(encoder, docs, doc_ids, claims, seed_docs)
        print(describe(str(folder), r, claims, overlaps(corpus, claims, seed_docs)))
    for split in ("train", "test"):
        _, claims, relevant = real_claims(scifact, split)
        r = ranks(encoder, docs, doc_ids, claims, relevant)
        print(
            describe(
                f"SciFact {split} claims (real)", r, claims, overlaps(corpus, claims, relevant)
            )
        )


if __name__ == "__main__":
    main()
