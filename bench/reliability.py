"""Reliability: the cases of tests/reliability/ at a larger count, one table row per area.

    python bench/reliability.py --area serve                    # the default counts
    python bench/reliability.py --area serve --examples 25 --clients 16 --rounds 2 --slow 20
    python bench/reliability.py --area llm --faults 1000
    python bench/reliability.py --area damage --cases 50        # 50 of each kind of damage
    python bench/reliability.py --area damage --cases 2 --real  # with the real models
    python bench/reliability.py --area kill --kills 10          # 10 kills in each stage

Areas:

- ``kill``: ``kill -9`` of ``geckokit distill`` (the real command, default LLM and encoder,
  ``--passages`` SciFact passages) at ``--kills`` seeded random moments inside each stage
  (generate, mine, mix, train, eval), each followed by the same command to the end, which
  must finish with the uninterrupted run's rows (none lost or twice, the generated queries
  identical) and leave no lock; and a second run started on a folder another is writing,
  which must be refused (tests/reliability/kill_cases.py).

- ``damage``: damaged run folders (tests/reliability/damage_cases.py): ``--cases`` cases of
  each kind, each with its own seed (``--seed`` onwards): a finished shard cut short,
  emptied or with a byte flipped; a half-finished run resumed with another corpus of the same
  size; generate's or mine's manifest deleted and the run resumed with another seed or top_n;
  a shard copied from a run over another corpus; distill's run manifest lost, garbled, or
  lost with its copy; any Parquet file of a finished distill run cut short; a disk (tmpfs,
  as root) that fills during the run. On ``--passages`` SciFact passages (default 6) with
  the scripted LLM and tiny encoder of geckokit.testing (the run folder is what is tested),
  or ``--real``: the default LLM and initial encoder (each repaired shard is LLM work again).

- ``serve``: ``geckokit serve`` on localhost with the real default encoder, an API key and
  small limits (tests/reliability/serve_cases.py): schemathesis over ``/openapi.json`` with
  all its checks, with and without the key (``--examples`` per operation and phase, seed
  ``--seed``); every hand-made bad request of the suite (invalid JSON, a body over the
  limit, 10,000 inputs, non-string and nested inputs, NUL and lone surrogates, bad
  dimensions, a wrong model or key...); ``--slow`` connections at once that send their body
  a byte every 0.25 s, and as many that send their headers so (half of them: nothing); and ``--clients`` concurrent clients sending ``--rounds`` requests
  each, a fifth of them drawn from the bad requests, while ``/health`` is polled.
- ``llm``: ``geckokit llm-serve`` with the real default model behind a loopback proxy that
  injects faults from a seeded plan (tests/reliability/llm_cases.py, fault_proxy.py): 500,
  429 with a good or bad ``Retry-After``, hangs past the client's time-out, malformed and
  truncated JSON, answers without ``choices`` or their text, connection resets before and
  after the server answered. First a clean ``geckokit generate`` and ``mine`` on the
  ``--passages`` shortest SciFact abstracts give the reference; then a fresh client meets
  each fault in turn on each kind of request; then generate and mine runs, alternately, go
  through faults on ``--fault-rate`` of the requests until ``--faults`` faults have been
  injected, each run rerun after a stop until it finishes; last, ``--kills`` runs have the
  server killed (``kill -9``) and started again in their first sitting.

Columns: cases tried; survived (serve: answered as documented: a good request with the
vectors its texts get alone, a bad one with its documented status and error code, a slow body
with 408 and its connection closed within the timeout, a schemathesis case with no failed
check, and ``/health`` answering throughout; damage: repaired to the rows of an undamaged
run, or refused with an error that says how to repair it while the folder stays as it was);
clear errors (serve: answers that were a 4xx in OpenAI's error shape; damage: runs refused
with such an error); rows lost / duplicated against the undamaged run (areas that write
data); 5xx seen. Each part's row is printed, then the area's. Exits 1 when a case did not
survive, after listing the first ones.

For ``llm`` a case is a run brought to its end: survived when every stop was an error that
names the URL and the fault, kept every finished shard, and the end equals the clean run's
output row for row; clear errors count those stops; rows lost or duplicated are against the
clean run (one figure); 5xx seen are the server's own (the injected ones are listed apart,
by kind).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the suite's cases: tests/reliability/

from tests.reliability.damage_cases import (  # noqa: E402
    KINDS,
    RunTally,
    Setup,
    full_disk,
    run_case,
)
from tests.reliability.fault_proxy import FAULTS, FaultProxy  # noqa: E402
from tests.reliability.llm_cases import RunTally as LLMTally  # noqa: E402
from tests.reliability.llm_cases import (  # noqa: E402
    Stage,
    ask_all,
    clean_run,
    faults_in_turn,
    fit_timeout,
    injected_line,
    log_problems,
    plans,
    small_corpus,
    start_llm_server,
    through_faults,
    with_server_killed,
)
from tests.reliability.serve_cases import (  # noqa: E402
    BAD_REQUESTS,
    KEY,
    Tally,
    check_bad,
    mixed_load,
    reference_vectors,
    run_schemathesis,
    slow_bodies,
    slow_headers,
    start_server,
)

HEADER = (
    "| area | cases tried | survived | clear errors | rows lost or duplicated | 5xx seen |\n"
    "|---|---:|---:|---:|---:|---:|"
)


def row(area: str, tally: Tally | RunTally | LLMTally, seconds: float | None = None) -> str:
    took = f" ({seconds:.0f} s)" if seconds is not None else ""
    rows = "–"
    if isinstance(tally, RunTally):
        rows = f"{tally.rows_lost} / {tally.rows_duplicated}"
    elif isinstance(tally, LLMTally):
        rows = str(tally.rows_lost_or_duplicated)
    return (
        f"| {area}{took} | {tally.tried} | {tally.survived} | {tally.clear_errors} | {rows} "
        f"| {tally.server_errors} |"
    )


def serve_area(args: argparse.Namespace, folder: Path) -> Tally:
    """The server's parts, each printed as it finishes; their sum."""
    total = Tally()
    with start_server(folder) as server:
        parts = [
            (
                "serve: schemathesis, with the key",
                lambda: run_schemathesis(
                    server, folder / "st-key", key=KEY, max_examples=args.examples, seed=args.seed
                ),
            ),
            (
                "serve: schemathesis, without a key",
                lambda: run_schemathesis(
                    server,
                    folder / "st-nokey",
                    key=None,
                    max_examples=args.examples,
                    seed=args.seed,
                ),
            ),
            ("serve: hand-made bad requests", lambda: _bad_requests(server.url)),
            ("serve: bodies sent slowly", lambda: slow_bodies(server, connections=args.slow)),
            (
                "serve: headers sent slowly or not at all",
                lambda: slow_headers(server, connections=args.slow),
            ),
            (
                "serve: good and bad clients at once",
                lambda: mixed_load(
                    server,
                    clients=args.clients,
                    rounds=args.rounds,
                    bad_share=0.2,
                    seed=args.seed,
                    reference=reference_vectors(server.url),
                ),
            ),
        ]
        for name, part in parts:
            start = time.perf_counter()
            tally = part()
            print(row(name, tally, time.perf_counter() - start), flush=True)
            total += tally
        log = server.log_text()
        if "Traceback" in log:
            total.problems.append(f"the server logged a traceback: see {server.log}")
    return total


def _bad_requests(url: str) -> Tally:
    tally = Tally()
    for case in BAD_REQUESTS:
        tally += check_bad(url, case)
    return tally


def llm_area(args: argparse.Namespace, folder: Path) -> Tally:
    """The LLM stages' parts, each printed as it finishes; their sum."""
    total = LLMTally()
    corpus = small_corpus(folder / "corpus.jsonl", args.passages or 4)
    with start_llm_server(folder) as server, FaultProxy(server.url) as proxy:
        start = time.perf_counter()
        clean = {"generate": clean_run(Stage("generate", corpus), proxy, folder / "clean-gen")}
        mine = Stage("mine", corpus, queries=folder / "clean-gen")
        clean["mine"] = clean_run(mine, proxy, folder / "clean-mine")
        reference = ask_all(proxy.url)
        timeout = fit_timeout(proxy, args.llm_timeout)
        print(
            f"<!-- clean runs in {time.perf_counter() - start:.0f} s; the server answered in "
            f"{proxy.slowest:.1f} s at most; client time-out {timeout:g} s -->",
            flush=True,
        )
        stages = {
            name: Stage(
                name, corpus, queries=mine.queries if name == "mine" else None, llm_timeout=timeout
            )
            for name in ("generate", "mine")
        }

        def part(name: str, tally: LLMTally, began: float) -> None:
            print(row(f"llm: {name}", tally, time.perf_counter() - began), flush=True)
            nonlocal total
            total += tally

        began, tally = time.perf_counter(), LLMTally()
        for offset in range(len(FAULTS)):  # request i meets FAULTS[(offset + i) % 10]
            tally += faults_in_turn(proxy, reference, offset=offset, timeout=timeout)
        part("each fault on each kind of request", tally, began)

        runs = {name: LLMTally() for name in stages}
        seconds = dict.fromkeys(stages, 0.0)
        n = 0

        def injected() -> int:
            return sum(total.injected.values()) + sum(
                sum(t.injected.values()) for t in runs.values()
            )

        while args.fault_rate > 0 and injected() < args.faults:
            name = ("generate", "mine")[n % 2]
            began = time.perf_counter()
            runs[name] += through_faults(
                stages[name],
                proxy,
                folder / f"runs/{name}-{n}",
                clean[name],
                plans(args.seed + n, args.fault_rate),
            )
            seconds[name] += time.perf_counter() - began
            n += 1
        for name, tally in runs.items():
            part(f"{name} through faults", tally, time.perf_counter() - seconds[name])

        began, tally = time.perf_counter(), LLMTally()
        for k in range(4 if args.kills is None else args.kills):
            name = ("generate", "mine")[k % 2]
            tally += with_server_killed(
                stages[name],
                server,
                proxy,
                folder / f"killed/{name}-{k}",
                clean[name],
                seed=args.seed + k,
            )
        part("server killed and restarted", tally, began)
        total.problems += log_problems(server.log_text())
    print(f"<!-- {injected_line(total.injected)} -->", flush=True)
    return total


def kill_area(args: argparse.Namespace, folder: Path) -> RunTally:
    """``--kills`` kills inside each stage, then two runs on one folder; a row per stage."""
    import random

    from tests.reliability.kill_cases import STAGES, KillSetup, kill_case, two_runs

    setup = KillSetup(folder, SCIFACT, passages=args.passages or 8)
    start = time.perf_counter()
    setup.undamaged()
    took = {s: round(t, 1) for s, t in setup.durations.items()}
    seconds = time.perf_counter() - start
    print(f"uninterrupted run: {seconds:.0f} s; stages {took}", file=sys.stderr, flush=True)
    total = RunTally()
    for stage in STAGES:
        tally, start = RunTally(), time.perf_counter()
        kills = 10 if args.kills is None else args.kills
        for seed in range(args.seed, args.seed + kills):
            rng = random.Random(f"{seed}:{stage}")
            tally += kill_case(setup, stage, rng, folder / f"kill-{stage}-{seed}")
        print(row(f"kill: inside {stage}", tally, time.perf_counter() - start), flush=True)
        total += tally
    start = time.perf_counter()
    tally = two_runs(setup, random.Random(args.seed), folder / "two-runs")
    print(row("kill: two runs on one folder", tally, time.perf_counter() - start), flush=True)
    total += tally
    return total


def damage_area(args: argparse.Namespace, folder: Path) -> RunTally:
    """Each kind of damage ``--cases`` times, a row per kind; their sum."""
    import logging

    from geckokit.fret import cost

    cost.probe_rates = lambda llm, **_: None  # the estimate's speed probe: not what is measured
    logging.getLogger("geckokit").setLevel(logging.ERROR)  # each repair's warning: expected
    if args.real:
        from geckokit.encoder import EncoderRef
        from geckokit.llm import load_llm

        llm, encoder = load_llm(None), EncoderRef.load("all-minilm-l6-v2")
    else:
        from geckokit.testing import ScriptedLLM, tiny_encoder

        llm, encoder = ScriptedLLM(), tiny_encoder()
    setup = Setup(folder, SCIFACT, llm, encoder, passages=args.passages or 6)
    if args.real:
        setup.atol = None  # llama.cpp's numbers move with its KV cache's history
    total = RunTally()
    for kind in KINDS:
        tally, start = RunTally(), time.perf_counter()
        for seed in range(args.seed, args.seed + args.cases):
            case = folder / f"{kind}-{seed}".replace(" ", "-").replace(",", "")
            tally += run_case(setup, kind, seed, case)
        mode = getattr(full_disk, "mode", "")  # a tmpfs, or ENOSPC simulated where not root
        name = f"damage: {kind}" + (f" ({mode})" if kind == "full disk" else "")
        print(row(name, tally, time.perf_counter() - start), flush=True)
        total += tally
    return total


SCIFACT = ROOT.parent / "shared" / "data" / "beir" / "scifact"
AREAS = {"damage": damage_area, "kill": kill_area, "llm": llm_area, "serve": serve_area}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--area", choices=sorted(AREAS), action="append", help="default: all")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--examples", type=int, default=300, help="schemathesis examples")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients")
    parser.add_argument("--rounds", type=int, default=20, help="requests per client")
    parser.add_argument(
        "--slow", type=int, default=300, help="slow bodies (and slow headers) at once"
    )
    parser.add_argument("--faults", type=int, default=1000, help="llm: faults to inject")
    parser.add_argument("--fault-rate", type=float, default=0.3, help="llm: share faulted")
    parser.add_argument("--cases", type=int, default=50, help="damage: cases of each kind")
    parser.add_argument(
        "--kills",
        type=int,
        default=None,
        help="kill: kills inside each stage (default 10); llm: runs with a server kill (4)",
    )
    parser.add_argument(
        "--passages", type=int, default=None, help="SciFact passages (llm 4, damage 6, kill 8)"
    )
    parser.add_argument(
        "--llm-timeout", type=float, default=20.0, help="llm: client time-out, at least"
    )
    parser.add_argument(
        "--real", action="store_true", help="damage: the real LLM and encoder, not scripted ones"
    )
    parser.add_argument("--keep", type=Path, help="keep the logs and reports in this folder")
    args = parser.parse_args()
    print(HEADER, flush=True)
    problems: list[str] = []
    for area in args.area or sorted(AREAS):
        with tempfile.TemporaryDirectory(prefix=f"reliability-{area}-") as tmp:
            folder = args.keep / area if args.keep else Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            tally = AREAS[area](args, folder)
            print(row(f"**{area}**", tally, time.perf_counter() - start), flush=True)
            problems += [f"{area}: {p}" for p in tally.problems]
    if problems:
        print(f"\n{len(problems)} cases did not survive; the first ones:", file=sys.stderr)
        print("\n".join(problems[:30]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
