"""What evaluation needs to know about a model before loading it, and Matryoshka truncation.

A model is a registry name (``all-minilm-l6-v2``), a sentence-transformers folder or (online)
a hub id. Folders written by ``geckokit train`` carry ``geckokit.json`` with the unified-format
prompts and the Matryoshka dimensions they were trained at (paper section 3.3).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geckokit.types import ClosedSet

log = logging.getLogger(__name__)

_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


class PromptFormat(ClosedSet):
    """How texts reach the model. ``gecko``: the unified format (paper section 3.1) with the
    task string of each benchmark; ``plain``: the raw texts, as the MTEB leaderboard runs a
    model without prompts; ``auto``: gecko for models that carry geckokit.json prompts,
    plain otherwise."""

    AUTO = "auto"
    GECKO = "gecko"
    PLAIN = "plain"


@dataclass(frozen=True)
class ModelInfo:
    spec: str  # as given
    name: str  # name in results: registry name, hub id, or folder name
    location: str  # resolved folder or hub id
    revision: str  # sha256 prefix of the weights file, or "no_revision_available"
    geckokit: dict[str, Any] = field(default_factory=dict)  # geckokit.json, {} when absent

    @property
    def has_prompts(self) -> bool:
        return bool(self.geckokit.get("prompts"))

    def formats(self, requested: Sequence[PromptFormat]) -> list[PromptFormat]:
        """``requested`` with ``auto`` resolved for this model, without repeats."""
        out: list[PromptFormat] = []
        for fmt in requested:
            if fmt is PromptFormat.AUTO:
                fmt = PromptFormat.GECKO if self.has_prompts else PromptFormat.PLAIN
            if fmt not in out:
                out.append(fmt)
        return out


def _revision(folder: Path) -> str:
    for name in _WEIGHTS:
        weights = folder / name
        if weights.exists():
            digest = hashlib.sha256()
            with weights.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            return digest.hexdigest()[:12]
    return "no_revision_available"


def describe_model(spec: str) -> ModelInfo:
    """Resolve ``spec`` (registry name, folder or hub id) without loading the weights."""
    from geckokit.registry import ModelKind, resolve

    location = resolve(spec, kind=ModelKind.ENCODER)
    folder = Path(location)
    if not folder.is_dir():
        return ModelInfo(spec, spec, location, "no_revision_available")
    card = folder / "geckokit.json"
    info = json.loads(card.read_text()) if card.exists() else {}
    if Path(spec).expanduser().exists():
        resolved = Path(spec).expanduser().resolve()
        name = resolved.name if resolved.name != "model" else f"{resolved.parent.name}/model"
    else:
        name = spec
    return ModelInfo(spec, name, location, _revision(folder), info)


def eval_dims(requested: Sequence[int] | None, width: int, info: ModelInfo) -> list[int]:
    """The dimensions to evaluate, largest first.

    None: the full width plus the Matryoshka dims recorded in geckokit.json. Requested dims
    above the width raise; a dim equal to the width is the untruncated model."""
    if requested:
        bad = [d for d in requested if not 1 <= d <= width]
        if bad:
            raise ValueError(
                f"--dims {','.join(map(str, requested))}: {info.name} has width {width}; "
                f"every dim must lie in [1, {width}]"
            )
        return sorted(set(requested), reverse=True)
    declared = [int(d) for d in info.geckokit.get("matryoshka_dims", []) if 1 <= int(d) <= width]
    return sorted({width, *declared}, reverse=True)


def truncate(embeddings: np.ndarray, dim: int) -> np.ndarray:
    """Matryoshka truncation: keep the first ``dim`` coordinates, then L2-normalise each row
    (a zero row stays zero). ``embeddings``: (n, width) -> (n, dim) float32."""
    if dim < 1 or dim > embeddings.shape[1]:
        raise ValueError(f"dim must lie in [1, {embeddings.shape[1]}], got {dim}")
    cut = np.asarray(embeddings[:, :dim], dtype=np.float32)  # (n, dim)
    norms = np.linalg.norm(cut, axis=1, keepdims=True)  # (n, 1)
    return cut / np.where(norms > 0, norms, 1.0)
