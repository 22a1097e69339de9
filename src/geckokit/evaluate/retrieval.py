"""Retrieval on a BEIR folder with one encoder, or BM25: rankings and nDCG@10 / Recall@10.

The light evaluation that ``geckokit distill`` and ``geckokit rerank-eval`` run on their
held-out queries; ``geckokit eval`` gives mteb's full set of scores. :func:`evaluate_bm25`
gives the lexical baseline row the benchmarks print beside the encoders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from geckokit.evaluate.beir import BeirData, load_beir
from geckokit.evaluate.metrics import ndcg_at_k, recall_at_k
from geckokit.format import document_text, query_text


def sort_ids(ids: list[str]) -> list[str]:
    """Numeric ids in numeric order, then the others in text order."""
    return sorted(ids, key=lambda x: (0, int(x), "") if x.isdigit() else (1, 0, x))


def rank_with_encoder(
    encoder: Any,
    data: BeirData,
    query_ids: list[str],
    *,
    task: str,
    gecko_format: bool,
    top_k: int,
    encoder_name: str = "",
    show_progress: bool = False,
) -> dict[str, list[str]]:
    """The encoder's top ``top_k`` passage ids per query, by cosine similarity over the
    whole corpus. ``gecko_format`` embeds in the unified format (``task: ... | query: ...``
    against ``title: ... | text: ...``, for models trained on it); otherwise plain text
    (title and text joined), as a base model expects. With ``encoder_name`` (a registry
    name or hub id, which fixes the weights) the corpus embeddings are cached under
    ``$GECKOKIT_HOME/embeddings``, keyed by that name and the texts."""
    from geckokit.fret.retrieve import build_index, cached_encode
    from geckokit.registry import embeddings_dir

    pids = list(data.corpus)
    if gecko_format:
        docs = [document_text(data.corpus[p]["title"], data.corpus[p]["text"]) for p in pids]
        texts = [query_text(task, data.queries[q]) for q in query_ids]
    else:
        docs = [(data.corpus[p]["title"] + " " + data.corpus[p]["text"]).strip() for p in pids]
        texts = [data.queries[q] for q in query_ids]
    emb = cached_encode(
        encoder,
        docs,
        folder=embeddings_dir() if encoder_name else None,
        label=f"{encoder_name}-{data.name}-{'gecko' if gecko_format else 'plain'}",
        key={"encoder": encoder_name},
        show_progress=show_progress,
    )
    q_emb = np.asarray(
        encoder.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False),
        dtype=np.float32,
    )  # (queries, dim)
    _, rows = build_index(emb).search(q_emb, min(top_k, len(pids)))
    return {q: [pids[int(r)] for r in rows[i] if r >= 0] for i, q in enumerate(query_ids)}


def mean_scores(
    rankings: dict[str, list[str]], qrels: dict[str, dict[str, float]], *, k: int = 10
) -> dict[str, float]:
    """Mean nDCG@k and Recall@k (in percent, 2 decimals) over the ranked queries."""
    if not rankings:
        raise ValueError("no queries to score")
    n = len(rankings)
    return {
        f"ndcg@{k}": round(
            100 * sum(ndcg_at_k(r, qrels[q], k) for q, r in rankings.items()) / n, 2
        ),
        f"recall@{k}": round(
            100 * sum(recall_at_k(r, qrels[q], k) for q, r in rankings.items()) / n, 2
        ),
    }


def evaluate_retrieval(
    encoder: Any,
    beir_dir: str | Path,
    *,
    task: str,
    gecko_format: bool,
    split: str = "test",
    n_queries: int | None = None,
    per_query: bool = False,
    encoder_name: str = "",
) -> dict[str, Any]:
    """nDCG@10 and Recall@10 of ``encoder`` on the judged ``split`` queries of a BEIR folder
    (the first ``n_queries`` by id when given); ``per_query`` adds each query's nDCG@10
    (0-1, in id order) under ``ndcg@10_per_query``, for paired significance tests.
    ``encoder_name`` caches the corpus embeddings (``rank_with_encoder``)."""
    data = load_beir(beir_dir, split=split)
    qids = sort_ids(list(data.queries))[: n_queries or None]
    rankings = rank_with_encoder(
        encoder,
        data,
        qids,
        task=task,
        gecko_format=gecko_format,
        top_k=10,
        encoder_name=encoder_name,
    )
    out = {**mean_scores(rankings, data.qrels), "queries": len(qids), "benchmark": data.name}
    if per_query:
        out["ndcg@10_per_query"] = [ndcg_at_k(rankings[q], data.qrels[q], 10) for q in qids]
    return out


def rank_with_bm25(data: BeirData, query_ids: list[str], *, top_k: int) -> dict[str, list[str]]:
    """BM25's top ``top_k`` passage ids per query over the whole corpus (title and text
    joined; raw query text), with :mod:`geckokit.retrieval.bm25`'s settings."""
    from geckokit.retrieval.bm25 import BM25Index, passage_text

    pids = list(data.corpus)
    index = BM25Index([passage_text(data.corpus[p]["title"], data.corpus[p]["text"]) for p in pids])
    rows, _ = index.search([data.queries[q] for q in query_ids], k=top_k)  # (queries, top_k)
    return {q: [pids[int(r)] for r in rows[i]] for i, q in enumerate(query_ids)}


def evaluate_bm25(
    beir_dir: str | Path,
    *,
    split: str = "test",
    n_queries: int | None = None,
    per_query: bool = False,
) -> dict[str, Any]:
    """nDCG@10 and Recall@10 of BM25 on the judged ``split`` queries of a BEIR folder, in
    the shape :func:`evaluate_retrieval` returns (``per_query`` adds ``ndcg@10_per_query``
    in query-id order, for paired tests against an encoder's)."""
    data = load_beir(beir_dir, split=split)
    qids = sort_ids(list(data.queries))[: n_queries or None]
    rankings = rank_with_bm25(data, qids, top_k=10)
    out = {**mean_scores(rankings, data.qrels), "queries": len(qids), "benchmark": data.name}
    if per_query:
        out["ndcg@10_per_query"] = [ndcg_at_k(rankings[q], data.qrels[q], 10) for q in qids]
    return out
