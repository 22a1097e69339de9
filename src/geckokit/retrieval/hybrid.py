"""Which first-stage retriever proposes candidates, and the reciprocal rank fusion that
combines two of them. Pure maths, no model.

Reciprocal rank fusion (Cormack, Clarke and Buettcher, SIGIR 2009): an item's score is the
sum over the rankings that hold it of 1/(k + rank), ranks 1-based; an item a ranking does not
hold gets nothing from it. k = 60 is the paper's value.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import TypeVar

from geckokit.types import ClosedSet

T = TypeVar("T", bound=Hashable)

#: RRF's k (Cormack et al. 2009): larger values flatten the gap between high and low ranks
RRF_K = 60


class Retriever(ClosedSet):
    ENCODER = "encoder"  # the initial encoder's cosine similarity (the paper)
    BM25 = "bm25"  # BM25 over the passages' words (InPars)
    HYBRID = "hybrid"  # reciprocal rank fusion of the two rankings


def hybrid_depth(top_n: int) -> int:
    """How deep each retriever ranks before fusion, for a fused list of ``top_n``: a
    passage just outside one retriever's top ``top_n`` can still make the fused top
    ``top_n`` on the strength of the other ranking."""
    return max(2 * top_n, top_n + 50)


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[T]], *, k: int = RRF_K
) -> list[tuple[T, float]]:
    """The items of ``rankings`` (each best first, no repeats) with their fused score
    sum(1/(k + rank)), best first. Equal scores keep the first ranking's order, then the
    second's, and so on (an item a ranking lacks comes after those it holds)."""
    if k < 1:
        raise ValueError(f"the RRF constant k must be at least 1, got {k}")
    parts: dict[T, list[float]] = {}
    position: dict[T, list[float]] = {}  # math.inf where a ranking lacks the item
    for r, ranking in enumerate(rankings):
        if len(set(ranking)) != len(ranking):
            raise ValueError(f"ranking {r} holds an item twice; each item may appear once")
        for i, item in enumerate(ranking):
            parts.setdefault(item, []).append(1.0 / (k + i + 1))
            position.setdefault(item, [math.inf] * len(rankings))[r] = i
    # fsum rounds exactly once, so the same ranks give the same score in any order
    fused = {item: math.fsum(p) for item, p in parts.items()}
    order = sorted(fused, key=lambda item: (-fused[item], *position[item]))
    return [(item, fused[item]) for item in order]
