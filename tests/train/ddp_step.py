"""One training step of eq. 3 on a fixed global batch, run by test_distributed.py.

Run alone it is one process on the whole batch; under ``torchrun --nproc-per-node W`` each
process embeds its slice of the batch (gloo, CPU), eq. 3 gathers the global batch, and the
gradients are averaged over processes (an all-reduce, as DistributedDataParallel does). Each process
writes its loss and its updated weights to ``OUT/rank<r>.pt``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from geckokit.encoder import load_encoder
from geckokit.train.losses import matryoshka_loss

ROWS = [
    (
        "what do bees make",
        "Bees make honey from the nectar of flowers.",
        "Wasps build paper nests.",
    ),
    ("capital of france", "Paris is the capital of France.", "Lyon is a city in France."),
    ("how tall is everest", "Mount Everest is 8,849 metres high.", "K2 is 8,611 metres high."),
    ("who wrote hamlet", "Hamlet is a tragedy by William Shakespeare.", "Marlowe wrote Faustus."),
    ("boiling point of water", "Water boils at 100 degrees Celsius.", "Ice melts at 0 degrees."),
    ("largest planet", "Jupiter is the largest planet of the Solar System.", "Mars is red."),
    ("speed of light", "Light travels at about 300,000 km per second.", "Sound is slower."),
    ("python creator", "Guido van Rossum created the Python language.", "Java came from Sun."),
]
DIMS = (384, 128)
LR = 0.5  # large, so that a wrong gradient shows in the updated weights


def main(out: Path) -> None:
    distributed = "WORLD_SIZE" in os.environ
    if distributed:
        torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank() if distributed else 0
    world_size = torch.distributed.get_world_size() if distributed else 1
    torch.manual_seed(0)
    model = load_encoder()
    model.eval()  # no dropout: both runs compute the same function
    size = len(ROWS) // world_size
    rows = ROWS[rank * size : (rank + 1) * size]
    texts = [r[0] for r in rows] + [r[1] for r in rows] + [r[2] for r in rows]
    features = model.tokenize(texts)
    embeddings = model(features)["sentence_embedding"]  # (3 * size, 384): one forward
    q, pos, neg = embeddings.split(size)
    loss = matryoshka_loss(q, pos, neg, dims=DIMS, gather_across_devices=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    optimizer.zero_grad()
    loss.backward()
    for p in model.parameters():  # average the gradients over processes, as DDP does
        if distributed and p.grad is not None:
            torch.distributed.all_reduce(p.grad)
            p.grad /= world_size
    optimizer.step()
    weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    torch.save({"loss": loss.item(), "weights": weights}, out / f"rank{rank}.pt")
    if distributed:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
