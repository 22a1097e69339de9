"""IVF-SQ8 against exact search: build time, search time and recall@k on a BEIR corpus.

The corpus is read as ``geckokit mine`` reads it (passages of at most 512 tokens) and
embedded by a registry encoder through the embeddings cache; its queries are embedded with
the default query task. The IVF-SQ8 index (:mod:`geckokit.retrieval.ivf`, as many lists as
``ivf_nlist`` gives) is built once, written and read back memory-mapped, then searched at
each ``--nprobe``; every query's top k is compared with an exact (flat) search's:

    python bench/ivf_search.py --corpus ../shared/data/beir/scifact --nprobe 1 4 8 16 32
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus", type=Path, default=ROOT.parent / "shared" / "data" / "beir" / "scifact"
    )
    parser.add_argument("--model", default="all-minilm-l6-v2", help="a registry encoder")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import faiss
    import numpy as np
    import pyarrow as pa

    from geckokit.corpus import load_corpus
    from geckokit.encoder import EncoderRef
    from geckokit.fret.retrieve import embed_passages, embed_queries
    from geckokit.retrieval.ivf import load_ivf, recall_at_k, stored_ivf
    from geckokit.tasks import DEFAULT_QUERY_TASK

    encoder = EncoderRef.load(args.model)
    corpus = load_corpus(args.corpus / "corpus.jsonl")
    emb = embed_passages(encoder, corpus.passages, show_progress=False)  # (n, dim)
    lines = (args.corpus / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines if line.strip()]
    queries = pa.table({"task": [DEFAULT_QUERY_TASK] * len(texts), "query": texts})
    q_emb = embed_queries(encoder.model, queries, show_progress=False)  # (q, dim)

    t0 = time.perf_counter()
    flat = faiss.IndexFlatIP(emb.shape[1])
    flat.add(np.ascontiguousarray(emb, dtype=np.float32))
    _, exact = flat.search(q_emb, args.k)  # (q, k)
    flat_seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "corpus": args.corpus.name,
                "passages": len(emb),
                "queries": len(q_emb),
                "index": "flat",
                "search_seconds": round(flat_seconds, 3),
            }
        )
    )
    with tempfile.TemporaryDirectory() as folder:
        stored = stored_ivf(emb, Path(folder), stamp={}, nprobe=1, seed=args.seed)
        for nprobe in args.nprobe:
            index = load_ivf(stored.path, nprobe=nprobe)
            t0 = time.perf_counter()
            _, found = index.search(q_emb, args.k)  # (q, k)
            seconds = time.perf_counter() - t0
            row = {
                "index": f"IVF{stored.nlist},SQ8",
                "build_seconds": stored.build_seconds,
                "nprobe": index.nprobe,
                "search_seconds": round(seconds, 3),
                f"recall@{args.k}": round(recall_at_k(found, exact), 4),
            }
            print(json.dumps(row))


if __name__ == "__main__":
    main()
