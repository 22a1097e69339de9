"""FRet step 2a: an initial embedder retrieves the top-N neighbours of each generated query.

Queries are embedded as ``task: {task} | query: {query}`` and passages as
``title: {title} | text: {text}`` (Gecko, Appendix B). Search is exact (FAISS inner product
over normalised vectors) up to ``exact_max`` passages and HNSW above. The seed passage is
always among the candidates: when retrieval misses it, it replaces the N-th candidate. A
query without one (the user's own, :mod:`geckokit.fret.user_queries`) keeps the top N as
they are.
Corpus embeddings are computed once per run and cached next to it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from geckokit._deps import require
from geckokit.cache import load_or_compute
from geckokit.format import document_text, query_text

log = logging.getLogger(__name__)

CANDIDATE_SCHEMA = pa.schema(
    [
        ("query_id", pa.string()),
        ("seed_id", pa.string()),
        ("task_type", pa.string()),
        ("task", pa.string()),
        ("query", pa.string()),
        ("candidate_ids", pa.list_(pa.string())),
        ("encoder_scores", pa.list_(pa.float32())),
        # False: the seed was missed and put in at rank N; null: the query has no seed
        ("seed_retrieved", pa.bool_()),
    ]
)


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


def embed_passages(
    encoder: Any,
    passages: pa.Table,
    *,
    cache: Path | None = None,
    shared_dir: Path | None = None,
    encoder_name: str = "",
    batch_size: int = 64,
    show_progress: bool = True,
) -> np.ndarray:
    """Normalised embeddings of ``passages`` in the unified document format, shape (n, dim),
    cached at ``cache`` for the same encoder and texts. ``shared_dir`` instead keeps them in
    that folder as ``{encoder_name}-passages-{hash of the texts}.npy``, so that every run
    over the same passages reuses them; only for an encoder whose name fixes its weights
    (:func:`geckokit.registry.pinned_encoder`)."""
    texts = [
        document_text(t, x)
        for t, x in zip(passages["title"].to_pylist(), passages["text"].to_pylist(), strict=True)
    ]
    return cached_encode(
        encoder,
        texts,
        cache=cache,
        folder=shared_dir,
        label=f"{encoder_name}-passages",
        key={"encoder": encoder_name},
        batch_size=batch_size,
        show_progress=show_progress,
    )


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


def retrieve_candidates(
    queries: pa.Table,
    passages: pa.Table,
    *,
    encoder: Any,
    passage_embeddings: np.ndarray,
    top_n: int = 20,
    exact_max: int = 200_000,
    batch_size: int = 64,
    show_progress: bool = True,
) -> pa.Table:
    """Top-``top_n`` candidates per query (rows of ``queries``: query_id, passage_id, task,
    query, task_type), seed passage guaranteed, as a table in :data:`CANDIDATE_SCHEMA`. A
    query whose ``passage_id`` is null has no seed: its candidates are the top ``top_n``,
    and its ``seed_id`` and ``seed_retrieved`` are null."""
    if top_n < 2:
        raise ValueError(f"top_n must be at least 2 (a positive and a negative), got {top_n}")
    ids = passages["passage_id"].to_pylist()
    row_of = {pid: i for i, pid in enumerate(ids)}
    missing = [p for p in queries["passage_id"].to_pylist() if p is not None and p not in row_of]
    if missing:
        raise ValueError(
            f"{len(missing)} queries refer to passages not in the corpus (e.g. {missing[0]!r}); "
            "pass the corpus the queries were generated from"
        )
    top_n = min(top_n, len(ids))
    q_texts = [
        query_text(t, q)
        for t, q in zip(queries["task"].to_pylist(), queries["query"].to_pylist(), strict=True)
    ]
    q_emb = encoder.encode(
        q_texts,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=show_progress,
    )
    q_emb = np.ascontiguousarray(q_emb, dtype=np.float32)  # (q, dim)
    index = build_index(passage_embeddings, exact_max=exact_max)
    scores, rows = index.search(q_emb, top_n)  # (q, top_n) each
    out: dict[str, list[Any]] = {name: [] for name in CANDIDATE_SCHEMA.names}
    for qi, record in enumerate(
        queries.select(["query_id", "passage_id", "task_type", "task", "query"]).to_pylist()
    ):
        cand = [int(r) for r in rows[qi] if r >= 0]
        score = [float(s) for s, r in zip(scores[qi], rows[qi], strict=True) if r >= 0]
        found: bool | None = None  # no seed
        if record["passage_id"] is not None:
            seed_row = row_of[record["passage_id"]]
            found = seed_row in cand
            if not found:
                cand[-1] = seed_row
                score[-1] = float(passage_embeddings[seed_row] @ q_emb[qi])
        out["query_id"].append(record["query_id"])
        out["seed_id"].append(record["passage_id"])
        out["task_type"].append(record["task_type"])
        out["task"].append(record["task"])
        out["query"].append(record["query"])
        out["candidate_ids"].append([ids[r] for r in cand])
        out["encoder_scores"].append(score)
        out["seed_retrieved"].append(found)
    return pa.table(out, schema=CANDIDATE_SCHEMA)
