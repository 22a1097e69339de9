"""RRF and selection on hand-made score tables (Gecko, Appendix A)."""

from __future__ import annotations

import random

import pytest

from geckokit.fret.fusion import Fusion, NegativeChoice, fuse, ranks, select


def test_ranks_break_ties_by_encoder_order() -> None:
    assert ranks([0.1, 0.9, 0.5]) == [3, 1, 2]
    assert ranks([1.0, 1.0, 2.0]) == [2, 3, 1]  # the tie keeps the encoder's order
    assert ranks([0.0, 0.0, 0.0]) == [1, 2, 3]
    assert ranks([float("nan"), -5.0]) == [2, 1]


def test_rrf_hand_computed() -> None:
    ql = [-1.0, -0.5, -2.0]  # ranks 2, 1, 3
    rc = [0.9, 0.1, 0.5]  # ranks 1, 3, 2
    fused = fuse(ql, rc)
    assert fused == pytest.approx([1 / 2 + 1 / 1, 1 / 1 + 1 / 3, 1 / 3 + 1 / 2])
    assert select(fused).positive == 0  # 1.5 beats 1.333 and 0.833
    assert select(fused).negatives == (2,)


def test_rrf_tie_goes_to_the_encoder_order() -> None:
    ql = [-2.0, -1.0]  # ranks 2, 1
    rc = [0.9, 0.1]  # ranks 1, 2
    fused = fuse(ql, rc)
    assert fused[0] == fused[1] == pytest.approx(1.5)
    assert select(fused).positive == 0 and select(fused).negatives == (1,)


def test_all_equal_scores_keep_the_encoder_ranking() -> None:
    fused = fuse([0.0] * 5, [0.0] * 5)
    sel = select(fused)
    assert sel.order == (0, 1, 2, 3, 4)
    assert sel.positive == 0 and sel.negatives == (4,)


def test_seed_at_rank_n_becomes_the_negative() -> None:
    # the seed (index 0) is judged worst by both scores: it ends at rank N
    ql = [-9.0, -1.0, -2.0, -3.0]
    rc = [-9.0, -0.1, -0.2, -0.3]
    sel = select(fuse(ql, rc))
    assert sel.positive == 1 and sel.negatives == (0,)


def test_single_score_and_weighted_fusion() -> None:
    ql = [-1.0, -0.5, -2.0]
    rc = [0.9, 0.1, 0.5]
    assert select(fuse(ql, rc, method=Fusion.QL)).positive == 1
    assert select(fuse(ql, rc, method=Fusion.RC)).positive == 0
    # encoder rank only: the encoder's first candidate wins
    assert select(fuse(ql, rc, method=Fusion.WEIGHTED, weights=(0, 0, 1))).positive == 0
    w = fuse(ql, rc, method=Fusion.WEIGHTED, weights=(2.0, 1.0, 0.5))
    assert w == pytest.approx(
        [2 / 2 + 1 / 1 + 0.5 / 1, 2 / 1 + 1 / 3 + 0.5 / 2, 2 / 3 + 1 / 2 + 0.5 / 3]
    )


def test_negative_choices() -> None:
    fused = [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    assert select(fused, negative=NegativeChoice.LOWEST_K, k=3).negatives == (5, 4, 3)
    picks = {
        select(fused, negative=NegativeChoice.RANDOM, rng=random.Random(s)).negatives[0]
        for s in range(50)
    }
    assert picks == {3, 4, 5}  # the lower half, never the positive
    with pytest.raises(ValueError, match="k must be in"):
        select(fused, negative=NegativeChoice.LOWEST_K, k=6)
    with pytest.raises(ValueError, match="at least 2 candidates"):
        select([1.0])
    with pytest.raises(ValueError, match="unknown fusion 'max'"):
        Fusion.parse("max")


def test_seed_fusion_keeps_the_seed_first_without_llm_scores() -> None:
    nan = float("nan")
    fused = fuse([nan] * 4, [nan] * 4, method=Fusion.SEED, seed_index=2)
    assert ranks(fused) == [2, 3, 1, 4]  # seed first, then the encoder's order
    sel = select(fused, negative=NegativeChoice.RANK_N)
    assert sel.positive == 2 and sel.negatives == (3,)
    with pytest.raises(ValueError, match="seed's index"):
        fuse([0.0, 1.0], [0.0, 1.0], method=Fusion.SEED)
