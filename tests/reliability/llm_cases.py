"""FRet's LLM stages through a failing LLM server, shared by tests/reliability/test_llm.py
and, at a larger count, by ``bench/reliability.py --area llm``.

- :func:`start_llm_server`: ``geckokit llm-serve`` with the real default model on localhost,
  which a case may kill (``SIGKILL``) and start again on the same port.
- :class:`~tests.reliability.fault_proxy.FaultProxy` in front of it injects faults
  (:data:`~tests.reliability.fault_proxy.FAULTS`) from a seeded plan.
- :func:`through_faults`: ``geckokit generate`` or ``geckokit mine`` run through the proxy
  as a user would, the same command again after each stop, until it finishes. Each stop
  must be an error that names the URL and the fault, and keep every shard finished before
  it; the end must equal a clean run's output (:func:`clean_run`) row for row, and no
  malformed answer may have become a query or a score.
- :func:`with_server_killed`: the same, with the server killed at a seeded moment of the
  first sitting and started again.

Each returns a :class:`RunTally`: runs tried, survived, clear errors (sittings that stopped
with such an error), rows lost or duplicated against the clean run, 5xx the server itself
answered, and the faults injected.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from geckokit.llm.base import Message
from geckokit.registry import DEFAULT_LLM_TIMEOUT
from tests.conftest import SHARED_DATA, free_port, stop_process, wait_http
from tests.reliability.fault_proxy import FAULTS, FaultPlan, FaultProxy
from tests.reliability.serve_cases import Tally

SHORT_PROMPT = Path(__file__).with_name("generate_short.toml")
SCIFACT = SHARED_DATA / "beir" / "scifact" / "corpus.jsonl"
#: Columns that measure time, which no two runs share.
VOLATILE = frozenset({"seconds"})
#: The tables each stage writes, and the columns that identify a row.
TABLES = {
    "generate": {"queries": ("query_id",), "rejects": ("query_id", "attempt")},
    "mine": {
        "candidates": ("query_id",),
        "scores": ("query_id", "passage_id"),
        "fret": ("query_id",),
    },
}
#: What an error that names the fault says (the HTTP client's words for each).
FAULT_WORDS = (
    "HTTP 5",
    "HTTP 429",
    "malformed JSON",
    "malformed answer",
    "log-probabilities",
    "Timeout",
    "RemoteProtocolError",
    "ReadError",
    "ConnectError",
    "WriteError",
)
SITTINGS = 6  # a run that has not finished after this many sittings did not survive


@dataclass
class RunTally(Tally):
    """:class:`Tally` with what a run writes: rows lost or duplicated against a clean run,
    and the faults the proxy injected (by name)."""

    rows_lost_or_duplicated: int = 0
    injected: Counter[str] = field(default_factory=Counter)

    def __iadd__(self, other: Tally) -> RunTally:
        super().__iadd__(other)
        if isinstance(other, RunTally):
            self.rows_lost_or_duplicated += other.rows_lost_or_duplicated
            self.injected += other.injected
        return self


# ---------------------------------------------------------------------------------------
# the server, the corpus, the commands


@dataclass
class LLMServer:
    """``geckokit llm-serve`` on ``port``; :meth:`kill` and :meth:`start` it at will."""

    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 900.0) -> None:
        command = [sys.executable, "-m", "geckokit.cli.main", "llm-serve", "--n-ctx", "2048"]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=_env())
        wait_http(f"{self.url}/health", self.proc, self.log, timeout=timeout)

    def kill(self) -> None:
        """``kill -9``: no chance to answer what it was computing."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def start_llm_server(folder: Path) -> Iterator[LLMServer]:
    """``geckokit llm-serve`` with the default model, logging to ``folder/llm-serve.log``."""
    server = LLMServer(free_port(), folder / "llm-serve.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def small_corpus(path: Path, passages: int) -> Path:
    """The ``passages`` shortest SciFact abstracts of 300 characters or more, as JSONL:
    cheap prompts, real text."""
    rows = [json.loads(line) for line in SCIFACT.read_text().splitlines()]
    rows = [r for r in rows if len(r["text"]) >= 300]
    rows.sort(key=lambda r: (len(r["title"]) + len(r["text"]), r["_id"]))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:passages]))
    return path


@dataclass(frozen=True)
class Stage:
    """A stage command and what it needs: the corpus, the generate run mine reads (None for
    generate), and the client's time-out."""

    name: str  # generate | mine
    corpus: Path
    queries: Path | None = None
    llm_timeout: float = DEFAULT_LLM_TIMEOUT

    def command(self, llm_url: str, out: Path) -> list[str]:
        common = ["--corpus", str(self.corpus), "--out", str(out), "--llm", f"{llm_url}/v1"]
        common += ["--llm-timeout", f"{self.llm_timeout:g}"]
        if self.name == "generate":
            return ["generate", *common, "--shard-size", "1", "--prompt", str(SHORT_PROMPT)]
        assert self.queries is not None
        return [
            "mine",
            *common,
            "--queries",
            str(self.queries),
            "--top-n",
            "2",
            "--shard-size",
            "1",
            "--passage-tokens",
            "96",
        ]


@dataclass
class Sitting:
    returncode: int
    output: str
    seconds: float


def sit(stage: Stage, llm_url: str, out: Path, *, limit_s: float = 3600.0) -> Sitting:
    """One sitting of ``stage`` against ``llm_url``, as a user runs it."""
    command = [sys.executable, "-m", "geckokit.cli.main", *stage.command(llm_url, out)]
    start = time.monotonic()
    done = subprocess.run(
        command, capture_output=True, text=True, env=_env(), timeout=limit_s, check=False
    )
    return Sitting(done.returncode, done.stdout + done.stderr, time.monotonic() - start)


def clean_run(stage: Stage, proxy: FaultProxy, out: Path) -> dict[str, list[dict[str, Any]]]:
    """The stage's output through ``proxy`` injecting nothing: the reference, and the
    server's answer times (:attr:`FaultProxy.slowest`) for :func:`fit_timeout`."""
    proxy.use(FaultPlan(seed=0, rate=0.0))
    sitting = sit(stage, proxy.url, out)
    if sitting.returncode != 0:
        raise RuntimeError(f"the clean {stage.name} run failed:\n{sitting.output[-3000:]}")
    return read_output(stage.name, out)


def fit_timeout(proxy: FaultProxy, floor: float) -> float:
    """A client time-out for the runs through faults: three times the longest the server
    took to answer so far (requests abandoned after a fault keep it busy), at least
    ``floor``; the proxy's hangs last 2 s longer. On a machine other jobs share, a fixed
    small time-out would also cut off answers that were merely slow."""
    timeout = max(floor, 3.0 * proxy.slowest)
    proxy.hang_s = timeout + 2.0
    return round(timeout)


# ---------------------------------------------------------------------------------------
# the output


def read_output(stage: str, out: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table ``stage`` writes, without the columns that measure time,
    in a fixed order."""
    tables: dict[str, list[dict[str, Any]]] = {}
    for name in TABLES[stage]:
        files = sorted((out / name).glob("part-*.parquet"))
        rows: list[dict[str, Any]] = []
        for file in files:
            rows += pq.read_table(file).to_pylist()
        rows = [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]
        tables[name] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))
    return tables


def finished_shards(out: Path) -> dict[str, str]:
    """The finished shards under ``out``: path -> sha256 of the file."""
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("part-*.parquet"))
    }


def compare(
    stage: str, clean: dict[str, list[dict[str, Any]]], got: dict[str, list[dict[str, Any]]]
) -> tuple[int, list[str]]:
    """Rows lost or duplicated (or extra) against the clean run, and what differs."""
    bad = 0
    problems: list[str] = []
    for name, key in TABLES[stage].items():
        want = Counter(tuple(r[k] for k in key) for r in clean[name])
        have = Counter(tuple(r[k] for k in key) for r in got.get(name, []))
        lost = sum((want - have).values())
        extra = sum((have - want).values())
        if lost or extra:
            bad += lost + extra
            problems.append(f"{name}: {lost} rows lost, {extra} duplicated or extra")
        elif clean[name] != got[name]:
            diff = next((a, b) for a, b in zip(clean[name], got[name], strict=True) if a != b)
            problems.append(f"{name}: a row differs from the clean run's: {diff[1]} != {diff[0]}")
    return bad, problems


def locked(out: Path) -> bool:
    """Whether a process holds ``out``'s run lock (the file stays; its lock goes with the
    process that held it)."""
    import fcntl

    from geckokit.runs.folder import LOCK_FILE

    path = out / LOCK_FILE
    if not path.exists():
        return False
    with path.open("rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def clear_error(output: str, url: str) -> str | None:
    """What is wrong with a stopped sitting's output (None: a clear error that names the
    server's URL and the fault, and no traceback)."""
    if "Traceback" in output:
        return "a traceback instead of an error line"
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    if not lines:
        return "no error line"
    text = " ".join(output[output.index("error:") :].split())
    if url not in text:
        return f"the error does not name {url}: {lines[0][:300]}"
    if not any(word in text for word in FAULT_WORDS):
        return f"the error does not name the fault: {text[:300]}"
    return None


# ---------------------------------------------------------------------------------------
# the cases


def through_faults(
    stage: Stage,
    proxy: FaultProxy,
    out: Path,
    clean: dict[str, list[dict[str, Any]]],
    plans: Sequence[FaultPlan],
    *,
    during_first: Any = None,
) -> RunTally:
    """``stage`` through ``proxy``, one sitting per plan in ``plans`` (the last plan again
    for any further sitting, up to :data:`SITTINGS`), until it finishes. ``during_first``:
    a callable run in a thread beside the first sitting (a server kill), given an event set
    when that sitting is over."""
    tally = RunTally()
    problems: list[str] = []
    clear = 0
    before_injected = proxy.injected.copy()
    before_5xx = proxy.upstream_5xx
    finished = False
    for n in range(SITTINGS):
        proxy.use(plans[min(n, len(plans) - 1)])
        kept = finished_shards(out)
        helper, over = None, threading.Event()
        if n == 0 and during_first is not None:
            helper = threading.Thread(target=during_first, args=(over,), daemon=True)
            helper.start()
        sitting = sit(stage, proxy.url, out)
        over.set()
        if helper is not None:
            helper.join()
        now = finished_shards(out)
        changed = [p for p, digest in kept.items() if now.get(p) != digest]
        if changed:
            problems.append(f"sitting {n + 1} rewrote or lost finished shards: {changed[:3]}")
        if sitting.returncode == 0:
            finished = True
            break
        wrong = clear_error(sitting.output, proxy.url)
        if wrong is not None:
            problems.append(f"sitting {n + 1} stopped without a clear error ({wrong})")
            break
        clear += 1
    proxy.use(FaultPlan(seed=0, rate=0.0))
    if locked(out):
        problems.append("the run folder is still locked")
    lost = 0
    if not finished:
        problems.append(f"{stage.name} did not finish in {SITTINGS} sittings")
    else:
        lost, differs = compare(stage.name, clean, read_output(stage.name, out))
        problems += differs
    tally.tried = 1
    tally.survived = int(not problems)
    tally.clear_errors = clear
    tally.server_errors = proxy.upstream_5xx - before_5xx
    tally.rows_lost_or_duplicated = lost
    tally.injected = proxy.injected - before_injected
    tally.problems = [f"{stage.name} ({out.name}): {p}" for p in problems]
    return tally


def plans(seed: int, rate: float, *, kinds: Sequence[str] | None = None) -> list[FaultPlan]:
    """A plan per sitting, each seeded from ``seed`` and the sitting's number."""
    chosen = FAULTS if kinds is None else tuple(kinds)
    return [FaultPlan(seed=seed * 1000 + n, rate=rate, kinds=chosen) for n in range(SITTINGS)]


def with_server_killed(
    stage: Stage,
    server: LLMServer,
    proxy: FaultProxy,
    out: Path,
    clean: dict[str, list[dict[str, Any]]],
    *,
    seed: int,
    rate: float = 0.0,
    after: tuple[int, int] = (1, 3),
) -> RunTally:
    """:func:`through_faults` with the server killed in the first sitting, once the proxy
    has forwarded a seeded number of its requests (from ``after``: the kill lands in the
    sitting's LLM work however fast the machine is), and started again at once (the model
    loads again: the sitting's requests fail meanwhile)."""
    wanted = random.Random(seed).randint(*after)
    killed: list[bool] = []

    def kill_and_restart(over: threading.Event) -> None:
        start = proxy.forwarded
        while proxy.forwarded - start < wanted:
            if over.wait(0.05):
                return  # the sitting ended first: nothing to kill it in
        server.kill()
        server.start()
        killed.append(True)

    tally = through_faults(
        stage, proxy, out, clean, plans(seed, rate), during_first=kill_and_restart
    )
    if killed:
        tally.injected["server killed"] += 1
    else:
        tally.problems.append(
            f"{stage.name}: the sitting ended before {wanted} requests reached the server"
        )
        tally.survived = 0
    return tally


def injected_line(injected: Counter[str]) -> str:
    """The faults injected, by name, as one line."""
    total = sum(injected.values())
    parts = ", ".join(f"{kind} {n}" for kind, n in sorted(injected.items()))
    return f"{total} faults injected: {parts or 'none'}"


def log_problems(log: str) -> list[str]:
    """What the server's log shows went wrong inside it (tracebacks, 500s)."""
    found = []
    if "Traceback" in log:
        found.append("the LLM server logged a traceback")
    if re.search(r'" 500 ', log):
        found.append("the LLM server answered a 500")
    return found


# ---------------------------------------------------------------------------------------
# one fault of each kind, through the HTTP client alone

CHAT: list[Message] = [{"role": "user", "content": "Name the capital of France in one word."}]
PREFIX = "Passage: Honey bees tell each other where flowers are by dancing.\nQuery:"
QUERY = " how do bees communicate"
QUESTION: list[Message] = [{"role": "user", "content": "Is Paris in France? Answer Yes or No."}]


def ask_all(url: str, **client_options: Any) -> tuple[Any, ...]:
    """What a fresh client gets from ``url`` for the three kinds of request FRet sends: a
    chat generated at temperature 0, a continuation's log-probabilities (echo; the probe
    first), a yes/no label."""
    from geckokit.llm import yes_no_labels
    from geckokit.llm.openai_http import OpenAICompatibleLLM

    client = OpenAICompatibleLLM(f"{url}/v1", **client_options)
    try:
        text = client.generate([CHAT], max_tokens=8, temperature=0.0)[0].text
        score = client.score([PREFIX], [QUERY])[0]
        label = client.label_logprobs([QUESTION], yes_no_labels())[0]
        return text, score.tokens, score.token_logprobs, label
    finally:
        client.close()


#: Requests :func:`ask_all` sends: the model list, a chat, the echo probe, an echo, a label.
ASK_ALL_REQUESTS = 5


def faults_in_turn(
    proxy: FaultProxy, reference: tuple[Any, ...], *, offset: int, timeout: float
) -> RunTally:
    """One fresh client's :func:`ask_all` through ``proxy``, the i-th request meeting fault
    ``FAULTS[(offset + i) % len(FAULTS)]`` on its first try: the answers must equal
    ``reference`` (the server's, straight). One case."""
    from geckokit.llm.openai_http import LLMServerError

    tally = RunTally()
    before_injected, before_5xx = proxy.injected.copy(), proxy.upstream_5xx
    plan = FaultPlan(seed=offset, rate=1.0, first_tries=1, in_turn=True, offset=offset)
    proxy.use(plan)
    kinds = [FAULTS[(offset + i) % len(FAULTS)] for i in range(ASK_ALL_REQUESTS)]
    problem = None
    try:
        got = ask_all(proxy.url, timeout=timeout, backoff=0.05)
        if got != reference:
            problem = f"{kinds}: answers differ from the server's: {got} != {reference}"
    except LLMServerError as exc:
        problem = f"{kinds}: {exc}"
    finally:
        proxy.use(FaultPlan(seed=0, rate=0.0))
    tally.record(None, problem)
    tally.server_errors = proxy.upstream_5xx - before_5xx
    tally.injected = proxy.injected - before_injected
    return tally
