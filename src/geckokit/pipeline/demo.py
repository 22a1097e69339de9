"""``geckokit demo``: the shipped demo set, a budget that fits in 15 minutes on 2 CPU cores
with the embedded default models, and the run itself: ``geckokit distill`` once (its LLM
stages and the first training seed), then the same mixture trained with two more seeds, so
that the end-of-run table shows the distilled model's spread over training seeds beside the
base's two rows."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from geckokit.io import read_json, write_json
from geckokit.pipeline.distill import DistillConfig

#: The training seeds the demo reports: the first is the distill run's own.
DEMO_SEEDS = (0, 1, 2)
DEMO_SUMMARY = "demo.json"


def demo_dir() -> Path:
    """The shipped demo set (BEIR layout; see its README.md for source and licence)."""
    return Path(str(files("geckokit") / "data" / "demo"))


def demo_config(*, llm: str | None = None) -> DistillConfig:
    """One query for each of 48 of the 350 passages (drawn at random), 5 neighbours each from
    all 350, then 3 epochs of fine-tuning on the FRet examples in plain text (the base
    MiniLM reads the unified format's prefixes worse: 66.83 against 68.08 here); evaluated
    on the 60 held-out test questions."""
    folder = demo_dir()
    return DistillConfig.model_validate(
        {
            "corpus": str(folder),
            "llm": llm,
            "eval": [str(folder)],
            "sample": 48,
            "mine": {"top_n": 5},
            "train": {
                "epochs": 3,
                "batch_size": 8,  # 48 rows share hard negatives: bigger batches clash
                "learning_rate": 3e-5,
                "text_format": "plain",
                "save_steps": 1000,
                "logging_steps": 1,
            },
        }
    )


def run_demo(
    out: str | Path,
    *,
    llm: str | None = None,
    seeds: Sequence[int] = DEMO_SEEDS,
    on_estimate: Callable[[dict[str, Any]], None] | None = None,
    loaded_llm: Any = None,
    on_stage: Callable[..., None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the demo into ``out`` and return its summary (also written to
    ``out/demo.json``): the distill run's manifest under ``run``, and ``rows``: the base in
    plain text and in the unified format, and the distilled model over ``seeds`` (mean,
    lowest, highest and each seed's nDCG@10 and Recall@10 on the held-out questions), with
    ``best`` naming the best row and ``margin`` its lead in nDCG@10 over the next one.

    The first seed is ``geckokit distill``'s own training (``train/``); each further seed
    trains the same mixture into ``train-seed{S}/`` and is scored with the same evaluation
    into ``eval-seed{S}/``. Finished seeds are reused. ``on_estimate`` and ``on_stage`` are
    :func:`~geckokit.pipeline.distill.run_distill`'s."""
    from geckokit.pipeline.distill import distill
    from geckokit.runs import run_lock

    out = Path(out)
    config = demo_config(llm=llm)
    config.train.seed = seeds[0]
    manifest = distill(config, out, on_estimate=on_estimate, llm=loaded_llm, on_stage=on_stage)
    results = manifest["stages"]["eval"]["results"]
    by_label = {r["model"]: r for r in results}
    per_seed = [{"seed": seeds[0], **_scores(by_label["distilled"])}]
    with run_lock(out):
        for seed in seeds[1:]:
            per_seed.append({"seed": seed, **_extra_seed(config, out, seed)})
    ndcg = [s["ndcg@10"] for s in per_seed]
    rows: list[dict[str, Any]] = [
        {"model": "base (plain)", **_scores(by_label["base"])},
        {"model": "base (unified format)", **_scores(by_label["base (unified format)"])},
        {
            "model": f"distilled ({len(per_seed)} training seeds)",
            "ndcg@10": round(statistics.fmean(ndcg), 2),
            "recall@10": round(statistics.fmean(s["recall@10"] for s in per_seed), 2),
            "ndcg@10_min": min(ndcg),
            "ndcg@10_max": max(ndcg),
            "seeds": per_seed,
        },
    ]
    ranked = sorted(rows, key=lambda r: -r["ndcg@10"])
    summary = {
        "run": manifest,
        "rows": rows,
        "best": ranked[0]["model"],
        "margin": round(ranked[0]["ndcg@10"] - ranked[1]["ndcg@10"], 2),
        "distilled_minus_best_base": round(
            rows[2]["ndcg@10"] - max(rows[0]["ndcg@10"], rows[1]["ndcg@10"]), 2
        ),
    }
    write_json({k: v for k, v in summary.items() if k != "run"}, out / DEMO_SUMMARY)
    return summary


def _scores(row: dict[str, Any]) -> dict[str, float]:
    return {"ndcg@10": row["ndcg@10"], "recall@10": row["recall@10"]}


def _extra_seed(config: DistillConfig, out: Path, seed: int) -> dict[str, float]:
    """Train the run's mixture with another seed and score it as distill scores its model
    (mteb, the model's own format, full width); both folders are reused when finished."""
    from geckokit.evaluate.run import evaluate
    from geckokit.train.trainer import train

    train_dir, eval_dir = out / f"train-seed{seed}", out / f"eval-seed{seed}"
    if not (train_dir / "model").is_dir():
        train(
            out / "mix",
            train_dir,
            config=config.train.model_copy(update={"seed": seed}),
            prefinetune=config.prefinetune,
        )
    done = read_json(eval_dir / "scores.json")
    if done is not None:
        return {"ndcg@10": done["ndcg@10"], "recall@10": done["recall@10"]}
    model = str(train_dir / "model")
    table = evaluate([model], list(config.eval), formats=["auto"], out=eval_dir).to_pylist()
    width = max(r["dim"] for r in table)
    row = next(r for r in table if r["dim"] == width and r["kind"] == "retrieval")
    scores = {
        "ndcg@10": round(100 * row["score"], 2),
        "recall@10": round(100 * (row["recall_at_10"] or 0.0), 2),
    }
    write_json(scores, eval_dir / "scores.json")
    return scores
