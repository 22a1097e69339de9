"""A sentence-transformers model as an mteb encoder, with the unified format and Matryoshka dims.

mteb calls :meth:`EvalEncoder.encode` with the texts of one side of a task, the task's
metadata and, for retrieval, ``prompt_type`` query or document. In the gecko format a query
becomes ``task: {task} | query: {text}`` with the benchmark's task string and a document
``title: {title} | text: {text}``; symmetric tasks (STS, classification, clustering, pair
classification) put the task/query form on every text (paper section 3.1). In the plain
format the texts go in as mteb gives them (a document is its title and text joined), which
is how the MTEB leaderboard scores a model without prompts.

Every dimension is the same forward pass cut short, so the full-width embeddings of a text
list are computed once per model and format and shared by the encoders of all dims.

Import this module only after ``require("mteb", ...)``: it imports mteb at the top.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction
from mteb.types import PromptType

from geckokit.cache import load_or_compute, texts_sha256
from geckokit.encoder import embedding_width
from geckokit.evaluate.models import ModelInfo, PromptFormat, truncate
from geckokit.evaluate.mteb_tasks import mteb_kind
from geckokit.format import document_text, query_text
from geckokit.tasks import task_string

DISK_MIN_TEXTS = 256
"""Shorter text lists (a benchmark's queries, a small STS set) are not worth a file."""


class EmbeddingCache:
    """Full-width embeddings by text list, shared by the encoders of one model and format.

    With ``folder`` (for a registry encoder, whose name pins its weights) lists of at least
    ``min_texts`` texts (default :data:`DISK_MIN_TEXTS`) are also kept on disk as
    ``{label}-{hash}.npy`` (:func:`geckokit.cache.load_or_compute`), so a later evaluation of
    the same model on the same benchmark (every ``geckokit distill`` run's base row, say)
    reads them back instead of encoding the corpus again. ``key`` goes into each file's
    sidecar."""

    def __init__(
        self,
        *,
        folder: Path | None = None,
        label: str = "",
        key: dict[str, Any] | None = None,
        min_texts: int | None = None,
    ) -> None:
        self._store: dict[str, np.ndarray] = {}
        self.folder, self.label, self.key = folder, label, key or {}
        self.min_texts = DISK_MIN_TEXTS if min_texts is None else min_texts

    def get(self, texts: list[str], compute: Any) -> np.ndarray:
        key = texts_sha256(texts)
        if key not in self._store:
            if self.folder is not None and len(texts) >= self.min_texts:
                self._store[key] = load_or_compute(
                    texts, compute, folder=self.folder, label=self.label, key=self.key
                )
            else:
                self._store[key] = np.asarray(compute(texts), dtype=np.float32)
        return self._store[key]

    def clear(self) -> None:
        self._store.clear()


def input_texts(
    batches: Any, *, task_metadata: Any, prompt_type: PromptType | None, fmt: PromptFormat
) -> list[str]:
    """The strings the model reads for one side of a task (see the module docstring)."""
    rows: list[tuple[str, str | None, str]] = []  # (mteb text, title, body)
    for batch in batches:
        texts = list(batch["text"])
        titles = batch.get("title") or [None] * len(texts)
        bodies = batch.get("body") or texts
        rows.extend(zip(texts, titles, bodies, strict=True))
    if fmt is PromptFormat.PLAIN:
        return [text for text, _, _ in rows]
    kind = mteb_kind(task_metadata)
    if kind.value == "retrieval" and prompt_type == PromptType.document:
        return [document_text(title, body) for _, title, body in rows]
    task = task_string(task_metadata.name, kind.value)
    return [query_text(task, text) for text, _, _ in rows]


class EvalEncoder(AbsEncoder):
    """One (model, format, dim) as an mteb encoder; cosine similarity on truncated,
    re-normalised embeddings."""

    #: always set (mteb's base class allows None; mteb.evaluate needs it)
    mteb_model_meta: ModelMeta

    def __init__(
        self,
        model: Any,
        *,
        info: ModelInfo,
        dim: int,
        fmt: PromptFormat,
        cache: EmbeddingCache,
    ) -> None:
        if fmt is PromptFormat.AUTO:
            raise ValueError("resolve the auto format with ModelInfo.formats() first")
        self.model, self.dim, self.fmt, self.cache = model, dim, fmt, cache
        width = embedding_width(model)
        experiment: dict[str, Any] = {}
        if dim < width:
            experiment["embed_dim"] = dim
        if fmt is PromptFormat.GECKO:
            experiment["prompt_format"] = fmt.value
        self.mteb_model_meta = ModelMeta.create_empty(
            overwrites={
                "name": info.name,
                "revision": info.revision,
                "embed_dim": dim,
                "max_tokens": model.max_seq_length,
                "similarity_fn_name": ScoringFunction.COSINE,
                "framework": ["Sentence Transformers", "PyTorch"],
                "use_instructions": fmt is PromptFormat.GECKO,
                "experiment_kwargs": experiment or None,
            }
        )

    def encode(
        self,
        inputs: Any,
        *,
        task_metadata: Any,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        texts = input_texts(
            inputs, task_metadata=task_metadata, prompt_type=prompt_type, fmt=self.fmt
        )

        def compute(batch: list[str]) -> Any:
            return self.model.encode(
                batch,
                batch_size=kwargs.get("batch_size", 32),
                show_progress_bar=kwargs.get("show_progress_bar", False),
                convert_to_numpy=True,
                normalize_embeddings=False,
            )

        return truncate(self.cache.get(texts, compute), self.dim)  # (n, dim)
