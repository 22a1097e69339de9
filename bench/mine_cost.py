"""FRet step 2 LLM cost: geckokit's passage-ordered scoring against the naive loop, in one run.

Setting (the FRet regime, as many queries as passages): the first P SciFact passages, one
query per passage (its title, task "Given a title, retrieve the passage"), the encoder's top
N candidates per query. geckokit scores every (query, candidate) pair once, grouped by
passage (instruction evaluated once, each passage once, then lead + query + question per
pair). The naive loop evaluates a fresh prompt per pair and runs QL and RC as two separate
passes; it is measured on the first few queries and reported per example.

Prints prompt tokens per FRet example (one query with its N candidates), FRet examples per
hour, the ratio to the ideal count (instruction + passages once + N x (lead + query +
question) per query) and the share of the stage's wall time spent inside the LLM.

    python bench/mine_cost.py --passages 60 --top-n 10 --naive-queries 2
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from geckokit.corpus import load_corpus
from geckokit.encoder import EncoderRef
from geckokit.fret.rerank import PairScorer, load_rerank_prompt
from geckokit.fret.retrieve import embed_passages, retrieve_candidates
from geckokit.llm.llamacpp import LlamaCppLLM

ROOT = Path(__file__).resolve().parents[1]
TASK = "Given a title, retrieve the passage"


class Timed:
    """Wraps the LLM's entry points to add up the time spent inside them."""

    def __init__(self, llm: LlamaCppLLM) -> None:
        self.seconds = 0.0
        for name in ("eval_rows", "score", "label_logprobs"):
            real = getattr(llm, name)

            def timed(*a, _real=real, **k):  # type: ignore[no-untyped-def]
                t0 = time.perf_counter()
                try:
                    return _real(*a, **k)
                finally:
                    self.seconds += time.perf_counter() - t0

            setattr(llm, name, timed)


def scoring_setting(corpus_dir: str, passages: int, top_n: int) -> dict[str, Any]:
    """The setting: the first ``passages`` passages, one query each (its title), the
    encoder's ``top_n`` candidates per query (``candidates``), and every (query, candidate)
    pair grouped by candidate passage (``by_passage``, in passage order)."""
    import pyarrow as pa

    corpus = load_corpus(corpus_dir, limit=passages).passages
    rows = corpus.to_pylist()
    queries = pa.table(
        {
            "query_id": [f"{r['passage_id']}:q0" for r in rows],
            "passage_id": [r["passage_id"] for r in rows],
            "task_type": ["title"] * len(rows),
            "task": [TASK] * len(rows),
            "query": [r["title"] or r["text"][:80] for r in rows],
        }
    )
    encoder = EncoderRef.load()
    emb = embed_passages(encoder, corpus, show_progress=False)
    cands = retrieve_candidates(
        queries,
        corpus,
        encoder=encoder.model,
        passage_embeddings=emb,
        top_n=top_n,
        show_progress=False,
    )
    by_passage: dict[str, list[str]] = defaultdict(list)
    for qid, cs in zip(
        cands["query_id"].to_pylist(), cands["candidate_ids"].to_pylist(), strict=True
    ):
        for p in cs:
            by_passage[p].append(qid)
    return {
        "passages": {r["passage_id"]: r for r in rows},
        "query": {q["query_id"]: q["query"] for q in queries.to_pylist()},
        "by_passage": dict(sorted(by_passage.items())),
        "candidates": cands,
        "examples": len(rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(ROOT.parent / "shared/data/beir/scifact"))
    parser.add_argument("--passages", type=int, default=60)
    parser.add_argument("--top-n", type=int, default=10)
    parser.add_argument("--naive-queries", type=int, default=2)
    parser.add_argument("--llm", default="qwen2.5-coder-0.5b-instruct")
    args = parser.parse_args()

    setting = scoring_setting(args.corpus, args.passages, args.top_n)
    text, query, by_passage = setting["passages"], setting["query"], setting["by_passage"]
    cands = setting["candidates"]

    llm = LlamaCppLLM(args.llm)
    prompt = load_rerank_prompt()
    # one pair at a time, as measured below (the batched path: bench/llm_throughput.py)
    scorer = PairScorer(llm, prompt, parallel=1)
    timer = Timed(llm)
    llm.usage.reset()
    t0 = time.perf_counter()
    for pid in sorted(by_passage):
        scorer.score(
            text[pid]["title"], text[pid]["text"], [(TASK, query[q]) for q in by_passage[pid]]
        )
    wall = time.perf_counter() - t0
    fast_tokens = llm.usage.prompt_tokens_evaluated
    busy = timer.seconds / wall

    tok = llm.tokenize
    ideal = len(tok(prompt.instruction, add_bos=True, special=True))
    ideal += sum(
        len(tok(scorer.passage_text(text[p]["title"], text[p]["text"]))) for p in by_passage
    )
    per_pair_tail = len(tok(prompt.query.format(task=TASK))) + len(tok(prompt.question))
    ideal += sum(per_pair_tail + len(tok(" " + query[q])) for qs in by_passage.values() for q in qs)

    # the naive loop: a fresh prompt for every pair, QL and RC as separate passes
    naive_q = cands.slice(0, args.naive_queries).to_pylist()
    llm.set_shared_tokens([])
    llm.usage.reset()
    t0 = time.perf_counter()
    for row in naive_q:
        for pid in row["candidate_ids"]:
            llm.reset_cache()
            segment = scorer.passage_text(text[pid]["title"], text[pid]["text"])
            prefix = prompt.instruction + segment + prompt.query.format(task=TASK)
            llm.score([prefix], [" " + row["query"]])
            llm.reset_cache()
            llm.label_logprobs([prefix + " " + row["query"] + prompt.question], prompt.labels)
    naive_wall = time.perf_counter() - t0
    naive_tokens = llm.usage.prompt_tokens_evaluated

    n = setting["examples"]
    fast_per_ex = fast_tokens / n
    naive_per_ex = naive_tokens / len(naive_q)
    print(
        f"FRet step 2 on {n} queries x top {args.top_n} candidates ({sum(len(v) for v in by_passage.values())} pairs), LLM {llm.model_id}"
    )
    print(f"{'':34}{'geckokit':>12}{'naive':>12}{'ratio':>8}")
    print(
        f"{'prompt tokens per FRet example':34}{fast_per_ex:12.0f}{naive_per_ex:12.0f}{naive_per_ex / fast_per_ex:7.2f}x"
    )
    print(
        f"{'FRet examples per hour':34}{3600 * n / wall:12.1f}{3600 * len(naive_q) / naive_wall:12.1f}{(n / wall) / (len(naive_q) / naive_wall):7.2f}x"
    )
    print(
        f"tokens per example / ideal (instruction + passages once + N x (lead + query + question)): {fast_tokens / ideal:.3f} (target <= 1.2)"
    )
    print(f"LLM busy share of the scoring stage's wall time: {busy:.1%} (target >= 90%)")


if __name__ == "__main__":
    main()
