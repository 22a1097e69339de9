"""Run folders: a rerun resumes only a run made with the same settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geckokit.pipeline.runs import RunMismatchError, open_run


def _identity(queries: str, count: int, prompt: str = "/site-packages/p.toml") -> dict:
    return {
        "stage": "mine",
        "config": {"top_n": 5},
        "prompt": {"version": "rerank-v1", "sha256": "ab", "source": prompt},
        "model": {"id": "qwen", "path": "/models/q.gguf"},
        "queries": {"source": queries, "count": count},
    }


def test_a_moved_run_or_input_resumes_but_other_settings_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "a"
    out.mkdir()
    open_run(out, _identity("runs/a/queries", 954))
    # the run folder copied elsewhere, the prompt installed elsewhere: the same run
    moved = tmp_path / "b"
    moved.mkdir()
    (moved / "manifest.json").write_text((out / "manifest.json").read_text())
    open_run(moved, _identity("runs/b/queries", 954, prompt="/other/p.toml"))
    assert (
        json.loads((moved / "manifest.json").read_text())["queries"]["source"] == "runs/b/queries"
    )
    with pytest.raises(RunMismatchError, match="different queries"):
        open_run(moved, _identity("runs/b/queries", 953))
    other = _identity("runs/b/queries", 954)
    other["prompt"]["sha256"] = "cd"
    with pytest.raises(RunMismatchError, match="different prompt"):
        open_run(moved, other)
