"""Reliability: the cases of tests/reliability/ at a larger count, one table row per area.

    python bench/reliability.py --area serve                    # the default counts
    python bench/reliability.py --area serve --examples 25 --clients 16 --rounds 2 --slow 20

Areas:

- ``serve``: ``geckokit serve`` on localhost with the real default encoder, an API key and
  small limits (tests/reliability/serve_cases.py): schemathesis over ``/openapi.json`` with
  all its checks, with and without the key (``--examples`` per operation and phase, seed
  ``--seed``); every hand-made bad request of the suite (invalid JSON, a body over the
  limit, 10,000 inputs, non-string and nested inputs, NUL and lone surrogates, bad
  dimensions, a wrong model or key...); ``--slow`` connections at once that send their body
  a byte every 0.25 s; and ``--clients`` concurrent clients sending ``--rounds`` requests
  each, a fifth of them drawn from the bad requests, while ``/health`` is polled.

Columns: cases tried; survived (answered as documented: a good request with the vectors its
texts get alone, a bad one with its documented status and error code, a slow body with 408
and its connection closed within the timeout, a schemathesis case with no failed check, and
``/health`` answering throughout); clear errors (answers that were a 4xx in OpenAI's error
shape); rows lost or duplicated (areas that write data; none here); 5xx seen. Each part's
row is printed, then the area's. Exits 1 when a case did not survive, after listing the
first ones.
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

from tests.reliability.serve_cases import (  # noqa: E402
    BAD_REQUESTS,
    KEY,
    Tally,
    check_bad,
    mixed_load,
    reference_vectors,
    run_schemathesis,
    slow_bodies,
    start_server,
)

HEADER = (
    "| area | cases tried | survived | clear errors | rows lost or duplicated | 5xx seen |\n"
    "|---|---:|---:|---:|---:|---:|"
)


def row(area: str, tally: Tally, seconds: float | None = None) -> str:
    took = f" ({seconds:.0f} s)" if seconds is not None else ""
    return (
        f"| {area}{took} | {tally.tried} | {tally.survived} | {tally.clear_errors} | – "
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


AREAS = {"serve": serve_area}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--area", choices=sorted(AREAS), action="append", help="default: all")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--examples", type=int, default=300, help="schemathesis examples")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients")
    parser.add_argument("--rounds", type=int, default=20, help="requests per client")
    parser.add_argument("--slow", type=int, default=300, help="slow bodies at once")
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
