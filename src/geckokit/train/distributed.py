"""Several processes, one batch: gathering embeddings across devices for eq. 3.

Under ``torchrun`` each process embeds its own slice of the global batch. For eq. 3 to see
the global batch's in-batch positives and same-tower queries, each process gathers every
process's query and positive embeddings with a gradient-carrying ``all_gather``
(``torch.distributed.nn.functional.all_gather``, as sentence-transformers'
``gather_across_devices``): the gradient of another process's loss with respect to this
process's embeddings flows back to it, so with the usual averaging of gradients over
processes the update is that of one process on the global batch.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, NamedTuple

from geckokit._deps import require


class Gathered(NamedTuple):
    """The global batch as one process sees it: every process's rows in rank order, and
    where this process's own rows start (``offset``)."""

    q: Any  # (W * B, dim): all processes' queries
    pos: Any  # (W * B, dim): all processes' positives
    offset: int  # this process's first row in q and pos: rank * B


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: ``(0, 1)`` when torch.distributed is not
    initialised (one process)."""
    torch = require("torch", extra="train", purpose="training")
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return int(dist.get_rank()), int(dist.get_world_size())


def gather_with_grad(x: Any) -> Any:
    """Every process's ``x`` (B, ...) concatenated in rank order, (W * B, ...), with the
    gradient flowing back to each process's own ``x``; ``x`` itself on one process. Every
    process must call it with the same shape."""
    torch = require("torch", extra="train", purpose="training")
    if world()[1] == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():
        # torch 2.13 marks it deprecated for a private module's function; it still works
        # and is what sentence-transformers' gather_across_devices calls
        warnings.filterwarnings("ignore", "torch.distributed.nn", FutureWarning)
        parts = all_gather(x)
    return torch.cat(parts, dim=0)  # (W * B, ...)


def gather_batch(q: Any, pos: Any) -> Gathered:
    """The queries and positives of the global batch (:class:`Gathered`): on one process,
    ``q`` and ``pos`` themselves at offset 0."""
    if q.shape != pos.shape:
        raise ValueError(f"shapes differ: q {tuple(q.shape)}, pos {tuple(pos.shape)}")
    rank, _ = world()
    return Gathered(gather_with_grad(q), gather_with_grad(pos), rank * q.shape[0])


def is_main_process() -> bool:
    """Whether this process writes the run's files: rank 0, or the only process. Before
    torch.distributed starts, the ``RANK`` that ``torchrun`` sets decides."""
    rank, size = world()
    if size == 1:
        return int(os.environ.get("RANK", "0")) == 0
    return rank == 0


def barrier() -> None:
    """Wait until every process gets here (after rank 0 has written what the others read
    next); nothing on one process."""
    if world()[1] > 1:
        torch = require("torch", extra="train", purpose="training")
        torch.distributed.barrier()
