"""``geckokit rerank-eval``: the Appendix A check of Gecko on a labelled benchmark.

Retrieve the top-k passages of each test query with the encoder, score every pair with
the LLM (one pass for QL and RC, as in mining), and report nDCG@10 of the encoder's order,
of QL alone, of RC alone and of their fusions, side by side. This is how the default
fusion and RC prompt for an LLM are chosen.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from geckokit.encoder import EncoderRef
from geckokit.fret.fusion import Fusion, fuse, ranks
from geckokit.fret.rerank import PairScorer, RerankPrompt
from geckokit.llm.base import LLM
from geckokit.retrieval.beir import load_beir, sort_ids
from geckokit.retrieval.metrics import mean_scores
from geckokit.retrieval.rank import rank_with_encoder
from geckokit.tasks import rerank_task

log = logging.getLogger(__name__)


def rerank_eval(
    beir_dir: str | Path,
    *,
    llm: LLM,
    encoder: EncoderRef,
    prompt: RerankPrompt,
    top_k: int = 20,
    n_queries: int | None = 50,
    task: str | None = None,
    gecko_format: bool = False,
    passage_max_tokens: int = 384,
    show_progress: bool = True,
) -> dict[str, Any]:
    """nDCG@10 (and Recall@10) of each ordering of the encoder's top ``top_k`` for the first
    ``n_queries`` test queries (by id). ``gecko_format`` embeds with the unified format (for
    models trained on it); otherwise plain text, as a base model expects. A pinned
    encoder's corpus embeddings are cached under ``$GECKOKIT_HOME/embeddings``."""
    data = load_beir(beir_dir)
    task = task or rerank_task(data.name)
    qids = sort_ids(list(data.queries))[: n_queries or None]
    cands = rank_with_encoder(
        encoder,
        data,
        qids,
        task=task,
        gecko_format=gecko_format,
        top_k=top_k,
        show_progress=show_progress,
    )

    by_passage: dict[str, list[str]] = defaultdict(list)
    for q in qids:
        for p in cands[q]:
            by_passage[p].append(q)
    scorer = PairScorer(llm, prompt, passage_max_tokens=passage_max_tokens)
    before = llm.usage.copy()
    ql: dict[tuple[str, str], float] = {}
    rc: dict[tuple[str, str], float] = {}
    t0 = time.perf_counter()
    from rich.progress import Progress

    with Progress(disable=not show_progress) as progress:
        bar = progress.add_task(
            "rerank-eval: scoring pairs", total=sum(len(v) for v in by_passage.values())
        )
        for p, qs in sorted(by_passage.items()):
            scores = scorer.score(
                data.corpus[p]["title"],
                data.corpus[p]["text"],
                [(task, data.queries[q]) for q in qs],
            )
            for q, s in zip(qs, scores, strict=True):
                ql[(q, p)], rc[(q, p)] = s.ql, s.rc
            progress.update(bar, advance=len(qs))
    seconds = time.perf_counter() - t0
    tokens = llm.usage.since(before)["prompt_tokens_evaluated"]

    orderings: dict[str, list[list[str]]] = defaultdict(list)
    for q in qids:
        c = cands[q]
        s_ql = [ql[(q, p)] for p in c]
        s_rc = [rc[(q, p)] for p in c]
        orderings["encoder"].append(c)
        for name, fused in (
            ("ql", fuse(s_ql, s_rc, method=Fusion.QL)),
            ("rc", fuse(s_ql, s_rc, method=Fusion.RC)),
            ("rrf(ql,rc)", fuse(s_ql, s_rc)),
            (
                "rrf(ql,rc,encoder)",
                fuse(s_ql, s_rc, method=Fusion.WEIGHTED, weights=(1.0, 1.0, 1.0)),
            ),
            ("rrf(ql,encoder)", fuse(s_ql, s_rc, method=Fusion.WEIGHTED, weights=(1.0, 0.0, 1.0))),
        ):
            r = ranks(fused)
            orderings[name].append([p for _, p in sorted(zip(r, c, strict=True))])
    results = {
        name: mean_scores(dict(zip(qids, ords, strict=True)), data.qrels)
        for name, ords in orderings.items()
    }
    return {
        "benchmark": data.name,
        "queries": len(qids),
        "top_k": top_k,
        "task": task,
        "llm": llm.model_id,
        "encoder": encoder.name,
        "prompt": {"version": prompt.version, "mode": prompt.mode, "sha256": prompt.sha256},
        "gecko_format": gecko_format,
        "results": results,
        "pairs": len(ql),
        "llm_seconds": round(seconds, 1),
        "prompt_tokens_evaluated": tokens,
        "prompt_tokens_per_second": round(tokens / seconds, 1) if seconds else None,
    }
