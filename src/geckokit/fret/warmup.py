"""Warm-up of the initial retriever (Gecko, footnote 1 of section 3.2).

Before neighbours are retrieved, the initial encoder is fine-tuned on the generated
(query, seed passage) pairs with in-batch negatives, so that it already understands the
unified ``task: ... | query: ...`` format it is about to be queried with. A plain PyTorch
loop over the sentence-transformers model with in-batch negatives only
(:func:`geckokit.train.losses.gecko_loss` without same-tower or hard negatives).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

from geckokit._deps import require
from geckokit.train.losses import gecko_loss

log = logging.getLogger(__name__)


def warmup_encoder(
    encoder: Any,
    pairs: Sequence[tuple[str, str]],
    *,
    epochs: int = 1,
    batch_size: int = 32,
    lr: float = 2e-5,
    scale: float = 20.0,
    seed: int = 0,
    show_progress: bool = True,
) -> list[float]:
    """Fine-tune ``encoder`` (a SentenceTransformer, in place) on (query, passage) text pairs.
    Returns the loss of every step."""
    torch = require("torch", extra="train", purpose="encoder training")
    if len(pairs) < 2:
        raise ValueError(f"warm-up needs at least 2 (query, passage) pairs, got {len(pairs)}")
    torch.manual_seed(seed)
    order = list(range(len(pairs)))
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=lr)
    encoder.train()
    losses: list[float] = []
    from rich.progress import Progress

    steps = epochs * ((len(pairs) + batch_size - 1) // batch_size)
    with Progress(disable=not show_progress) as progress:
        bar = progress.add_task("warm-up encoder", total=steps)
        for epoch in range(epochs):
            random.Random(seed + epoch).shuffle(order)
            for start in range(0, len(order), batch_size):
                batch = [pairs[i] for i in order[start : start + batch_size]]
                if len(batch) < 2:
                    continue
                q = _embed(encoder, [b[0] for b in batch])
                d = _embed(encoder, [b[1] for b in batch])
                # plain InfoNCE: eq. 3 without same-tower or hard negatives
                loss = gecko_loss(q, d, None, temperature=1.0 / scale, same_tower=False)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
                progress.update(
                    bar, advance=1, description=f"warm-up encoder (loss {losses[-1]:.3f})"
                )
    encoder.eval()
    return losses


def _embed(encoder: Any, texts: list[str]) -> Any:
    features = encoder.tokenize(texts)
    device = next(encoder.parameters()).device
    features = {k: v.to(device) if hasattr(v, "to") else v for k, v in features.items()}
    return encoder(features)["sentence_embedding"]  # (batch, dim)
