"""FRet's LLM stages one sequence at a time against batched decoding, in one run.

Today's path is the llama.cpp backend as it ran before batched decoding: one sequence
(``n_seq_max=1``) and llama.cpp's repacked weights (``repack=True``). Each pair's
continuation (task line, query, question) is a decode of its own, and each passage's answer
is written one token per decode. The batched path is the backend's defaults: a passage's
pairs share its cached state and run in a few large decodes (``mine.parallel``), and
``--parallel`` passages' answers are written together, one token of each per decode
(``generate.parallel``).

Prints, for each path: FRet step 2's examples per hour and prompt tokens/s (the mine_cost
setting: the first P SciFact passages, one query each, its title, the encoder's top N
candidates), FRet step 1's queries per minute (one attempt per passage) and tokens/s, and
each tokens/s against the passage-prompt rate and writing rate ``bench/llm_speed.py``
measures (its method and passages, in this run). Rates depend on what else the machine
runs: measure on a quiet one.

    python bench/llm_throughput.py                      # the full setting
    python bench/llm_throughput.py --passages 4 --top-n 2 --write 2 --max-tokens 16   # smoke
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def measure_scoring(llm: Any, setting: dict[str, Any], *, parallel: int) -> dict[str, float]:
    from geckokit.fret.rerank import PairScorer, load_rerank_prompt
    from geckokit.llm.llamacpp_batch import PADDING_TOKENS
    from mine_cost import TASK

    scorer = PairScorer(llm, load_rerank_prompt(), parallel=parallel)
    text, query = setting["passages"], setting["query"]
    llm.reset_cache()
    llm.usage.reset()
    t0 = time.perf_counter()
    for pid, qids in setting["by_passage"].items():
        scorer.score(text[pid]["title"], text[pid]["text"], [(TASK, query[q]) for q in qids])
    seconds = time.perf_counter() - t0
    tokens = llm.usage.prompt_tokens_evaluated
    return {
        "examples_per_hour": 3600 * setting["examples"] / seconds,
        "tokens_per_s": tokens / seconds,
        "tokens": tokens,
        "padding": llm.usage.extra.get(PADDING_TOKENS, 0),
        "seconds": seconds,
    }


def measure_writing(llm: Any, passages: Any, *, parallel: int, max_tokens: int) -> dict[str, Any]:
    from geckokit.fret.generate import GenerateConfig, QueryGenerator
    from geckokit.fret.prompts import load_generate_prompt

    config = GenerateConfig(max_attempts=1, parallel=parallel, max_tokens=max_tokens)
    generator = QueryGenerator(llm, load_generate_prompt(), config)
    llm.reset_cache()
    llm.usage.reset()
    t0 = time.perf_counter()
    rows = generator(passages)
    seconds = time.perf_counter() - t0
    prompt, written = llm.usage.prompt_tokens_evaluated, llm.usage.completion_tokens
    return {
        "queries_per_minute": 60 * rows.num_rows / seconds,
        "tokens_per_s": (prompt + written) / seconds,
        "written_per_s": written / seconds,
        "seconds": seconds,
        "texts": dict(zip(rows["passage_id"].to_pylist(), rows["raw"].to_pylist(), strict=True)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(ROOT.parent / "shared/data/beir/scifact"))
    parser.add_argument("--llm", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--passages", type=int, default=60, help="FRet step 2: queries")
    parser.add_argument("--top-n", type=int, default=10, help="FRet step 2: candidates")
    parser.add_argument("--write", type=int, default=16, help="FRet step 1: passages")
    parser.add_argument(
        "--parallel", type=int, default=4, help="FRet step 1: passages written together"
    )
    parser.add_argument("--max-tokens", type=int, default=128, help="FRet step 1 answer limit")
    parser.add_argument("--speed-passages", type=int, default=8, help="llm_speed.py's prompts")
    args = parser.parse_args()

    import llm_speed
    from geckokit.corpus import load_corpus
    from geckokit.fret.generate import DEFAULT_PARALLEL
    from geckokit.fret.rerank import DEFAULT_PAIR_PARALLEL
    from geckokit.llm.llamacpp import LlamaCppLLM
    from mine_cost import scoring_setting

    parallel = args.parallel
    corpus_file = Path(args.corpus) / "corpus.jsonl"
    speed = llm_speed.measure(args.llm, corpus_file, args.speed_passages, 64)
    setting = scoring_setting(args.corpus, args.passages, args.top_n)
    writing = load_corpus(args.corpus, limit=args.write).passages
    results: dict[str, dict[str, dict[str, Any]]] = {}
    paths: tuple[tuple[str, dict[str, Any], int, int], ...] = (
        ("today", {"n_seq_max": 1, "repack": True}, 1, 1),
        ("batched", {}, DEFAULT_PAIR_PARALLEL, DEFAULT_PARALLEL),
    )
    for path, options, pairs, passages in paths:
        llm = LlamaCppLLM(args.llm, **options)
        llm.score(["Warm-up: a short text the timed calls do not start with."], [" Ready."])
        results[path] = {
            "score": measure_scoring(llm, setting, parallel=pairs),
            "write": measure_writing(llm, writing, parallel=passages, max_tokens=args.max_tokens),
        }
        if path == "batched":  # several passages written together (not the default)
            results[path]["write_k"] = measure_writing(
                llm, writing, parallel=parallel, max_tokens=args.max_tokens
            )
        llm.close()

    prompt_rate, written_rate = speed["prompt_tokens_per_s"], speed["written_tokens_per_s"]
    pairs = sum(len(q) for q in setting["by_passage"].values())
    print(
        f"LLM {args.llm}; FRet step 2: {setting['examples']} queries x top {args.top_n} "
        f"({pairs} pairs); FRet step 1: {args.write} passages, one attempt each"
    )
    print(
        f"bench/llm_speed.py rates: passage prompt {prompt_rate:.1f} tok/s, "
        f"written {written_rate:.1f} tok/s"
    )
    today, batched = results["today"], results["batched"]
    lines = [
        ("FRet examples per hour", "score", "examples_per_hour"),
        ("  scoring prompt tokens/s", "score", "tokens_per_s"),
        ("FRet queries per minute", "write", "queries_per_minute"),
        ("  writing tokens/s (prompt + written)", "write", "tokens_per_s"),
        ("  written tokens/s", "write", "written_per_s"),
    ]
    print(
        "today: one sequence, repacked weights; default: a passage's pairs batched "
        f"(mine.parallel {DEFAULT_PAIR_PARALLEL}), passages written {DEFAULT_PARALLEL} at a time "
        f"(generate.parallel); {parallel} written together: generate.parallel {parallel}"
    )
    print(
        f"{'':40}{'today':>10}{'default':>10}{'ratio':>8}{f'{parallel} together':>13}{'ratio':>8}"
    )
    for label, stage, key in lines:
        a, b = today[stage][key], batched[stage][key]
        row = f"{label:40}{a:10.1f}{b:10.1f}{b / a:7.2f}x"
        if stage == "write":
            k = batched["write_k"][key]
            row += f"{k:13.1f}{k / a:7.2f}x"
        print(row)
    b = batched["score"]
    print(
        f"  batched scoring also decoded {b['padding']} padding tokens "
        f"({b['padding'] / b['tokens']:.0%} of its prompt tokens; not counted above)"
    )
    alone, together = batched["write"]["texts"], batched["write_k"]["texts"]
    same = sum(together.get(k) == v for k, v in alone.items())
    print(
        f"  written {parallel} together at temperature 0: {same} of {len(alone)} answers "
        f"({same / max(1, len(alone)):.0%}) equal the one-at-a-time answers (same weights)"
    )
    print("tokens/s against the rates of bench/llm_speed.py:")
    for path in ("today", "batched"):
        r = results[path]
        print(
            f"  {path:8} scoring {r['score']['tokens_per_s'] / prompt_rate:.2f}x the passage-"
            f"prompt rate; writing {r['write']['tokens_per_s'] / prompt_rate:.2f}x it, "
            f"written tokens {r['write']['written_per_s'] / written_rate:.2f}x the writing rate"
        )


if __name__ == "__main__":
    main()
