"""The demo's plumbing: the distill run's own seed plus further training seeds, their
summary (mean, range, best row, margin), resuming, and the printed end-of-run table. The
whole demo with the real models is run from the README's first command."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

import geckokit.evaluate.run
import geckokit.pipeline.distill
import geckokit.train.trainer
from geckokit.pipeline.demo import DEMO_SUMMARY, run_demo


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """distill, train and evaluate replaced by recorders with fixed scores."""
    calls: dict[str, list[Any]] = {"distill": [], "train": [], "evaluate": [], "format": []}
    eval_rows = [
        {"benchmark": "demo", "model": "base", "ndcg@10": 68.08, "recall@10": 82.92},
        {
            "benchmark": "demo",
            "model": "base (unified format)",
            "ndcg@10": 66.83,
            "recall@10": 81.39,
        },
        {"benchmark": "demo", "model": "distilled", "ndcg@10": 70.00, "recall@10": 85.00},
    ]

    def distill(config: Any, out: Any, **kwargs: Any) -> dict[str, Any]:
        calls["distill"].append(config.train.seed)
        calls["format"].append(config.train.text_format.value)
        return {"stages": {"eval": {"results": eval_rows}}, "status": "finished"}

    def train(mix: Path, out: Path, *, config: Any, prefinetune: Any) -> dict[str, Any]:
        calls["train"].append(config.seed)
        calls["format"].append(config.text_format.value)
        (out / "model").mkdir(parents=True)
        return {}

    seed_scores = {"train-seed1": 0.72, "train-seed2": 0.71}

    def evaluate(models: list[str], tasks: list[str], **kwargs: Any) -> Any:
        import pyarrow as pa

        calls["evaluate"].append(models)
        score = seed_scores[Path(models[0]).parent.name]
        rows = [
            {"dim": 384, "kind": "retrieval", "score": score, "recall_at_10": 0.9},
            {"dim": 64, "kind": "retrieval", "score": 0.1, "recall_at_10": 0.2},
        ]
        return pa.Table.from_pylist(rows)

    monkeypatch.setattr(geckokit.pipeline.distill, "distill", distill)
    monkeypatch.setattr(geckokit.train.trainer, "train", train)
    monkeypatch.setattr(geckokit.evaluate.run, "evaluate", evaluate)
    return calls


def test_demo_trains_further_seeds_and_summarises_them(
    scripted: dict[str, list[Any]], tmp_path: Path
) -> None:
    summary = run_demo(tmp_path / "demo")
    assert scripted["distill"] == [0] and scripted["train"] == [1, 2]
    assert scripted["format"] == ["plain"] * 3  # every seed trains in plain text
    distilled = summary["rows"][2]
    assert [s["ndcg@10"] for s in distilled["seeds"]] == [70.0, 72.0, 71.0]
    assert distilled["ndcg@10"] == 71.0 and (
        distilled["ndcg@10_min"],
        distilled["ndcg@10_max"],
    ) == (
        70.0,
        72.0,
    )
    assert summary["best"] == "distilled (3 training seeds)"
    assert summary["margin"] == pytest.approx(2.92) == summary["distilled_minus_best_base"]
    assert (tmp_path / "demo" / DEMO_SUMMARY).exists()
    # rerun: the seeds' models and scores are reused
    again = run_demo(tmp_path / "demo")
    assert scripted["train"] == [1, 2] and len(scripted["evaluate"]) == 2
    assert again["rows"] == summary["rows"]


def test_demo_table_says_which_row_is_best(scripted: dict[str, list[Any]], tmp_path: Path) -> None:
    from rich.console import Console

    from geckokit.cli.distill import print_demo_table

    summary = run_demo(tmp_path / "demo")
    summary["rows"][2]["seeds"][0]["ndcg@10"] = 66.0  # printed as measured
    console = Console(file=io.StringIO(), width=200)
    print_demo_table(console, summary)
    text = console.file.getvalue()
    for label in ("base (plain)", "base (unified format)", "distilled (3 training seeds)"):
        assert label in text
    assert "0: 66.00, 1: 72.00, 2: 71.00 (range 70.00-72.00)" in text
    assert "best: distilled (3 training seeds), ahead of the next row by 2.92" in text
    assert "(distilled minus the better base row: +2.92)" in text
