"""Retrieval metrics; they live in :mod:`geckokit.retrieval.metrics`, re-exported here."""

from __future__ import annotations

from geckokit.retrieval.metrics import (
    mean_scores,
    ndcg_at_k,
    paired_randomisation_p,
    recall_at_k,
)

__all__ = ["mean_scores", "ndcg_at_k", "paired_randomisation_p", "recall_at_k"]
