"""``geckokit.train.trainer.train`` for a few steps, run by test_distributed.py under
``torchrun``: each process also writes its model's weights after training to
``OUT/weights<rank>.pt``, so the test can check that the processes stayed in step."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from geckokit.train import trainer
from geckokit.train.distributed import world

_fit = trainer._fit


def _fit_and_keep(model: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    fit = _fit(model, *args, **kwargs)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.save(weights, Path(sys.argv[2]) / f"weights{world()[0]}.pt")
    return fit


if __name__ == "__main__":
    trainer._fit = _fit_and_keep
    config = trainer.TrainConfig(
        max_steps=3, batch_size=8, matryoshka_dims=[384, 128], learning_rate=1e-4, logging_steps=1
    )
    trainer.train(sys.argv[1], Path(sys.argv[2]) / "run", config=config)
