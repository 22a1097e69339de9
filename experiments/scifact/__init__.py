"""Distilling MiniLM on SciFact: the studies behind docs/scifact.md, run from the repository
root as ``python -m experiments.scifact.NAME`` (README.md in this folder lists them)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository root; run folders go to ROOT/runs
SHARED_DATA = ROOT.parent / "shared" / "data"  # SciFact, STS-Benchmark and the human-labelled sets
