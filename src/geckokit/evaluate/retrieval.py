"""Retrieval on a BEIR folder with one encoder, or BM25: nDCG@10 / Recall@10.

The light evaluation that ``geckokit distill`` runs on its held-out queries; ``geckokit
eval`` gives mteb's full set of scores. :func:`evaluate_bm25` gives the lexical baseline row
the benchmarks print beside the encoders. The rankings and metrics themselves are
:mod:`geckokit.retrieval` (rerank-eval shares them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from geckokit.encoder import EncoderRef
from geckokit.retrieval.beir import load_beir, sort_ids
from geckokit.retrieval.metrics import mean_scores, ndcg_at_k
from geckokit.retrieval.rank import rank_with_bm25, rank_with_encoder


def evaluate_retrieval(
    encoder: EncoderRef,
    beir_dir: str | Path,
    *,
    task: str,
    gecko_format: bool,
    split: str = "test",
    n_queries: int | None = None,
    per_query: bool = False,
) -> dict[str, Any]:
    """nDCG@10 and Recall@10 of ``encoder`` on the judged ``split`` queries of a BEIR folder
    (the first ``n_queries`` by id when given); ``per_query`` adds each query's nDCG@10
    (0-1, in id order) under ``ndcg@10_per_query``, for paired significance tests. A pinned
    encoder's corpus embeddings are cached (``rank_with_encoder``)."""
    data = load_beir(beir_dir, split=split)
    qids = sort_ids(list(data.queries))[: n_queries or None]
    rankings = rank_with_encoder(
        encoder,
        data,
        qids,
        task=task,
        gecko_format=gecko_format,
        top_k=10,
    )
    out = {**mean_scores(rankings, data.qrels), "queries": len(qids), "benchmark": data.name}
    if per_query:
        out["ndcg@10_per_query"] = [ndcg_at_k(rankings[q], data.qrels[q], 10) for q in qids]
    return out


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
