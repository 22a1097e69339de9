"""How much of the real claims' gain on SciFact is its train/test sibling claims?

SciFact's claims were written several to a citing sentence, often a claim and its negation,
and the splits share documents: 196 of the 300 test claims have a relevant abstract that a
train claim also cites, and the closest such train claim usually differs from the test claim
by a word or a number ("0-dimensional biomaterials show / lack inductive properties"). A model
trained on the train claims (``scifact_supervised.py``) can learn those abstracts for
those very findings. This script splits the test claims into the 196 whose abstract a train
claim cites ("covered") and the other 104, and scores each given model on both, against
the base in plain text (the README's base row), with a paired randomisation test per group:

    python -m experiments.scifact.scifact_siblings \
        real=runs/scifact-supervised/train/model \
        generated=runs/scifact-science-noneg/train/model --out runs/scifact-siblings

Each ``NAME=MODEL`` is a label and a model folder (or registry name), evaluated in the
unified format with SciFact's task string, as the studies train them. ``--written`` also
splits the test claims by whether a distill run wrote claims for one of their abstracts
(its passages are a sample of the corpus), to see whether writing for a test claim's own
abstract helps that claim:

    python -m experiments.scifact.scifact_siblings \
        science-noneg=runs/scifact-science-noneg/train/model \
        --written runs/scifact-bench-science/distill/queries --out runs/scifact-siblings-written

About 4 minutes a model on 2 cores (the base's corpus embeddings are cached after the
first run, as in ``distill_scifact.py`` and ``hard_fret.py``). Prints a table and the
sibling statistics, and writes ``results.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from experiments.scifact import ROOT, SHARED_DATA


def split_by_train_documents(
    scifact: Path,
) -> tuple[list[set[str]], np.ndarray, dict[str, Any]]:
    """The test claims' relevant abstracts (evaluation order), a mask of the claims with a
    relevant abstract that some train claim also cites, and how close the nearest such train
    claim is."""
    from experiments.scifact.claim_difficulty import real_claims
    from geckokit.fret.validate import word_overlap

    train_ids, train_claims, train_rel = real_claims(scifact, "train")
    cited = set().union(*train_rel)
    _, test_claims, test_rel = real_claims(scifact, "test")
    covered = np.array([bool(r & cited) for r in test_rel])
    closest = []  # per covered test claim: the nearest same-abstract train claim's overlap
    for claim, rel in zip(test_claims, test_rel, strict=True):
        siblings = [c for c, r in zip(train_claims, train_rel, strict=True) if r & rel]
        if siblings:
            # two-way: the share of content words each has in the other, the smaller one
            closest.append(
                max(min(word_overlap(claim, s), word_overlap(s, claim)) for s in siblings)
            )
    near = np.array(closest)
    stats = {
        "test_claims": len(test_claims),
        "covered": int(covered.sum()),
        "train_claims": len(train_ids),
        "train_abstracts": len(cited),
        "test_abstracts_cited_by_train": len(set().union(*test_rel) & cited),
        "test_abstracts": len(set().union(*test_rel)),
        "nearest_sibling_overlap_mean": round(float(near.mean()), 3),
        "nearest_sibling_overlap_at_least_0.8": round(float((near >= 0.8).mean()), 3),
    }
    return test_rel, covered, stats


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.scifact.scifact_siblings", description=__doc__.splitlines()[0]
    )
    parser.add_argument("models", nargs="*", help="NAME=MODEL: a label and a model folder")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "scifact-siblings")
    parser.add_argument(
        "--written",
        type=Path,
        default=None,
        help="a generate --out folder (distill: RUN/queries): also split the test claims by "
        "whether the run wrote claims for one of their relevant abstracts",
    )
    parser.add_argument("--shared", type=Path, default=SHARED_DATA)
    args = parser.parse_args()
    models = dict(m.split("=", 1) for m in args.models)
    if any(not k or not v for k, v in models.items()) or len(models) != len(args.models):
        raise SystemExit("models: give each as NAME=MODEL, names distinct")

    from experiments.scifact.distill_scifact import base_scores
    from geckokit.encoder import EncoderRef
    from geckokit.evaluate.retrieval import evaluate_retrieval
    from geckokit.retrieval.metrics import paired_randomisation_p
    from geckokit.tasks import task_string

    scifact = args.shared / "beir" / "scifact"
    test_rel, covered, stats = split_by_train_documents(scifact)
    print(
        f"{stats['covered']} of {stats['test_claims']} test claims have a relevant abstract "
        f"that a train claim cites ({stats['test_abstracts_cited_by_train']} of the "
        f"{stats['test_abstracts']} test abstracts); the nearest such train claim shares "
        f"{stats['nearest_sibling_overlap_mean']:.0%} of the content words both ways on average, "
        f"80% or more for {stats['nearest_sibling_overlap_at_least_0.8']:.0%} of them"
    )
    task = task_string("scifact", "retrieval")
    runs = {"base (plain)": "all-minilm-l6-v2", **models}
    base_run = base_scores(args.shared, encoder=runs["base (plain)"], gecko_format=False)
    scores = {"base (plain)": 100 * np.array(base_run["ndcg@10_per_query"])}
    for name, path in models.items():
        got = evaluate_retrieval(
            EncoderRef.load(path), scifact, task=task, gecko_format=True, per_query=True
        )
        scores[name] = 100 * np.array(got["ndcg@10_per_query"])
    base = scores["base (plain)"]
    groups = {"all": np.ones_like(covered), "covered": covered, "not covered": ~covered}
    if args.written is not None:
        from geckokit.io import read_shards

        queries = read_shards(args.written / "queries")
        if queries is None:
            raise SystemExit(f"{args.written}: no queries/ shards; pass a generate --out folder")
        # a long abstract's passages are ID#part
        seeds = {p.split("#")[0] for p in queries.column("passage_id").to_pylist()}
        written = np.array([bool(rel & seeds) for rel in test_rel])
        stats["written_for"] = int(written.sum())
        groups |= {"written for": written, "not written for": ~written}
    print(f"\n{'nDCG@10':<24}" + "".join(f"{g} ({m.sum()})".rjust(28) for g, m in groups.items()))
    table: dict[str, Any] = {}
    for name, per_query in scores.items():
        row, cells = {}, []
        for group, mask in groups.items():
            mean = float(per_query[mask].mean())
            p = (
                paired_randomisation_p(list(per_query[mask]), list(base[mask]))
                if name != "base (plain)"
                else None
            )
            row[group] = {
                "ndcg@10": round(mean, 2),
                "gain": round(mean - base[mask].mean(), 2),
                "p": p,
            }
            cells.append(
                f"{mean:.2f}"
                + (
                    f" ({mean - base[mask].mean():+.2f}, "
                    + (f"p {p:.2f})" if p >= 0.005 else "p < 0.005)")
                    if p is not None
                    else ""
                )
            )
        table[name] = {"model": runs[name], **row}
        print(f"{name:<24}" + "".join(c.rjust(28) for c in cells))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({**stats, "models": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
