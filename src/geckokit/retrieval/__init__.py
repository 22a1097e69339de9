"""Retrieval shared by mining, evaluation, rerank-eval and the benchmarks: the BEIR reader
(:mod:`~geckokit.retrieval.beir`), dense embeddings through the cache and a FAISS index
(:mod:`~geckokit.retrieval.index`), BM25 (:mod:`~geckokit.retrieval.bm25`), rank fusion
(:mod:`~geckokit.retrieval.hybrid`), whole-corpus rankings (:mod:`~geckokit.retrieval.rank`)
and their metrics (:mod:`~geckokit.retrieval.metrics`). Infrastructure below the stages."""
