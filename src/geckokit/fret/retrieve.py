"""FRet step 2a: a first-stage retriever proposes the top-N candidates of each generated query.

The retriever (:class:`~geckokit.retrieval.hybrid.Retriever`) is the initial encoder by
default, as in the paper: queries are embedded as ``task: {task} | query: {query}`` and
passages as ``title: {title} | text: {text}`` (Gecko, Appendix B), and search is exact (FAISS
inner product over normalised vectors) up to ``exact_max`` passages and HNSW above, or, above
``ivf_above`` passages, an IVF-SQ8 index built once in the run folder and memory-mapped, whose
recall against exact search is measured (:func:`search_index`). ``bm25``
ranks by BM25 over the passages' words instead (the raw query text, no task; InPars), and
``hybrid`` by reciprocal rank fusion of the encoder's and BM25's rankings, each taken
:func:`~geckokit.retrieval.hybrid.hybrid_depth` deep. Candidates come in the retriever's
order, best first. The seed passage is always among them: when retrieval misses it, it
replaces the N-th candidate. A query without one (the user's own,
:mod:`geckokit.fret.user_queries`) keeps the top N as they are. Corpus embeddings are computed once per run and cached next to
it; every retriever needs them, for the encoder's score of each candidate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from geckokit.cache import load_or_compute
from geckokit.encoder import EncoderRef
from geckokit.format import document_text, query_text
from geckokit.registry import embeddings_dir
from geckokit.retrieval.hybrid import RRF_K, Retriever, hybrid_depth, reciprocal_rank_fusion
from geckokit.retrieval.index import build_index, cached_encode
from geckokit.retrieval.ivf import IndexRecord, recall_against_exact, stored_ivf

log = logging.getLogger(__name__)

CANDIDATE_SCHEMA = pa.schema(
    [
        ("query_id", pa.string()),
        ("seed_id", pa.string()),
        ("task_type", pa.string()),
        ("task", pa.string()),
        ("query", pa.string()),
        ("candidate_ids", pa.list_(pa.string())),  # in the retriever's order, best first
        ("encoder_scores", pa.list_(pa.float32())),  # the initial encoder's cosine, each
        ("bm25_scores", pa.list_(pa.float32())),  # each one's BM25 score; null: not computed
        ("retriever_scores", pa.list_(pa.float32())),  # the scores that ordered them
        ("encoder_first_id", pa.string()),  # the encoder's first in the whole corpus
        # False: the seed was missed and put in at rank N; null: the query has no seed
        ("seed_retrieved", pa.bool_()),
    ]
)


def embed_passages(
    encoder: EncoderRef,
    passages: pa.Table,
    *,
    cache: Path | None = None,
    batch_size: int = 64,
    show_progress: bool = True,
    compute: Callable[[list[str]], np.ndarray] | None = None,
) -> np.ndarray:
    """Normalised embeddings of ``passages`` in the unified document format, shape (n, dim).
    A pinned encoder's (:class:`~geckokit.encoder.EncoderRef`) are kept in
    ``$GECKOKIT_HOME/embeddings`` as ``{name}-passages-{hash of the texts}.npy``, so that
    every run over the same passages reuses them; any other encoder's at ``cache``, for the
    same encoder name and texts (None: not kept). ``compute`` embeds the texts when they are
    not cached (None: ``encoder.model`` here; e.g.
    :func:`~geckokit.fret.embed_workers.embed_on_workers`)."""
    texts = [
        document_text(t, x)
        for t, x in zip(passages["title"].to_pylist(), passages["text"].to_pylist(), strict=True)
    ]
    name = encoder.cache_name
    if compute is not None:
        return load_or_compute(
            texts,
            compute,
            cache=None if encoder.pinned else cache,
            folder=embeddings_dir() if encoder.pinned else None,
            label=f"{name}-passages",
            key={"encoder": name},
        )
    return cached_encode(
        encoder.model,
        texts,
        cache=None if encoder.pinned else cache,
        folder=embeddings_dir() if encoder.pinned else None,
        label=f"{name}-passages",
        key={"encoder": name},
        batch_size=batch_size,
        show_progress=show_progress,
    )


def embed_queries(
    encoder: Any, queries: pa.Table, *, batch_size: int = 64, show_progress: bool = True
) -> np.ndarray:
    """Normalised embeddings of ``queries``' (task, query) rows as the encoder reads them
    (``task: {task} | query: {query}``), shape (q, dim), float32."""
    texts = [
        query_text(t, q)
        for t, q in zip(queries["task"].to_pylist(), queries["query"].to_pylist(), strict=True)
    ]
    emb = encoder.encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=show_progress,
    )
    return np.ascontiguousarray(emb, dtype=np.float32)  # (q, dim)


def search_index(
    passage_embeddings: np.ndarray,
    query_embeddings: np.ndarray,
    *,
    folder: Path,
    stamp: dict[str, Any],
    top_n: int,
    ivf_above: int,
    nprobe: int,
    exact_max: int = 200_000,
    recall_sample: int = 200,
    seed: int = 0,
) -> tuple[Any, IndexRecord]:
    """The index that searches ``passage_embeddings`` (n, dim) and what it is. Up to
    ``ivf_above`` passages, :func:`~geckokit.retrieval.index.build_index` (exact up to
    ``exact_max``, HNSW above; not stored); above, the IVF-SQ8 index in ``folder``, built
    once and memory-mapped (:func:`~geckokit.retrieval.ivf.stored_ivf`; ``stamp`` says
    what the vectors are), searching ``nprobe`` lists, with its recall@``top_n`` against
    exact search on ``recall_sample`` of the queries drawn with ``seed``."""
    n = len(passage_embeddings)
    if n <= ivf_above:
        kind = "flat" if n <= exact_max else "hnsw"
        return build_index(passage_embeddings, exact_max=exact_max), IndexRecord(kind, n)
    ivf = stored_ivf(passage_embeddings, folder, stamp=stamp, nprobe=nprobe, seed=seed)
    recall, sampled = recall_against_exact(
        ivf.index,
        passage_embeddings,
        query_embeddings,
        k=top_n,
        sample=recall_sample,
        seed=seed,
    )
    record = IndexRecord(
        "ivf-sq8",
        n,
        nlist=ivf.nlist,
        nprobe=ivf.index.nprobe,
        path=str(ivf.path),
        built=ivf.built,
        build_seconds=ivf.build_seconds,
        recall=round(recall, 4),
        recall_k=min(top_n, n),
        recall_queries=sampled,
    )
    log.info(
        "IVF-SQ8 index of %d passages (%d lists, nprobe %d, %s): recall@%d against exact "
        "search %.3f on %d queries",
        n,
        ivf.nlist,
        record.nprobe,
        "built" if ivf.built else "reused",
        record.recall_k,
        recall,
        sampled,
    )
    return ivf.index, record


def retrieve_candidates(
    queries: pa.Table,
    passages: pa.Table,
    *,
    encoder: Any,
    passage_embeddings: np.ndarray,
    top_n: int = 20,
    retriever: Retriever | str = Retriever.ENCODER,
    hybrid_k: int = RRF_K,
    exact_max: int = 200_000,
    index: Any | None = None,
    query_embeddings: np.ndarray | None = None,
    batch_size: int = 64,
    show_progress: bool = True,
) -> pa.Table:
    """Top-``top_n`` candidates per query (rows of ``queries``: query_id, passage_id, task,
    query, task_type) from ``retriever``, seed passage guaranteed, as a table in
    :data:`CANDIDATE_SCHEMA`. ``encoder_scores`` holds the encoder's cosine of every
    candidate whichever retriever chose them; ``bm25_scores`` is null for the encoder
    alone; ``retriever_scores`` is the cosine, the BM25 score or the RRF score (``hybrid_k``
    is RRF's k), and for a seed put in at rank N its own score (0 for a hybrid seed that
    neither ranking held). A query whose ``passage_id`` is null has no seed: its candidates
    are the top ``top_n``, and its ``seed_id`` and ``seed_retrieved`` are null. ``index``
    searches the passage embeddings (None: :func:`~geckokit.retrieval.index.build_index`
    with ``exact_max``); ``query_embeddings`` are the queries' (None: computed here,
    :func:`embed_queries`)."""
    if top_n < 2:
        raise ValueError(f"top_n must be at least 2 (a positive and a negative), got {top_n}")
    if not isinstance(retriever, Retriever):
        retriever = Retriever.parse(retriever)
    ids = passages["passage_id"].to_pylist()
    row_of = {pid: i for i, pid in enumerate(ids)}
    missing = [p for p in queries["passage_id"].to_pylist() if p is not None and p not in row_of]
    if missing:
        raise ValueError(
            f"{len(missing)} queries refer to passages not in the corpus (e.g. {missing[0]!r}); "
            "pass the corpus the queries were generated from"
        )
    top_n = min(top_n, len(ids))
    if query_embeddings is None:
        query_embeddings = embed_queries(
            encoder, queries, batch_size=batch_size, show_progress=show_progress
        )
    q_emb = np.ascontiguousarray(query_embeddings, dtype=np.float32)  # (q, dim)
    # the encoder ranks the candidates itself, the fusion's share, or (for BM25) only its
    # first, which drop_solved and the summary compare against
    depth = {
        Retriever.ENCODER: top_n,
        Retriever.HYBRID: min(len(ids), hybrid_depth(top_n)),
        Retriever.BM25: 1,
    }[retriever]
    if index is None:
        index = build_index(passage_embeddings, exact_max=exact_max)
    enc_scores, enc_rows = index.search(q_emb, depth)  # (q, depth) each
    bm25_scores = _bm25_scores(retriever, passages, queries["query"].to_pylist())
    out: dict[str, list[Any]] = {name: [] for name in CANDIDATE_SCHEMA.names}
    records = queries.select(["query_id", "passage_id", "task_type", "task", "query"])
    for qi, record in enumerate(records.to_pylist()):
        enc = {
            int(r): float(s) for r, s in zip(enc_rows[qi], enc_scores[qi], strict=True) if r >= 0
        }
        bm = next(bm25_scores) if bm25_scores is not None else None  # (n,) or None
        ranked = _ranked(retriever, enc, bm, top_n=top_n, depth=depth, hybrid_k=hybrid_k)
        cand = list(ranked)[:top_n]
        found: bool | None = None  # no seed
        if record["passage_id"] is not None:
            seed_row = row_of[record["passage_id"]]
            found = seed_row in cand
            if not found:
                cand[-1] = seed_row
        if retriever is Retriever.ENCODER:
            # FAISS's cosines, as before; a seed put in at rank N gets its own
            cosine = [
                enc[r] if r in enc else float(passage_embeddings[r] @ q_emb[qi]) for r in cand
            ]
        else:
            cosine = [float(s) for s in passage_embeddings[cand] @ q_emb[qi]]  # (top_n,)
        lexical = None if bm is None else [float(bm[r]) for r in cand]
        if retriever is Retriever.HYBRID:
            ordering = [ranked.get(r, 0.0) for r in cand]  # 0: a seed neither ranking held
        else:  # BM25's scores, or the encoder's alone
            ordering = lexical if lexical is not None else cosine
        for key in ("query_id", "task_type", "task", "query"):
            out[key].append(record[key])
        out["seed_id"].append(record["passage_id"])
        out["candidate_ids"].append([ids[r] for r in cand])
        out["encoder_scores"].append(cosine)
        out["bm25_scores"].append(lexical)
        out["retriever_scores"].append(ordering)
        out["encoder_first_id"].append(ids[next(iter(enc))] if enc else None)
        out["seed_retrieved"].append(found)
    return pa.table(out, schema=CANDIDATE_SCHEMA)


def _bm25_scores(retriever: Retriever, passages: pa.Table, queries: list[str]) -> Any:
    """Each query's BM25 score of every passage, one (n,) array at a time; None for the
    encoder alone. BM25 reads the raw query: the task line is the encoder's format."""
    if retriever is Retriever.ENCODER:
        return None
    from geckokit.retrieval.bm25 import BM25Index, passage_text

    texts = [
        passage_text(t, x)
        for t, x in zip(passages["title"].to_pylist(), passages["text"].to_pylist(), strict=True)
    ]
    return BM25Index(texts).scores(queries)


def _ranked(
    retriever: Retriever,
    encoder: dict[int, float],
    bm25: np.ndarray | None,
    *,
    top_n: int,
    depth: int,
    hybrid_k: int,
) -> dict[int, float]:
    """The passage rows ``retriever`` ranks for one query, best first, with the score that
    ranks them. ``encoder`` holds the encoder's best rows and cosines in its order,
    ``bm25`` every passage's BM25 score; the hybrid fuses the two ``depth`` deep."""
    if retriever is Retriever.ENCODER:
        return encoder
    from geckokit.retrieval.bm25 import top_k

    assert bm25 is not None  # computed for every retriever but the encoder
    if retriever is Retriever.BM25:
        return {int(r): float(bm25[r]) for r in top_k(bm25, top_n)}
    # a passage that shares no word with the query is not in BM25's ranking at all: its
    # place among the zeros would only be its row
    words = [int(r) for r in top_k(bm25, depth) if bm25[r] > 0]
    return dict(reciprocal_rank_fusion([list(encoder), words], k=hybrid_k))


def with_candidate_columns(candidates: pa.Table) -> pa.Table:
    """A candidates table written before the retriever could be chosen, with the columns
    added since: its candidates came from the encoder, so the retriever's scores are the
    encoder's and the encoder's first is the first candidate (no BM25 scores)."""
    if "retriever_scores" in candidates.column_names:
        return candidates
    n = candidates.num_rows
    add = {
        "bm25_scores": pa.nulls(n, CANDIDATE_SCHEMA.field("bm25_scores").type),
        "retriever_scores": candidates["encoder_scores"],
        "encoder_first_id": pc.list_element(candidates["candidate_ids"], 0),
    }
    columns = [add[name] if name in add else candidates[name] for name in CANDIDATE_SCHEMA.names]
    return pa.table(columns, schema=CANDIDATE_SCHEMA)
