"""LLM speed of the installed llama.cpp build: prompt tokens/s on passage-sized prompts and
written tokens/s, with the CPU features the build uses; optionally against another build of
llama-cpp-python measured in the same run.

Prompt evaluation is most of the FRet stages' cost (a passage per query written, a passage
per distinct candidate scored), so the build's instruction set matters: an AVX2-only build
against one that also uses AVX-512/VNNI, say.

    python bench/llm_speed.py                                  # the installed build
    python bench/llm_speed.py --peer /tmp/llama-avx2           # and a build installed there
                                                               # (pip install --target DIR)

Each build runs in its own process, one after the other, on the first ``--passages`` SciFact
passages (a fresh prompt each, so no cached prefix helps); the numbers are medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(model: str, corpus: Path, passages: int, written: int) -> dict[str, object]:
    import llama_cpp

    from geckokit.llm import load_llm

    texts = []
    with corpus.open() as f:
        for line in f:
            row = json.loads(line)
            texts.append(f"Title: {row.get('title', '')}\nPassage: {row['text']}")
            if len(texts) == passages + 1:
                break
    llm = load_llm(model)
    llm.score([texts[0]], [" Query: warm-up"])  # one-off costs stay out of the timing
    prompt_rates, lengths = [], []
    for text in texts[1:]:
        before = llm.usage.prompt_tokens_evaluated
        t0 = time.perf_counter()
        llm.score([text], [" Query: what does this passage report"])
        seconds = time.perf_counter() - t0
        tokens = llm.usage.prompt_tokens_evaluated - before
        prompt_rates.append(tokens / seconds)
        lengths.append(tokens)
    prompt = texts[1] + "\nWrite a long summary of the passage:"
    llm.score([prompt], [" The"])  # the prompt is cached: the timing below is writing alone
    before = llm.usage.completion_tokens
    t0 = time.perf_counter()
    llm.generate([prompt], max_tokens=written, temperature=0.0)
    write_rate = (llm.usage.completion_tokens - before) / (time.perf_counter() - t0)
    features = llama_cpp.llama_print_system_info().decode().split("|")
    return {
        "build": str(Path(llama_cpp.__file__).parent),
        "features": " ".join(
            f.split("=")[0].strip().removeprefix("CPU :").strip()
            for f in features
            if f.strip().endswith("= 1")
        ),
        "prompt_tokens_per_s": round(statistics.median(prompt_rates), 1),
        "mean_prompt_tokens": round(statistics.mean(lengths)),
        "written_tokens_per_s": round(write_rate, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--passages", type=int, default=8)
    parser.add_argument("--written", type=int, default=64, help="tokens to write")
    parser.add_argument(
        "--corpus", type=Path, default=ROOT.parent / "shared/data/beir/scifact/corpus.jsonl"
    )
    parser.add_argument(
        "--peer", type=Path, help="a folder holding another llama_cpp package to compare"
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure(args.llm, args.corpus, args.passages, args.written)))
        return
    builds: list[tuple[str, dict[str, str]]] = [("installed", dict(os.environ))]
    if args.peer is not None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(args.peer), env.get("PYTHONPATH", "")])
        builds.append(("peer", env))
    rows = {}
    for name, env in builds:
        cmd = [
            sys.executable,
            __file__,
            "--json",
            "--llm",
            args.llm,
            "--corpus",
            str(args.corpus),
            "--passages",
            str(args.passages),
            "--written",
            str(args.written),
        ]
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
        rows[name] = json.loads(out.strip().splitlines()[-1])
    print(f"{args.llm}, {args.passages} SciFact passages (median), {args.written} written tokens")
    for name, r in rows.items():
        print(
            f"{name:<10} prompt {r['prompt_tokens_per_s']:>7.1f} tok/s "
            f"({r['mean_prompt_tokens']} tokens each)  written {r['written_tokens_per_s']:>5.1f} "
            f"tok/s  [{r['features']}]  {r['build']}"
        )
    if "peer" in rows:
        a, b = rows["installed"], rows["peer"]
        print(
            f"installed / peer: prompt {a['prompt_tokens_per_s'] / b['prompt_tokens_per_s']:.2f}x, "
            f"written {a['written_tokens_per_s'] / b['written_tokens_per_s']:.2f}x"
        )


if __name__ == "__main__":
    main()
