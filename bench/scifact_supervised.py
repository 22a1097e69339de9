"""A reference for the SciFact distillation experiment: what real labelled claims give.

Fine-tunes the base encoder on SciFact's own 809 train claims and their 919 relevant
abstracts (BEIR train qrels; in-batch and same-tower negatives, no hard negatives), with
the human-labelled sets of ``bench/distill_scifact.py`` or without them, then scores nDCG@10
on the 300 test claims and STS-Benchmark test Spearman, both in the unified format. The
distilled model never sees these claims or labels; this run shows how far in-domain
supervision moves the same encoder with the same trainer.

    python bench/scifact_supervised.py --epochs 3 --learning-rate 5e-5 --out runs/scifact-supervised

Prints one JSON line and writes it to ``results.json`` in the run folder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from distill_scifact import ROOT, _human_sets, sts_spearman


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "scifact-supervised")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument(
        "--human-sets",
        default="",
        help="comma-separated human-labelled sets to mix in (nli, sts, qa, claims; default none)",
    )
    parser.add_argument("--human-rows", type=int, default=2000)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()

    from geckokit.encoder import load_encoder
    from geckokit.evaluate.retrieval import evaluate_retrieval
    from geckokit.evaluate.task_strings import task_string
    from geckokit.mixture.build import build_mixture
    from geckokit.train.trainer import TrainConfig, train

    scifact = args.shared / "beir" / "scifact"
    out: Path = args.out
    human = _human_sets(args.shared, out / "human", args.human_rows, args.human_sets)
    if not (out / "mix" / "manifest.json").exists():
        build_mixture(out / "mix", pairs=[scifact], **{k: [p] for k, p in human.items()})
    t0 = time.perf_counter()
    if not (out / "train" / "model").is_dir():
        config = TrainConfig(
            epochs=args.epochs,
            learning_rate=args.learning_rate,
            save_steps=1000,
            logging_steps=10,
        )
        train(out / "mix", out / "train", config=config)
    model = load_encoder(str(out / "train" / "model"))
    ret = evaluate_retrieval(
        model, scifact, task=task_string("scifact", "retrieval"), gecko_format=True
    )
    sts = sts_spearman(model, args.shared / "sts/stsbenchmark/test.jsonl", gecko_format=True)
    result = {
        "epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "human_sets": sorted(human),
        **ret,
        "stsb_spearman": sts,
        "seconds": round(time.perf_counter() - t0),
    }
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
