"""The Gecko fine-tuning loss (paper section 3.3, eq. 3) as a pure function of embeddings.

For a batch of B examples (query q_i, positive d_i+, hard negative d_i-), with
s(x, y) = cos(x, y) / tau:

    L = -1/B * sum_i log( exp(s(q_i, d_i+)) / Z_i )
    Z_i = sum_j exp(s(q_i, d_j+))           in-batch positives (j = i is the target)
        + exp(s(q_i, d_i-))                 the example's own hard negative only
        + sum_{j != i} exp(s(q_i, q_j))     same-tower negatives: the other queries

With ``same_tower=False`` and no hard negatives this is plain InfoNCE with in-batch
negatives. :func:`matryoshka_loss` averages it over truncated embedding prefixes.

On several processes (``torchrun``), ``gather_across_devices`` lets each process's queries
meet the global batch's positives and queries (gathered with gradients); each process's
loss is over its own queries, their targets offset by its rank's first row
(:func:`gecko_loss_slice`), and the mean over processes is the one-process loss.

Score distillation (not in the Gecko paper) adds a term that teaches the encoder the LLM's
whole ranking of a query's candidates, not just its top one. The student's score of
candidate k is the logit of eq. 3, s_k = cos(q, d_k) / tau; the teacher's is the LLM's
stored score t_k divided by a teacher temperature T:

- ``kl`` (ART, Sachan et al. 2022; sentence-transformers' ``DistillKLDivLoss``):
  KL(softmax(t / T) || softmax(s)) over the query's candidates;
- ``margin-mse`` (GPL, Wang et al. 2022; sentence-transformers' ``MarginMSELoss``): the mean
  squared difference between the student's margins s_0 - s_k and the teacher's
  (t_0 - t_k) / T, candidate 0 being the positive.

A NaN teacher score marks a candidate that has none: it leaves both softmaxes (and every
margin it is part of).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from geckokit._deps import require
from geckokit.train.distributed import Gathered, gather_batch
from geckokit.types import ClosedSet


class Objective(ClosedSet):
    CONTRASTIVE = "contrastive"  # eq. 3 alone (the paper)
    KL = "kl"  # eq. 3 + listwise KL to the LLM's softmax over the candidates (ART)
    MARGIN_MSE = "margin-mse"  # eq. 3 + MSE of positive-minus-candidate margins (GPL)


def gecko_loss(
    q: Any,
    pos: Any,
    neg: Any | None = None,
    *,
    temperature: float = 0.05,
    same_tower: bool = True,
    reduction: str = "mean",
    neg_mask: Any | None = None,
    gather_across_devices: bool = False,
) -> Any:
    """Eq. 3 of the paper. ``q``, ``pos``: (B, dim); ``neg``: (B, dim) or None. Returns the
    mean loss (a scalar tensor), or per example with ``reduction="none"`` (B,).
    ``neg_mask`` (B,) bool marks the rows that have a hard negative (default: all).
    Embeddings need not be normalised (cosine is used).

    ``gather_across_devices``: when torch.distributed runs several processes, this
    process's queries meet every process's positives and queries
    (:func:`geckokit.train.distributed.gather_batch`), so the mean of the processes' losses
    is the loss of one process on the global batch; on one process it changes nothing."""
    batch = _batch(q, pos, gather_across_devices)
    return gecko_loss_slice(
        q,
        pos,
        neg,
        batch_q=batch.q,
        batch_pos=batch.pos,
        offset=batch.offset,
        temperature=temperature,
        same_tower=same_tower,
        reduction=reduction,
        neg_mask=neg_mask,
    )


def gecko_loss_slice(
    q: Any,
    pos: Any,
    neg: Any | None = None,
    *,
    batch_q: Any,
    batch_pos: Any,
    offset: int,
    temperature: float = 0.05,
    same_tower: bool = True,
    reduction: str = "mean",
    neg_mask: Any | None = None,
) -> Any:
    """Eq. 3 for a slice of a batch: the slice's queries ``q`` (B, dim), with their
    positives ``pos`` and hard negatives ``neg`` (B, dim), against the whole batch's
    positives ``batch_pos`` and queries ``batch_q`` (N, dim), where the slice's rows are
    ``offset`` to ``offset + B``. Query i's target is column ``offset + i``; its same-tower
    negatives are the batch's other queries; its hard negative is its own (``neg`` is not
    gathered: eq. 3 contrasts a query with no other row's hard negative). Averaging the
    slices' mean losses over equal slices gives :func:`gecko_loss` of the whole batch."""
    torch = require("torch", extra="train", purpose="the training loss")
    f = torch.nn.functional
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if q.shape != pos.shape or (neg is not None and neg.shape != q.shape):
        raise ValueError(
            f"shapes differ: q {tuple(q.shape)}, pos {tuple(pos.shape)}, neg {None if neg is None else tuple(neg.shape)}"
        )
    b, n = q.shape[0], batch_q.shape[0]
    if batch_q.shape != batch_pos.shape or batch_q.shape[1:] != q.shape[1:]:
        raise ValueError(
            f"batch_q {tuple(batch_q.shape)} and batch_pos {tuple(batch_pos.shape)} must both "
            f"be (N, {q.shape[-1]})"
        )
    if offset < 0 or offset + b > n:
        raise ValueError(f"rows {offset}..{offset + b} of the slice lie outside a batch of {n}")
    qn, pn = f.normalize(q, dim=-1), f.normalize(batch_pos, dim=-1)
    target = torch.arange(offset, offset + b, device=q.device)  # (B,): own positive's column
    logits = [qn @ pn.T / temperature]  # (B, N): column offset + i of row i is the target
    if neg is not None:
        nn = f.normalize(neg, dim=-1)
        own = (qn * nn).sum(-1, keepdim=True) / temperature  # (B, 1): own hard negative
        if neg_mask is not None:
            own = own.masked_fill(~neg_mask.view(-1, 1), float("-inf"))
        logits.append(own)
    if same_tower:
        qq = qn @ f.normalize(batch_q, dim=-1).T / temperature  # (B, N)
        itself = target.view(-1, 1) == torch.arange(n, device=q.device).view(1, -1)  # (B, N)
        logits.append(qq.masked_fill(itself, float("-inf")))
    scores = torch.cat(logits, dim=1)  # (B, N [+1] [+N])
    return f.cross_entropy(scores, target, reduction=reduction)


def matryoshka_loss(
    q: Any,
    pos: Any,
    neg: Any | None = None,
    *,
    dims: Sequence[int] = (),
    weights: Sequence[float] | None = None,
    temperature: float = 0.05,
    same_tower: bool = True,
    neg_mask: Any | None = None,
    gather_across_devices: bool = False,
) -> Any:
    """:func:`gecko_loss` on the first ``d`` dimensions for each ``d`` in ``dims`` (all
    dimensions when empty), combined as a weighted mean (equal weights by default).
    ``gather_across_devices`` gathers the full-width embeddings once, then truncates."""
    full = q.shape[-1]
    dims = list(dims) or [full]
    if any(d < 1 or d > full for d in dims):
        raise ValueError(f"Matryoshka dims must lie in [1, {full}], got {dims}")
    w = list(weights) if weights is not None else [1.0] * len(dims)
    if len(w) != len(dims):
        raise ValueError(f"got {len(w)} weights for {len(dims)} dims")
    batch = _batch(q, pos, gather_across_devices)
    total = sum(
        wi
        * gecko_loss_slice(
            q[:, :d],
            pos[:, :d],
            None if neg is None else neg[:, :d],
            batch_q=batch.q[:, :d],
            batch_pos=batch.pos[:, :d],
            offset=batch.offset,
            temperature=temperature,
            same_tower=same_tower,
            neg_mask=neg_mask,
        )
        for d, wi in zip(dims, w, strict=True)
    )
    return total / sum(w)


def _batch(q: Any, pos: Any, gather_across_devices: bool) -> Gathered:
    """The batch eq. 3 contrasts against: gathered from all processes, or this one's."""
    if gather_across_devices:
        return gather_batch(q, pos)
    return Gathered(q, pos, 0)


def student_scores(q: Any, candidates: Any, *, temperature: float = 0.05) -> Any:
    """The student's logits over each query's candidates: cos(q_i, c_ik) / ``temperature``,
    the same scale as eq. 3's. ``q``: (B, dim); ``candidates``: (B, K, dim). Returns (B, K)."""
    torch = require("torch", extra="train", purpose="the training loss")
    f = torch.nn.functional
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if (
        candidates.dim() != 3
        or candidates.shape[0] != q.shape[0]
        or candidates.shape[2] != q.shape[1]
    ):
        raise ValueError(
            f"candidates must be (B, K, dim) for q {tuple(q.shape)}, got {tuple(candidates.shape)}"
        )
    qn, cn = f.normalize(q, dim=-1), f.normalize(candidates, dim=-1)
    return torch.einsum("bd,bkd->bk", qn, cn) / temperature  # (B, K)


def kl_distill_loss(student: Any, teacher: Any, *, teacher_temperature: float = 1.0) -> Any:
    """Listwise distillation (ART, Sachan et al. 2022; sentence-transformers'
    ``DistillKLDivLoss``): KL(p_t || p_s) with p_t = softmax(teacher / ``teacher_temperature``)
    and p_s = softmax(student), over each query's candidates, averaged over queries.

    ``student``: (B, K) logits; ``teacher``: (B, K) scores, NaN (or infinite) where a
    candidate has none: such candidates leave both softmaxes. Queries with fewer than two
    scored candidates (a softmax over one is constant) are left out of the mean; with none
    left the loss is 0 (still connected to ``student``, with zero gradient). No T^2 factor:
    the student's logits are eq. 3's, so the term is in the same units (nats) as eq. 3."""
    torch = require("torch", extra="train", purpose="the training loss")
    _check_teacher(student, teacher, teacher_temperature)
    valid = torch.isfinite(teacher)  # (B, K)
    rows = valid.sum(dim=1) >= 2  # (B,)
    if not bool(rows.any()):
        return (student * 0.0).sum()
    s, t, valid = student[rows], teacher[rows].detach(), valid[rows]  # (B', K)
    t = (t / teacher_temperature).masked_fill(~valid, float("-inf"))
    pt = torch.softmax(t, dim=1)  # (B', K): 0 where the teacher has no score
    log_pt = torch.log_softmax(t, dim=1).masked_fill(~valid, 0.0)  # (B', K)
    log_ps = torch.log_softmax(s.masked_fill(~valid, float("-inf")), dim=1)
    log_ps = log_ps.masked_fill(~valid, 0.0)  # (B', K): -inf off the valid ones, zeroed
    kl = (pt * (log_pt - log_ps)).sum(dim=1)  # (B',)
    return kl.mean()


def margin_mse_loss(student: Any, teacher: Any, *, teacher_temperature: float = 1.0) -> Any:
    """Margin-MSE (Hofstätter et al. 2020, used by GPL, Wang et al. 2022; sentence-transformers'
    ``MarginMSELoss``): the mean over queries and candidates k >= 1 of
    ((s_0 - s_k) - (t_0 - t_k) / ``teacher_temperature``)^2, column 0 being the positive.

    ``student``: (B, K) logits; ``teacher``: (B, K) scores, NaN where a candidate has none: a
    margin counts only when both its teacher scores are finite; with none left the loss is 0
    (connected to ``student``, zero gradient). The margins are in the student's logit units
    (cosine / tau), so ``teacher_temperature`` sets how many of them a unit of teacher score
    is worth."""
    torch = require("torch", extra="train", purpose="the training loss")
    _check_teacher(student, teacher, teacher_temperature)
    valid = torch.isfinite(teacher)  # (B, K)
    pairs = valid[:, :1] & valid[:, 1:]  # (B, K-1): the positive and candidate k both scored
    if not bool(pairs.any()):
        return (student * 0.0).sum()
    t = torch.where(valid, teacher.detach(), torch.zeros_like(teacher)) / teacher_temperature
    student_margin = student[:, :1] - student[:, 1:]  # (B, K-1)
    teacher_margin = t[:, :1] - t[:, 1:]  # (B, K-1)
    sq = (student_margin - teacher_margin).pow(2)
    return torch.where(pairs, sq, torch.zeros_like(sq)).sum() / pairs.sum()


def distill_loss(
    q: Any,
    candidates: Any,
    teacher: Any,
    *,
    objective: Objective | str,
    dims: Sequence[int] = (),
    weights: Sequence[float] | None = None,
    temperature: float = 0.05,
    teacher_temperature: float = 1.0,
) -> Any:
    """The distillation term of ``objective`` (``kl`` or ``margin-mse``) on the first ``d``
    dimensions for each ``d`` in ``dims`` (all when empty), combined as a weighted mean like
    :func:`matryoshka_loss`, so truncated embeddings learn the teacher's ranking too.

    ``q``: (B, dim); ``candidates``: (B, K, dim), candidate 0 the positive; ``teacher``:
    (B, K) the LLM's scores, NaN where a candidate has none."""
    objective = Objective.parse(objective) if isinstance(objective, str) else objective
    if objective is Objective.CONTRASTIVE:
        raise ValueError("the contrastive objective has no distillation term; use kl or margin-mse")
    term = kl_distill_loss if objective is Objective.KL else margin_mse_loss
    full = q.shape[-1]
    dims = list(dims) or [full]
    if any(d < 1 or d > full for d in dims):
        raise ValueError(f"Matryoshka dims must lie in [1, {full}], got {dims}")
    w = list(weights) if weights is not None else [1.0] * len(dims)
    if len(w) != len(dims):
        raise ValueError(f"got {len(w)} weights for {len(dims)} dims")
    total = sum(
        wi
        * term(
            student_scores(q[:, :d], candidates[:, :, :d], temperature=temperature),
            teacher,
            teacher_temperature=teacher_temperature,
        )
        for d, wi in zip(dims, w, strict=True)
    )
    return total / sum(w)


def _check_teacher(student: Any, teacher: Any, teacher_temperature: float) -> None:
    if teacher_temperature <= 0:
        raise ValueError(f"teacher_temperature must be positive, got {teacher_temperature}")
    if student.dim() != 2 or tuple(student.shape) != tuple(teacher.shape):
        raise ValueError(
            f"student and teacher scores must both be (B, K), got {tuple(student.shape)} and "
            f"{tuple(teacher.shape)}"
        )
    if student.shape[1] < 2:
        raise ValueError(
            f"distillation needs at least 2 candidates per query, got {student.shape[1]}"
        )
