"""The eq. 3 loss against hand-computed values and the InfoNCE special case."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from geckokit.train.losses import gecko_loss, matryoshka_loss  # noqa: E402


def test_two_by_two_hand_computed() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pos = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    neg = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    c = 1 / math.sqrt(2)
    # row 0: target cos(q0,p0)=1; others: cos(q0,p1)=c, cos(q0,n0)=0, cos(q0,q1)=0
    row0 = -math.log(math.exp(1) / (math.exp(1) + math.exp(c) + math.exp(0) + math.exp(0)))
    # row 1: target cos(q1,p1)=c; others: cos(q1,p0)=0, cos(q1,n1)=0, cos(q1,q0)=0
    row1 = -math.log(math.exp(c) / (math.exp(0) + math.exp(c) + math.exp(0) + math.exp(0)))
    got = gecko_loss(q, pos, neg, temperature=1.0)
    assert float(got) == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_only_the_own_hard_negative_counts() -> None:
    torch.manual_seed(3)
    q, pos, neg = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4)
    other = neg.clone()
    other[1] = torch.randn(4)  # change example 1's negative only
    a = gecko_loss(q, pos, neg, temperature=1.0, reduction="none")
    b = gecko_loss(q, pos, other, temperature=1.0, reduction="none")
    assert torch.allclose(a[[0, 2]], b[[0, 2]])  # the others' terms do not see it
    assert not torch.allclose(a[1], b[1])


def test_plain_infonce_special_case() -> None:
    torch.manual_seed(0)
    q, pos = torch.randn(5, 8), torch.randn(5, 8)
    tau = 0.1
    sim = (
        torch.nn.functional.normalize(q, dim=-1)
        @ torch.nn.functional.normalize(pos, dim=-1).T
        / tau
    )
    expected = torch.nn.functional.cross_entropy(sim, torch.arange(5))
    assert float(gecko_loss(q, pos, None, temperature=tau, same_tower=False)) == pytest.approx(
        float(expected), rel=1e-6
    )


def test_same_tower_adds_query_negatives() -> None:
    torch.manual_seed(1)
    q, pos = torch.randn(4, 6), torch.randn(4, 6)
    assert float(gecko_loss(q, pos, same_tower=True)) > float(gecko_loss(q, pos, same_tower=False))


def test_matryoshka_averages_truncated_losses() -> None:
    torch.manual_seed(2)
    q, pos, neg = torch.randn(3, 8), torch.randn(3, 8), torch.randn(3, 8)
    parts = [float(gecko_loss(q[:, :d], pos[:, :d], neg[:, :d])) for d in (8, 4, 2)]
    assert float(matryoshka_loss(q, pos, neg, dims=(8, 4, 2))) == pytest.approx(
        sum(parts) / 3, rel=1e-6
    )
    weighted = float(matryoshka_loss(q, pos, neg, dims=(8, 2), weights=(3.0, 1.0)))
    assert weighted == pytest.approx((3 * parts[0] + parts[2]) / 4, rel=1e-6)
    with pytest.raises(ValueError, match="dims must lie in"):
        matryoshka_loss(q, pos, neg, dims=(16,))
    with pytest.raises(ValueError, match="temperature must be positive"):
        gecko_loss(q, pos, temperature=0)
