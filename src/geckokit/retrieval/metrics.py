"""Retrieval metrics as pure functions (trec_eval definitions, linear gains), their means
over a set of queries, and a paired significance test between two systems."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, float], k: int = 10) -> float:
    """nDCG@k of one ranking: gain = relevance grade, discount = log2(rank + 1); the ideal
    ranking sorts all judged documents (not only the retrieved ones) by grade. 0 when the
    query has no relevant document."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    dcg = sum(relevant.get(doc, 0.0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]))
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, float], k: int = 10) -> float:
    """Share of the relevant documents (grade > 0) found in the top k."""
    rel = {d for d, g in relevant.items() if g > 0}
    if not rel:
        return 0.0
    return len(rel & set(ranked[:k])) / len(rel)


def mean_scores(
    rankings: dict[str, list[str]], qrels: dict[str, dict[str, float]], *, k: int = 10
) -> dict[str, float]:
    """Mean nDCG@k and Recall@k (in percent, 2 decimals) over the ranked queries."""
    if not rankings:
        raise ValueError("no queries to score")
    n = len(rankings)
    return {
        f"ndcg@{k}": round(
            100 * sum(ndcg_at_k(r, qrels[q], k) for q, r in rankings.items()) / n, 2
        ),
        f"recall@{k}": round(
            100 * sum(recall_at_k(r, qrels[q], k) for q, r in rankings.items()) / n, 2
        ),
    }


def paired_randomisation_p(
    a: Sequence[float], b: Sequence[float], *, rounds: int = 10_000, seed: int = 0
) -> float:
    """Two-sided p-value of a paired randomisation test for mean(a) - mean(b): each of
    ``rounds`` draws flips the sign of every per-item difference at random (seeded), and the
    p-value is the share of draws whose mean difference is at least as large in magnitude,
    counting the observed one (so never 0)."""
    import numpy as np

    if len(a) != len(b) or not len(a):
        raise ValueError(f"need two equally long, non-empty score lists, got {len(a)} and {len(b)}")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)  # (items,)
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(rounds, d.size))
    null = np.abs((signs * d).mean(axis=1))  # (rounds,)
    return round(float((1 + np.sum(null >= abs(d.mean()) - 1e-12)) / (rounds + 1)), 4)
