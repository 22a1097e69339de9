"""Training speed and memory: geckokit's Gecko loss against sentence-transformers'
MultipleNegativesRankingLoss, on the same data and batch size, in one run.

Data: a mixture built from the SNLI rows in ../shared/data (premise, entailment as positive,
contradiction as hard negative). Every variant trains all-MiniLM-L6-v2 for the same number
of steps with sentence-transformers' trainer, each in its own process so that peak memory
(maximum resident set size) is its own:

- ``mnrl``: MultipleNegativesRankingLoss on (query, positive, negative) columns;
- ``gecko``: ``geckokit.train.train`` (eq. 3: in-batch, same-tower and hard negatives,
  Matryoshka over 4 dims, task-homogeneous batches);
- ``cached-mnrl`` and ``gecko-gradcache``: the same two with gradient caching (mini-batch 8).

Prints examples per second, peak memory and their ratios to ``mnrl``.

    python bench/train_throughput.py --steps 30 --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("mnrl", "gecko", "cached-mnrl", "gecko-gradcache")


def build(out: Path, shared: Path, rows: int) -> Path:
    from geckokit.mixture.build import build_mixture

    nli = out / "snli" / "test.jsonl"
    nli.parent.mkdir(parents=True)
    lines = (shared / "training_pairs/snli_esnli/test.jsonl").read_text().splitlines(True)
    nli.write_text("".join(lines[:rows]))
    build_mixture(out / "mix", nli=[nli])
    return out / "mix"


def run_variant(variant: str, mixture: Path, steps: int, batch_size: int) -> dict[str, float]:
    from geckokit.train.trainer import TrainConfig, train

    work = Path(tempfile.mkdtemp(prefix=f"bench-{variant}-"))
    if variant.startswith("gecko"):
        config = TrainConfig(
            max_steps=steps,
            batch_size=batch_size,
            save_steps=10**6,
            logging_steps=steps,
            gradcache_mini_batch=8 if variant == "gecko-gradcache" else 0,
        )
        seconds = train(mixture, work, config=config, resume=False)["seconds"]
    else:
        seconds = _peer(variant, mixture, work, steps, batch_size)
    return {
        "examples_per_s": steps * batch_size / seconds,
        "seconds": seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _peer(variant: str, mixture: Path, work: Path, steps: int, batch_size: int) -> float:
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
    )

    from geckokit.encoder import load_encoder
    from geckokit.io import read_shards

    table = read_shards(mixture / "mixture")
    assert table is not None
    rows = table.select(["query", "positive", "negative"]).to_pydict()
    dataset = Dataset.from_dict(rows)
    model = load_encoder("all-minilm-l6-v2")
    model.max_seq_length = 256  # geckokit's default
    loss = (
        losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=8)
        if variant == "cached-mnrl"
        else losses.MultipleNegativesRankingLoss(model)
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=str(work / "checkpoints"),
        per_device_train_batch_size=batch_size,
        max_steps=steps,
        learning_rate=2e-5,
        warmup_steps=0.1,
        logging_steps=steps,
        save_steps=10**6,
        report_to="none",
        dataloader_drop_last=True,
        batch_sampler="no_duplicates",
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
    t0 = time.perf_counter()
    trainer.train()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rows", type=int, default=6000, help="SNLI rows to build from")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # child process
    parser.add_argument("--mixture", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.variant:
        result = run_variant(args.variant, args.mixture, args.steps, args.batch_size)
        print("RESULT " + json.dumps(result))
        return

    mixture = build(Path(tempfile.mkdtemp(prefix="bench-train-")), args.shared, args.rows)
    results: dict[str, dict[str, float]] = {}
    for variant in args.variants.split(","):
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--variant",
                variant,
                "--mixture",
                str(mixture),
                "--steps",
                str(args.steps),
                "--batch-size",
                str(args.batch_size),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{variant} failed:\n{proc.stderr[-3000:]}")
        results[variant] = json.loads(line[len("RESULT ") :])

    ref = results.get("mnrl")
    print(
        f"all-MiniLM-L6-v2, {args.steps} steps x batch {args.batch_size} "
        "(query, positive, hard negative), max_seq_length 256"
    )
    print(
        f"{'variant':<18}{'examples/s':>12}{'peak MiB':>10}{'speed vs mnrl':>15}{'mem vs mnrl':>13}"
    )
    for name, r in results.items():
        speed = r["examples_per_s"] / ref["examples_per_s"] if ref else float("nan")
        mem = r["peak_rss_mib"] / ref["peak_rss_mib"] if ref else float("nan")
        print(
            f"{name:<18}{r['examples_per_s']:>12.1f}{r['peak_rss_mib']:>10.0f}"
            f"{speed:>14.2f}x{mem:>12.2f}x"
        )


if __name__ == "__main__":
    main()
