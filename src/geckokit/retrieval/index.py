"""Dense retrieval's two pieces: an encoder's embeddings through the on-disk cache
(:func:`cached_encode`, :mod:`geckokit.cache`), and a FAISS inner-product index over them
(:func:`build_index`). Mining, evaluation and rerank-eval all embed and search through these."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from geckokit._deps import require
from geckokit.cache import load_or_compute


def cached_encode(
    encoder: Any,
    texts: list[str],
    *,
    cache: Path | None = None,
    folder: Path | None = None,
    label: str = "",
    key: dict[str, Any],
    batch_size: int = 64,
    show_progress: bool = True,
) -> np.ndarray:
    """Normalised embeddings of ``texts``, shape (n, dim), loaded from ``cache`` (a ``.npy``
    path) when its sidecar JSON equals ``key`` (plus a hash of the texts), else computed and
    saved there (atomically). ``folder`` and ``label`` instead name the file after the label
    and that hash (``{label}-{hash}.npy`` in ``folder``), so a folder shared by many runs
    keeps one file per set of texts rather than overwriting one per label
    (:func:`geckokit.cache.load_or_compute`)."""

    def compute(batch: list[str]) -> Any:
        return encoder.encode(
            batch,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )

    return load_or_compute(texts, compute, cache=cache, folder=folder, label=label, key=key)


def build_index(
    embeddings: np.ndarray, *, exact_max: int = 200_000, hnsw_m: int = 32, ef_search: int = 128
) -> Any:
    """A FAISS inner-product index: exact (flat) up to ``exact_max`` vectors, HNSW above."""
    faiss = require("faiss", extra="train", purpose="neighbour retrieval")
    n, dim = embeddings.shape
    if n <= exact_max:
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = ef_search
    index.add(embeddings)
    return index
