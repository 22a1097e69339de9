"""Rankings of a BEIR set's queries over its whole corpus: by an encoder (cosine, through
the embedding cache and a FAISS index) or by BM25. Evaluation and rerank-eval rank with these;
:mod:`geckokit.retrieval.metrics` scores the rankings."""

from __future__ import annotations

import numpy as np

from geckokit.encoder import EncoderRef
from geckokit.format import document_text, query_text
from geckokit.retrieval.beir import BeirData
from geckokit.retrieval.index import build_index, cached_encode


def rank_with_encoder(
    encoder: EncoderRef,
    data: BeirData,
    query_ids: list[str],
    *,
    task: str,
    gecko_format: bool,
    top_k: int,
    show_progress: bool = False,
) -> dict[str, list[str]]:
    """The encoder's top ``top_k`` passage ids per query, by cosine similarity over the
    whole corpus. ``gecko_format`` embeds in the unified format (``task: ... | query: ...``
    against ``title: ... | text: ...``, for models trained on it); otherwise plain text
    (title and text joined), as a base model expects. A pinned encoder's corpus embeddings
    (a registry encoder: its name fixes its weights) are cached under
    ``$GECKOKIT_HOME/embeddings``, keyed by its name and the texts."""
    from geckokit.registry import embeddings_dir

    pids = list(data.corpus)
    if gecko_format:
        docs = [document_text(data.corpus[p]["title"], data.corpus[p]["text"]) for p in pids]
        texts = [query_text(task, data.queries[q]) for q in query_ids]
    else:
        docs = [(data.corpus[p]["title"] + " " + data.corpus[p]["text"]).strip() for p in pids]
        texts = [data.queries[q] for q in query_ids]
    name = encoder.cache_name
    emb = cached_encode(
        encoder.model,
        docs,
        folder=embeddings_dir() if encoder.pinned else None,
        label=f"{name}-{data.name}-{'gecko' if gecko_format else 'plain'}",
        key={"encoder": name},
        show_progress=show_progress,
    )
    q_emb = np.asarray(
        encoder.model.encode(
            texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False
        ),
        dtype=np.float32,
    )  # (queries, dim)
    _, rows = build_index(emb).search(q_emb, min(top_k, len(pids)))
    return {q: [pids[int(r)] for r in rows[i] if r >= 0] for i, q in enumerate(query_ids)}


def rank_with_bm25(data: BeirData, query_ids: list[str], *, top_k: int) -> dict[str, list[str]]:
    """BM25's top ``top_k`` passage ids per query over the whole corpus (title and text
    joined; raw query text), with :mod:`geckokit.retrieval.bm25`'s settings."""
    from geckokit.retrieval.bm25 import BM25Index, passage_text

    pids = list(data.corpus)
    index = BM25Index([passage_text(data.corpus[p]["title"], data.corpus[p]["text"]) for p in pids])
    rows, _ = index.search([data.queries[q] for q in query_ids], k=top_k)  # (queries, top_k)
    return {q: [pids[int(r)] for r in rows[i]] for i, q in enumerate(query_ids)}
