"""First-stage retrieval shared by mining, evaluation and benchmarks: BM25 and rank fusion."""
