"""Rank fusion and positive/negative selection for FRet step 2 (Gecko, Appendix A). Pure maths.

Candidates are given in the first-stage retriever's order (index 0 = its best; the
retriever is the initial encoder unless mining chose BM25 or the hybrid). Ranks are 1-based;
ties are broken by that order, so equal scores never reorder candidates, and "rank_encoder"
below is the rank in it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from geckokit.types import ClosedSet


class Fusion(ClosedSet):
    RRF = "rrf"  # R = 1/rank_QL + 1/rank_RC (the paper)
    QL = "ql"  # query likelihood only
    RC = "rc"  # relevance classification only
    WEIGHTED = "weighted"  # w_ql/rank_QL + w_rc/rank_RC + w_enc/rank_encoder (retriever's)
    SEED = "seed"  # no LLM: the seed passage stays the positive (the paper's baseline)


class NegativeChoice(ClosedSet):
    RANK_N = "rank-n"  # the candidate ranked last (rank N): the paper's best
    RANDOM = "random"  # a random candidate from the lower half of the fused ranking
    LOWEST_K = "lowest-k"  # the k lowest-ranked candidates


def ranks(scores: Sequence[float]) -> list[int]:
    """1-based ranks, higher score first; ties keep the given (retriever's) order.
    NaN scores rank last."""
    order = sorted(range(len(scores)), key=lambda i: (-_finite(scores[i]), i))
    out = [0] * len(scores)
    for r, i in enumerate(order, start=1):
        out[i] = r
    return out


def _finite(x: float) -> float:
    return float("-inf") if x != x else x  # NaN -> -inf


def fuse(
    ql: Sequence[float],
    rc: Sequence[float],
    *,
    method: Fusion = Fusion.RRF,
    weights: tuple[float, float, float] = (1.0, 1.0, 0.0),
    seed_index: int | None = None,
) -> list[float]:
    """Fused score per candidate (higher is better).

    ``rrf``: 1/rank_QL + 1/rank_RC; ``ql``/``rc``: 1/rank of that score alone;
    ``weighted``: w_ql/rank_QL + w_rc/rank_RC + w_enc/rank_encoder with ``weights``;
    ``seed``: the candidate at ``seed_index`` first, the others in the retriever's order
    (QL and RC are not used).
    """
    if method is Fusion.SEED:
        if seed_index is None or not 0 <= seed_index < len(ql):
            raise ValueError(f"seed fusion needs the seed's index, got {seed_index}")
        return [1.0 + (i == seed_index) - i / (len(ql) + 1) for i in range(len(ql))]
    if len(ql) != len(rc):
        raise ValueError(f"ql has {len(ql)} scores but rc has {len(rc)}")
    r_ql, r_rc = ranks(ql), ranks(rc)
    r_enc = list(range(1, len(ql) + 1))
    w_ql, w_rc, w_enc = {
        Fusion.RRF: (1.0, 1.0, 0.0),
        Fusion.QL: (1.0, 0.0, 0.0),
        Fusion.RC: (0.0, 1.0, 0.0),
        Fusion.WEIGHTED: weights,
    }[method]
    return [w_ql / a + w_rc / b + w_enc / c for a, b, c in zip(r_ql, r_rc, r_enc, strict=True)]


@dataclass(frozen=True)
class Selection:
    positive: int  # candidate index
    negatives: tuple[int, ...]
    order: tuple[int, ...]  # candidate indices, best first by the fused score


def select(
    fused: Sequence[float],
    *,
    negative: NegativeChoice = NegativeChoice.RANK_N,
    k: int = 1,
    rng: random.Random | None = None,
) -> Selection:
    """Positive = top of the fused ranking; negatives by ``negative`` (see NegativeChoice)."""
    n = len(fused)
    if n < 2:
        raise ValueError(f"need at least 2 candidates to pick a positive and a negative, got {n}")
    order = sorted(range(n), key=lambda i: (-_finite(fused[i]), i))
    if negative is NegativeChoice.RANK_N:
        negs = [order[-1]]
    elif negative is NegativeChoice.LOWEST_K:
        if not 1 <= k < n:
            raise ValueError(f"k must be in [1, {n - 1}] for {n} candidates, got {k}")
        negs = order[n - k :][::-1]
    else:
        lower = order[max(1, n // 2) :]
        negs = [(rng or random.Random(0)).choice(lower)]
    return Selection(positive=order[0], negatives=tuple(negs), order=tuple(order))
