"""A reference for the SciFact distillation experiment: what real labelled claims give.

Fine-tunes the base encoder on SciFact's own 809 train claims and their 919 relevant
abstracts (BEIR train qrels; in-batch and same-tower negatives, no hard negatives), with
the human-labelled sets of ``distill_scifact.py`` or without them, then scores nDCG@10
on the 300 test claims and STS-Benchmark test Spearman, both in the unified format
(STS-Benchmark in plain text too, as ``stsb_spearman_plain``). The
distilled model never sees these claims or labels; this run shows how far in-domain
supervision moves the same encoder with the same trainer.

    python -m experiments.scifact.scifact_supervised --epochs 3 --learning-rate 5e-5 \
        --out runs/scifact-supervised

``--claims easy`` trains on the train claims whose relevant abstract the base encoder
already ranks first, ``--claims hard`` on the others (``claim_difficulty.py``
measures the same rank for generated claims): does a claim teach only when it is hard?

``--seed`` sets the training's batch order and dropout: runs that differ only in it show
how much of a difference between two trainings is the trainer's own noise.

Prints one JSON line and writes it, with each test claim's nDCG@10, to ``results.json`` in
the run folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from experiments.scifact import ROOT, SHARED_DATA
from experiments.scifact.distill_scifact import human_sets, train_from_args


def claims_folder(scifact: Path, out: Path, which: str) -> Path:
    """A BEIR folder named ``scifact`` (the name picks the training task string) whose train
    qrels hold only the ``easy`` or ``hard`` train claims (by the base encoder's rank of
    their best relevant abstract: first, or lower); ``all`` is SciFact itself."""
    if which == "all":
        return scifact
    from experiments.scifact.claim_difficulty import abstract_embeddings, ranks, real_claims
    from geckokit.encoder import load_encoder

    folder = out / f"claims-{which}" / "scifact"
    qrels = folder / "qrels" / "train.tsv"
    if qrels.exists():
        return folder
    encoder = load_encoder("all-minilm-l6-v2")
    doc_ids, docs = abstract_embeddings(
        encoder, scifact, ROOT / "runs" / "claim-difficulty" / "abstracts.npy"
    )
    qids, claims, relevant = real_claims(scifact, "train")
    first = ranks(encoder, docs, doc_ids, claims, relevant) == 1
    keep = {q for q, f in zip(qids, first, strict=True) if f == (which == "easy")}
    qrels.parent.mkdir(parents=True, exist_ok=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        (folder / name).unlink(missing_ok=True)
        (folder / name).symlink_to((scifact / name).resolve())
    lines = (scifact / "qrels" / "train.tsv").read_text().splitlines()
    kept = [x for x in lines[1:] if x.split("\t")[0] in keep]
    tmp = qrels.with_suffix(".tmp")
    tmp.write_text("\n".join([lines[0], *kept]) + "\n")
    tmp.replace(qrels)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.scifact.scifact_supervised", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "scifact-supervised")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument(
        "--human-sets",
        default="",
        help="comma-separated human-labelled sets to mix in (nli, sts, qa, claims; default none)",
    )
    parser.add_argument("--human-rows", type=int, default=2000)
    parser.add_argument(
        "--claims",
        choices=["all", "easy", "hard"],
        default="all",
        help="train claims to use: all, or those the base encoder ranks first (easy) or not",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="training seed: batch order and dropout (default 0)"
    )
    parser.add_argument("--shared", type=Path, default=SHARED_DATA)
    args = parser.parse_args()

    from geckokit.mixture.build import build_mixture

    scifact = args.shared / "beir" / "scifact"
    out: Path = args.out
    human = human_sets(args.shared, out / "human", args.human_rows, args.human_sets)
    built = [c for c in ("easy", "hard") if (out / f"claims-{c}").is_dir()] or ["all"]
    if (out / "mix" / "manifest.json").exists() and built != [args.claims]:
        raise SystemExit(f"{out} was trained on the {built[0]} claims; use another --out")
    if not (out / "mix" / "manifest.json").exists():
        pairs = claims_folder(scifact, out, args.claims)
        build_mixture(out / "mix", pairs=[pairs], **{k: [p] for k, p in human.items()})
    scores = train_from_args(out, args)
    result = {
        "seed": args.seed,
        "epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "human_sets": sorted(human),
        "claims": args.claims,
        "train_rows": json.loads((out / "mix" / "manifest.json").read_text())["rows"],
        **scores,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    # each claim's nDCG@10 stays in results.json (to compare runs claim by claim), not printed
    print(json.dumps({k: v for k, v in result.items() if k != "ndcg@10_per_query"}))


if __name__ == "__main__":
    main()
