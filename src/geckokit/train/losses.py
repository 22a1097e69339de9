"""The Gecko fine-tuning loss (paper section 3.3, eq. 3) as a pure function of embeddings.

For a batch of B examples (query q_i, positive d_i+, hard negative d_i-), with
s(x, y) = cos(x, y) / tau:

    L = -1/B * sum_i log( exp(s(q_i, d_i+)) / Z_i )
    Z_i = sum_j exp(s(q_i, d_j+))           in-batch positives (j = i is the target)
        + exp(s(q_i, d_i-))                 the example's own hard negative only
        + sum_{j != i} exp(s(q_i, q_j))     same-tower negatives: the other queries

With ``same_tower=False`` and no hard negatives this is plain InfoNCE with in-batch
negatives. :func:`matryoshka_loss` averages it over truncated embedding prefixes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from geckokit._deps import require


def gecko_loss(
    q: Any,
    pos: Any,
    neg: Any | None = None,
    *,
    temperature: float = 0.05,
    same_tower: bool = True,
    reduction: str = "mean",
    neg_mask: Any | None = None,
) -> Any:
    """Eq. 3 of the paper. ``q``, ``pos``: (B, dim); ``neg``: (B, dim) or None. Returns the
    mean loss (a scalar tensor), or per example with ``reduction="none"`` (B,).
    ``neg_mask`` (B,) bool marks the rows that have a hard negative (default: all).
    Embeddings need not be normalised (cosine is used)."""
    torch = require("torch", extra="train", purpose="the training loss")
    f = torch.nn.functional
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if q.shape != pos.shape or (neg is not None and neg.shape != q.shape):
        raise ValueError(
            f"shapes differ: q {tuple(q.shape)}, pos {tuple(pos.shape)}, neg {None if neg is None else tuple(neg.shape)}"
        )
    b = q.shape[0]
    qn, pn = f.normalize(q, dim=-1), f.normalize(pos, dim=-1)
    logits = [qn @ pn.T / temperature]  # (B, B): column i of row i is the target
    if neg is not None:
        nn = f.normalize(neg, dim=-1)
        own = (qn * nn).sum(-1, keepdim=True) / temperature  # (B, 1): own hard negative
        if neg_mask is not None:
            own = own.masked_fill(~neg_mask.view(-1, 1), float("-inf"))
        logits.append(own)
    if same_tower:
        qq = qn @ qn.T / temperature  # (B, B)
        qq = qq.masked_fill(torch.eye(b, dtype=torch.bool, device=q.device), float("-inf"))
        logits.append(qq)
    scores = torch.cat(logits, dim=1)  # (B, B [+1] [+B])
    target = torch.arange(b, device=q.device)
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
) -> Any:
    """:func:`gecko_loss` on the first ``d`` dimensions for each ``d`` in ``dims`` (all
    dimensions when empty), combined as a weighted mean (equal weights by default)."""
    full = q.shape[-1]
    dims = list(dims) or [full]
    if any(d < 1 or d > full for d in dims):
        raise ValueError(f"Matryoshka dims must lie in [1, {full}], got {dims}")
    w = list(weights) if weights is not None else [1.0] * len(dims)
    if len(w) != len(dims):
        raise ValueError(f"got {len(w)} weights for {len(dims)} dims")
    total = sum(
        wi
        * gecko_loss(
            q[:, :d],
            pos[:, :d],
            None if neg is None else neg[:, :d],
            temperature=temperature,
            same_tower=same_tower,
            neg_mask=neg_mask,
        )
        for d, wi in zip(dims, w, strict=True)
    )
    return total / sum(w)
