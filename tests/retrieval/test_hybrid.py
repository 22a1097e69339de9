"""Reciprocal rank fusion of two hand-made rankings (Cormack et al. 2009), hand-computed."""

from __future__ import annotations

import pytest

from geckokit.retrieval.hybrid import (
    RRF_K,
    Retriever,
    hybrid_depth,
    reciprocal_rank_fusion,
)


def test_rrf_sums_one_over_k_plus_rank() -> None:
    encoder = ["a", "b", "c", "d"]
    bm25 = ["c", "a", "e"]
    # a: 1/61 + 1/62 = .032522   c: 1/63 + 1/61 = .032266   b: 1/62 = .016129
    # e: 1/63 = .015873          d: 1/64 = .015625
    fused = reciprocal_rank_fusion([encoder, bm25])
    assert [item for item, _ in fused] == ["a", "c", "b", "e", "d"]
    assert [s for _, s in fused] == pytest.approx(
        [1 / 61 + 1 / 62, 1 / 63 + 1 / 61, 1 / 62, 1 / 63, 1 / 64]
    )
    assert RRF_K == 60
    # k sets how much the top counts: y, third and fourth, beats x, first in one ranking
    # only, with k = 60 (1/63 + 1/64 > 1/61) but not with k = 1 (1/4 + 1/5 < 1/2)
    rankings = [["x", "u", "y"], ["v", "w", "t", "y"]]
    assert [i for i, _ in reciprocal_rank_fusion(rankings)] == ["y", "x", "v", "u", "w", "t"]
    small = reciprocal_rank_fusion(rankings, k=1)
    assert [i for i, _ in small] == ["x", "v", "y", "u", "w", "t"]
    assert dict(small)["y"] == pytest.approx(1 / 4 + 1 / 5)


def test_equal_scores_keep_the_first_rankings_order() -> None:
    # x and y swap places: the same score, the first ranking's order
    assert [i for i, _ in reciprocal_rank_fusion([["x", "y"], ["y", "x"]])] == ["x", "y"]
    assert [i for i, _ in reciprocal_rank_fusion([["y", "x"], ["x", "y"]])] == ["y", "x"]
    # p and r each first in one ranking: p (held by the first) before r
    assert [i for i, _ in reciprocal_rank_fusion([["p", "q"], ["r", "s"]])] == [
        "p",
        "r",
        "q",
        "s",
    ]


def test_bad_rankings_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        reciprocal_rank_fusion([["a"]], k=0)
    with pytest.raises(ValueError, match="holds an item twice"):
        reciprocal_rank_fusion([["a", "b"], ["b", "b"]])


def test_retrievers_and_depth() -> None:
    assert Retriever.parse("hybrid") is Retriever.HYBRID
    with pytest.raises(ValueError, match="valid: encoder, bm25, hybrid"):
        Retriever.parse("dense")
    assert hybrid_depth(20) == 70 and hybrid_depth(100) == 200
