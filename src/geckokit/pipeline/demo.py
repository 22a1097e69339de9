"""The settings of ``geckokit demo``: the shipped demo set and a budget that fits in
15 minutes on 2 CPU cores with the embedded default models."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from geckokit.pipeline.distill import DistillConfig


def demo_dir() -> Path:
    """The shipped demo set (BEIR layout; see its README.md for source and licence)."""
    return Path(str(files("geckokit") / "data" / "demo"))


def demo_config(*, llm: str | None = None) -> DistillConfig:
    """One query for each of 48 of the 350 passages (drawn at random), 5 neighbours each from
    all 350, then 3 epochs of fine-tuning on the FRet examples; evaluated on the 60 held-out
    test questions."""
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
                "save_steps": 1000,
                "logging_steps": 1,
            },
        }
    )
