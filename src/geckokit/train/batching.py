"""Task-homogeneous batches (Gecko, section 3.3): every batch comes from one source, holds
no text twice, and sources are drawn by configurable weights (uniform over tasks by default).
Pure Python over row indices, so it can drive any trainer's sampler.

On several processes a global batch is planned and cut into one slice per process
(:func:`device_slices`), so all processes draw from the same source in the same step."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence


def plan_batches(
    sources: Sequence[str],
    texts: Sequence[Sequence[str]],
    *,
    batch_size: int,
    weights: Mapping[str, float] | None = None,
    seed: int = 0,
) -> list[list[int]]:
    """Batches of row indices for one epoch.

    ``sources[i]`` names row i's source; ``texts[i]`` are the texts row i puts in a batch
    (query, positive, negative). Rows of a source are shuffled and packed greedily into
    batches of ``batch_size`` whose texts are all distinct (a row that would repeat a text
    waits for the next batch); a source's last incomplete batch is dropped, as in-batch
    negatives need a full batch. Batches are then interleaved by drawing a source with
    probability proportional to its weight among the sources that still have batches
    (``weights=None``: uniform over sources; a weight of 0 leaves a source out).
    """
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 (in-batch negatives), got {batch_size}")
    if len(sources) != len(texts):
        raise ValueError(f"got {len(sources)} sources for {len(texts)} rows")
    rng = random.Random(seed)
    by_source: dict[str, list[int]] = {}
    for i, s in enumerate(sources):
        by_source.setdefault(s, []).append(i)
    unknown = set(weights or {}) - set(by_source)
    if unknown:
        raise ValueError(
            f"weights name sources not in the mixture: {sorted(unknown)}; sources: {sorted(by_source)}"
        )
    queues: dict[str, list[list[int]]] = {}
    for s, rows in sorted(by_source.items()):
        w = 1.0 if weights is None else float(weights.get(s, 1.0))
        if w < 0:
            raise ValueError(f"weight of {s!r} is negative: {w}")
        if w == 0:
            continue
        rng.shuffle(rows)
        queues[s] = _pack(rows, texts, batch_size)
    out: list[list[int]] = []
    while any(queues.values()):
        live = [s for s, q in queues.items() if q]
        live_weights = [1.0 if weights is None else float(weights.get(s, 1.0)) for s in live]
        s = rng.choices(live, weights=live_weights)[0]
        out.append(queues[s].pop(0))
    return out


def _pack(rows: list[int], texts: Sequence[Sequence[str]], batch_size: int) -> list[list[int]]:
    batches: list[list[int]] = []
    pending = list(rows)
    failures = 0
    while len(pending) >= batch_size:
        batch: list[int] = []
        seen: set[str] = set()
        rest: list[int] = []
        for i in pending:
            row_texts = [t for t in texts[i] if t]
            if len(batch) < batch_size and not seen.intersection(row_texts):
                batch.append(i)
                seen.update(row_texts)
            else:
                rest.append(i)
        if len(batch) < batch_size:
            # the row that opened the batch shares texts with too many others: set it aside
            # and try from the next one, a bounded number of times
            failures += 1
            if failures > 2 * batch_size:
                break
            pending = pending[1:]
            continue
        failures = 0
        batches.append(batch)
        pending = rest
    return batches


def device_slices(batches: Sequence[Sequence[int]], *, world_size: int) -> list[list[int]]:
    """Each global batch of ``batches`` cut into ``world_size`` equal consecutive slices,
    in order: slice k of global batch g is item ``g * world_size + k``, which is what a
    sharded data loader hands process k (accelerate's ``BatchSamplerShard`` gives process k
    the batches whose position is k modulo ``world_size``). Every process plans the same
    batches from the same seed, so step g of every process comes from one source."""
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    out: list[list[int]] = []
    for batch in batches:
        if len(batch) % world_size:
            raise ValueError(
                f"a batch of {len(batch)} rows does not split into {world_size} equal slices; "
                f"use a batch size that is a multiple of the number of processes"
            )
        size = len(batch) // world_size
        out.extend(list(batch[k * size : (k + 1) * size]) for k in range(world_size))
    return out
