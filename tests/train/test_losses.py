"""The eq. 3 loss against hand-computed values and the InfoNCE special case; the score
distillation terms (KL, Margin-MSE) against hand-computed values, their fixed points and
their masking of missing teacher scores."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from geckokit.train.losses import (  # noqa: E402
    distill_loss,
    gecko_loss,
    kl_distill_loss,
    margin_mse_loss,
    matryoshka_loss,
    student_scores,
)


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


# --- score distillation (ART's KL, GPL's Margin-MSE) ------------------------------------


def _q_and_candidates() -> tuple[torch.Tensor, torch.Tensor]:
    """One query [1, 0] and three candidates at cosines 1, 0 and 1/sqrt(2)."""
    q = torch.tensor([[1.0, 0.0]])
    c = torch.tensor([[[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]]])  # (1, 3, 2): norms do not matter
    return q, c


def test_student_scores_are_cosines_over_the_temperature() -> None:
    q, c = _q_and_candidates()
    got = student_scores(q, c, temperature=0.5)
    assert got.shape == (1, 3)
    assert got[0].tolist() == pytest.approx([2.0, 0.0, 2 / math.sqrt(2)], rel=1e-6)
    with pytest.raises(ValueError, match="candidates must be"):
        student_scores(q, c[0], temperature=0.5)


def test_kl_hand_computed() -> None:
    # student logits [2, 0, 0]: cosines 1, 0, 0 over tau = 0.5
    q = torch.tensor([[1.0, 0.0]])
    c = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]])
    s = student_scores(q, c, temperature=0.5)
    # teacher [2 ln 2, 0, 0] over T = 2 -> [ln 2, 0, 0] -> p_t = [1/2, 1/4, 1/4]
    t = torch.tensor([[2 * math.log(2), 0.0, 0.0]])
    z = math.exp(2) + 2
    ps = [math.exp(2) / z, 1 / z, 1 / z]
    expected = 0.5 * math.log(0.5 / ps[0]) + 2 * 0.25 * math.log(0.25 / ps[1])
    assert float(kl_distill_loss(s, t, teacher_temperature=2.0)) == pytest.approx(
        expected, rel=1e-6
    )


def test_margin_mse_hand_computed() -> None:
    q, c = _q_and_candidates()
    s = student_scores(q, c, temperature=1.0)  # [1, 0, 1/sqrt(2)]
    t = torch.tensor([[3.0, 1.0, 0.0]])  # over T = 2: margins 1 and 1.5
    r = 1 / math.sqrt(2)
    # student margins: 1 - 0 = 1 and 1 - r
    expected = ((1 - 1.0) ** 2 + ((1 - r) - 1.5) ** 2) / 2
    got = margin_mse_loss(s, t, teacher_temperature=2.0)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_kl_is_flat_where_the_student_reproduces_the_teacher() -> None:
    torch.manual_seed(4)
    s = torch.randn(3, 5, requires_grad=True)
    teacher = (s.detach() + torch.tensor([[1.0], [-2.0], [0.5]])) * 3.0  # same softmax at T=3
    loss = kl_distill_loss(s, teacher, teacher_temperature=3.0)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert s.grad is not None and torch.allclose(s.grad, torch.zeros_like(s), atol=1e-6)
    assert kl_distill_loss(s, -teacher, teacher_temperature=3.0).item() > 0.1  # one that disagrees
    # through the embeddings: a teacher equal to the student's own logits (up to a shift)
    q, c = torch.randn(2, 8, requires_grad=True), torch.randn(2, 4, 8, requires_grad=True)
    teacher = student_scores(q, c, temperature=0.05).detach() * 2.0 + 7.0
    loss = distill_loss(q, c, teacher, objective="kl", temperature=0.05, teacher_temperature=2.0)
    loss.backward()
    assert q.grad is not None and c.grad is not None
    assert torch.allclose(q.grad, torch.zeros_like(q), atol=1e-5)
    assert torch.allclose(c.grad, torch.zeros_like(c), atol=1e-5)


def test_margin_mse_is_flat_where_the_margins_are_equal() -> None:
    torch.manual_seed(5)
    s = torch.randn(3, 4, requires_grad=True)
    teacher = s.detach() * 0.5 + torch.tensor([[10.0], [0.0], [-3.0]])  # T = 0.5: same margins
    loss = margin_mse_loss(s, teacher, teacher_temperature=0.5)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-8)
    assert margin_mse_loss(s, -teacher, teacher_temperature=0.5).item() > 0.1
    assert s.grad is not None and torch.allclose(s.grad, torch.zeros_like(s), atol=1e-6)
    q, c = torch.randn(2, 8, requires_grad=True), torch.randn(2, 4, 8, requires_grad=True)
    teacher = student_scores(q, c, temperature=0.1).detach() - 4.0
    loss = distill_loss(q, c, teacher, objective="margin-mse", temperature=0.1)
    loss.backward()
    assert q.grad is not None and c.grad is not None
    assert torch.allclose(q.grad, torch.zeros_like(q), atol=1e-5)
    assert torch.allclose(c.grad, torch.zeros_like(c), atol=1e-5)


def test_nan_teacher_scores_are_masked() -> None:
    nan = float("nan")
    s = torch.tensor([[2.0, 0.5, -1.0], [0.3, 0.2, 0.1], [1.0, 0.0, 0.0]], requires_grad=True)
    t = torch.tensor([[1.0, nan, 0.0], [nan, nan, nan], [0.5, 0.0, nan]])

    # KL: row 0 is the KL over candidates 0 and 2, row 2 over 0 and 1; row 1 has no teacher
    def kl2(a: float, b: float, ta: float, tb: float) -> float:
        pt = [
            math.exp(ta) / (math.exp(ta) + math.exp(tb)),
            math.exp(tb) / (math.exp(ta) + math.exp(tb)),
        ]
        ps = [math.exp(a) / (math.exp(a) + math.exp(b)), math.exp(b) / (math.exp(a) + math.exp(b))]
        return pt[0] * math.log(pt[0] / ps[0]) + pt[1] * math.log(pt[1] / ps[1])

    loss = kl_distill_loss(s, t)
    expected = (kl2(2.0, -1.0, 1.0, 0.0) + kl2(1.0, 0.0, 0.5, 0.0)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()
    assert float(s.grad[0, 1]) == 0.0 and float(s.grad[2, 2]) == 0.0  # masked candidates
    assert torch.all(s.grad[1] == 0)  # the row without a teacher
    # Margin-MSE: margins 0-2 of row 0 and 0-1 of row 2 (T = 1)
    expected = (((2.0 + 1.0) - (1.0 - 0.0)) ** 2 + ((1.0 - 0.0) - (0.5 - 0.0)) ** 2) / 2
    assert margin_mse_loss(s, t).item() == pytest.approx(expected, rel=1e-6)
    # a positive without a score leaves its row out of Margin-MSE
    t2 = torch.tensor([[nan, 1.0, 0.0], [1.0, 0.0, 2.0]])
    s2 = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert float(margin_mse_loss(s2, t2)) == pytest.approx(((1 - 1) ** 2 + (1 + 1) ** 2) / 2)


def test_no_teacher_at_all_gives_zero_with_zero_gradient() -> None:
    s = torch.randn(2, 4, requires_grad=True)
    t = torch.full((2, 4), float("nan"))
    t[0, 1] = 1.0  # a single score is no ranking
    for fn in (kl_distill_loss, margin_mse_loss):
        s.grad = None
        loss = fn(s, t)
        loss.backward()
        assert loss.item() == 0.0
        assert s.grad is not None and torch.all(s.grad == 0)


def test_distill_loss_averages_over_matryoshka_dims() -> None:
    torch.manual_seed(6)
    q, c, t = torch.randn(3, 8), torch.randn(3, 4, 8), torch.randn(3, 4)
    for objective, fn in (("kl", kl_distill_loss), ("margin-mse", margin_mse_loss)):
        parts = [
            float(
                fn(
                    student_scores(q[:, :d], c[:, :, :d], temperature=0.1),
                    t,
                    teacher_temperature=0.5,
                )
            )
            for d in (8, 4)
        ]
        got = distill_loss(
            q, c, t, objective=objective, dims=(8, 4), temperature=0.1, teacher_temperature=0.5
        )
        assert float(got) == pytest.approx(sum(parts) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="no distillation term"):
        distill_loss(q, c, t, objective="contrastive")
    with pytest.raises(
        ValueError, match="unknown objective 'kld'; valid: contrastive, kl, margin-mse"
    ):
        distill_loss(q, c, t, objective="kld")
    with pytest.raises(ValueError, match="teacher_temperature must be positive"):
        kl_distill_loss(t, t, teacher_temperature=0)
    with pytest.raises(ValueError, match="must both be"):
        margin_mse_loss(t, t[:, :3])
    with pytest.raises(ValueError, match="at least 2 candidates"):
        kl_distill_loss(t[:, :1], t[:, :1])
