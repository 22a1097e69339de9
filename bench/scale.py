"""FRet on 1 to 8 latency-bound LLM servers: the local loop against Ray, in one run.

What 2 CPU cores cannot show directly is how FRet's LLM stages grow with the servers behind
them. This starts N simulated servers on loopback (``bench/sim_llm_server.py``: real HTTP,
OpenAI-compatible, one request at a time each, a fixed delay per prompt and written token),
then runs FRet steps 1 and 2 (``generate_queries`` and ``mine`` with the query-likelihood and
relevance fusion) on the first P passages of a corpus with ``--llm`` listing the N servers
(each at most one request from each process at a time), for N = 1, 2, 4, 8:

- ``local``: one loop in this process; the pool sends as many requests at once as the
  servers' limits add up to (N passages written at once, N passages scored at once);
- ``ray``: a local Ray cluster (fractional CPUs per worker, no dashboard, loopback) with N
  workers, each with its own pool over the N servers, one shard at a time.

It prints FRet examples per minute, the speed-up over one server and its ratio to linear
(target: at least 0.8 up to 8), Ray's time against the local loop at 1 worker (target: under
5% more) and Ray's cost per shard. Retrieval uses geckokit's tiny hashed-words encoder (the
servers' script makes its queries retrievable), so that the time is the LLM stages'.

    python bench/scale.py                                  # N = 1, 2, 4, 8; 64 passages
    python bench/scale.py --servers 1,2 --passages 16      # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "beir" / "scifact"


def start_servers(n: int, args: argparse.Namespace) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "sim_llm_server.py"),
            f"--servers={n}",
            f"--prompt-ms={args.prompt_ms}",
            f"--written-ms={args.written_ms}",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def stop_servers(proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    out, _ = proc.communicate(timeout=60)
    return list(json.loads(out.strip().splitlines()[-1]))


def run_fret(
    corpus: Any, spec: str, n: int, executor: str, address: str | None, work: Path, args: Any
) -> dict[str, Any]:
    from geckokit.fret.generate import GenerateConfig
    from geckokit.fret.generate_run import generate_queries
    from geckokit.fret.mine_run import MineConfig, mine
    from geckokit.runs.executor import ExecutorSettings
    from geckokit.testing import tiny_encoder

    settings = None  # the local loop
    if executor == "ray":
        settings = ExecutorSettings(
            executor="ray", ray_address=address, workers=n, worker_cpus=args.worker_cpus
        )
    out = work / f"{executor}-{n}"
    t0 = time.perf_counter()
    generated = generate_queries(
        corpus,
        out / "queries",
        llm=spec,
        config=GenerateConfig(max_attempts=1),
        shard_size=args.shard_size,
        show_progress=False,
        executor=settings,
    )
    t1 = time.perf_counter()
    mined = mine(
        out / "queries",
        corpus,
        out / "mine",
        llm=spec,
        encoder=tiny_encoder(),
        config=MineConfig(top_n=args.top_n),
        shard_size=args.shard_size,
        show_progress=False,
        executor=settings,
    )
    t2 = time.perf_counter()
    examples = int(mined["counts"]["examples"])
    shards = int(generated["shards"]["total"]) + int(mined["shards"]["total"])
    return {
        "servers": n,
        "executor": executor,
        "examples": examples,
        "shards": shards,
        "generate_s": round(t1 - t0, 2),
        "mine_s": round(t2 - t1, 2),
        "seconds": round(t2 - t0, 2),
        "examples_per_min": round(examples / (t2 - t0) * 60, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="1,2,4,8", help="server counts, comma-separated")
    parser.add_argument("--passages", type=int, default=64)
    parser.add_argument("--corpus", default=str(SHARED), help="a corpus geckokit reads")
    parser.add_argument("--top-n", type=int, default=4, help="candidates scored per query")
    parser.add_argument("--shard-size", type=int, default=8)
    parser.add_argument("--prompt-ms", type=float, default=0.1, help="server ms per prompt token")
    parser.add_argument("--written-ms", type=float, default=10.0, help="ms per written token")
    parser.add_argument("--worker-cpus", type=float, default=0.25, help="CPUs per Ray worker")
    parser.add_argument("--executors", default="local,ray")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    import ray

    from geckokit.corpus import load_corpus

    counts = [int(n) for n in args.servers.split(",")]
    executors = args.executors.split(",")
    corpus = load_corpus(args.corpus, limit=args.passages)
    address = None
    if "ray" in executors:
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p
        )
        context = ray.init(
            num_cpus=max(4, 2 * max(counts)),
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
        )
        address = str(context.address_info["address"])
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in counts:
                for executor in executors:
                    proc, urls = start_servers(n, args)
                    spec_file = Path(tmp) / f"servers-{n}-{executor}.txt"
                    spec_file.write_text("".join(f"{url} 1\n" for url in urls))
                    try:
                        row = run_fret(
                            corpus, str(spec_file), n, executor, address, Path(tmp), args
                        )
                    finally:
                        served = stop_servers(proc)
                    busy = sum(s["busy_s"] for s in served) / len(served)
                    row["server_busy"] = round(busy / row["seconds"], 3)
                    row["requests"] = sum(s["requests"] for s in served)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        if address is not None:
            ray.shutdown()
    report(rows, args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\nFRet on {args.passages} passages, top {args.top_n}; each server one request at a "
        f"time, {args.prompt_ms} ms per prompt token and {args.written_ms} ms per written token"
    )
    print(
        f"{'servers':>8}{'executor':>10}{'examples':>10}{'seconds':>9}{'ex/min':>9}"
        f"{'speed-up':>10}{'/ linear':>10}{'busy':>7}"
    )
    first = {r["executor"]: r for r in rows if r["servers"] == min(x["servers"] for x in rows)}
    for r in rows:
        base = first[r["executor"]]
        speedup = r["examples_per_min"] / base["examples_per_min"]
        linear = speedup / (r["servers"] / base["servers"])
        print(
            f"{r['servers']:>8}{r['executor']:>10}{r['examples']:>10}{r['seconds']:>9.1f}"
            f"{r['examples_per_min']:>9.1f}{speedup:>9.2f}x{linear:>10.2f}{r['server_busy']:>7.2f}"
        )
    one = {r["executor"]: r for r in rows if r["servers"] == 1}
    if {"local", "ray"} <= set(one):
        local, ray = one["local"], one["ray"]
        extra = ray["seconds"] / local["seconds"] - 1
        per_shard = (ray["seconds"] - local["seconds"]) / ray["shards"]
        print(
            f"Ray at 1 worker against the local loop: {100 * extra:+.1f}% time "
            f"({per_shard * 1000:+.0f} ms per shard over {ray['shards']} shards)"
        )


if __name__ == "__main__":
    main()
