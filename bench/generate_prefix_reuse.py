"""FRet step 1 cost with and without reuse of the shared few-shot prefix, in one run.

Prints prompt tokens evaluated per query and queries per minute for the embedded LLM on
SciFact passages, first with the prefix cache kept between passages (geckokit's default),
then with it cleared before every prompt (what a naive loop pays).

    python bench/generate_prefix_reuse.py --passages 12
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from geckokit.corpus import load_corpus
from geckokit.fret.generate import GenerateConfig, QueryGenerator
from geckokit.fret.prompts import load_generate_prompt
from geckokit.llm.llamacpp import LlamaCppLLM

ROOT = Path(__file__).resolve().parents[1]


def measure(llm: LlamaCppLLM, passages, *, reuse: bool) -> dict[str, float]:  # type: ignore[no-untyped-def]
    generator = QueryGenerator(
        llm, load_generate_prompt(), GenerateConfig(reuse_prefix=reuse, max_attempts=1, parallel=1)
    )
    llm.reset_cache()
    llm.usage.reset()
    t0 = time.perf_counter()
    rows = generator(passages)
    seconds = time.perf_counter() - t0
    n = rows.num_rows
    return {
        "queries": n,
        "prompt_tokens_per_query": llm.usage.prompt_tokens_evaluated / n,
        "cached_tokens_per_query": llm.usage.prompt_tokens_cached / n,
        "queries_per_minute": 60 * n / seconds,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(ROOT.parent / "shared/data/beir/scifact"))
    parser.add_argument("--passages", type=int, default=12)
    parser.add_argument("--llm", default="qwen2.5-coder-0.5b-instruct")
    args = parser.parse_args()
    passages = load_corpus(args.corpus, limit=args.passages).passages
    llm = LlamaCppLLM(args.llm)
    with_reuse = measure(llm, passages, reuse=True)
    without = measure(llm, passages, reuse=False)
    print(f"FRet step 1 on {args.passages} passages of {args.corpus}, LLM {llm.model_id}")
    print(f"{'':28}{'prefix reuse':>14}{'no reuse':>12}{'ratio':>8}")
    for key in ("prompt_tokens_per_query", "queries_per_minute"):
        a, b = with_reuse[key], without[key]
        print(f"{key:28}{a:14.1f}{b:12.1f}{(b / a if key.startswith('prompt') else a / b):7.2f}x")
    print(
        f"{'cached_tokens_per_query':28}{with_reuse['cached_tokens_per_query']:14.1f}{without['cached_tokens_per_query']:12.1f}"
    )


if __name__ == "__main__":
    main()
