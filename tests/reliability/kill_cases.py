"""``kill -9`` of ``geckokit distill`` at random moments inside each stage, shared by
tests/reliability/test_kill_resume.py and, at a larger count, by ``bench/reliability.py
--area kill``.

:class:`KillSetup` runs the real command (``python -m geckokit.cli.main distill``) with the
default LLM and encoder on eight SciFact passages (three neighbours each, two training steps
of batch 2, evaluation on a small BEIR folder cut from SciFact's test split), once without a
stop: the reference. :func:`kill_case` starts the same command in a fresh folder, waits until
the run manifest says the chosen stage is running, waits a seeded random part of that stage's
reference time, and kills the whole process group with SIGKILL; then the lock must be free,
and the same command again must finish with the reference's rows: none lost or twice, the
generated queries identical (their text), the other rows compared by what names them
(llama.cpp's scores move with what its KV cache held before, which is not a resume's doing).
:func:`two_runs` starts a second run on a folder a first one is writing: it must be refused,
naming the first one's pid.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.reliability.damage_cases import RunTally, compare

ROOT = Path(__file__).resolve().parents[2]
#: The stages a kill lands in, in order
STAGES = ("generate", "mine", "mix", "train", "eval")
#: The longest a run may take here (a loaded machine of 2 cores)
RUN_TIMEOUT_S = 1800.0


def small_benchmark(scifact: Path, folder: Path, *, queries: int = 3, docs: int = 12) -> Path:
    """A BEIR folder of ``queries`` SciFact test claims, their relevant documents and other
    documents up to ``docs``: an evaluation that takes seconds."""
    qrels = [
        line.split("\t") for line in (scifact / "qrels" / "test.tsv").read_text().splitlines()[1:]
    ]
    chosen = sorted({q for q, _, _ in qrels}, key=int)[:queries]
    relevant = [(q, d) for q, d, _ in qrels if q in chosen]
    wanted = {d for _, d in relevant}
    corpus = []
    with open(scifact / "corpus.jsonl") as lines:
        for line in lines:
            doc = json.loads(line)
            if doc["_id"] in wanted or len(corpus) < docs - len(wanted):
                corpus.append(line)
            if len(corpus) >= docs and wanted <= {json.loads(c)["_id"] for c in corpus}:
                break
    queries_text = [
        line
        for line in (scifact / "queries.jsonl").read_text().splitlines(keepends=True)
        if json.loads(line)["_id"] in chosen
    ]
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(corpus))
    (folder / "queries.jsonl").write_text("".join(queries_text))
    rows = "".join(f"{q}\t{d}\t1\n" for q, d in relevant)
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return folder


@dataclass
class KillSetup:
    """The command, its small inputs and the reference run (made on first use)."""

    root: Path
    scifact: Path
    #: enough that a training batch of 2 can draw distinct texts (4 cannot)
    passages: int = 8
    reference: Path | None = None
    #: each stage's time in the reference run, seconds
    durations: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.benchmark = small_benchmark(self.scifact, self.root / "benchmark")

    def command(self, out: Path) -> list[str]:
        return [
            *(sys.executable, "-m", "geckokit.cli.main", "distill"),
            *("--corpus", str(self.scifact), "--limit", str(self.passages)),
            *("--top-n", "3", "--batch-size", "2", "--max-steps", "2"),
            *("--eval", str(self.benchmark), "--out", str(out)),
        ]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        path = [str(ROOT / "src"), str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
        env["PYTHONPATH"] = os.pathsep.join(path)
        return env

    def start(self, out: Path, log: Path) -> subprocess.Popen[bytes]:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as sink:
            return subprocess.Popen(
                self.command(out),
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=self.env(),
                start_new_session=True,  # its own process group: killed whole
            )

    def run(self, out: Path, log: Path) -> int:
        proc = self.start(out, log)
        try:
            return proc.wait(timeout=RUN_TIMEOUT_S)
        finally:
            if proc.poll() is None:
                kill(proc)

    def undamaged(self) -> Path:
        """The reference run's folder (made once)."""
        if self.reference is None:
            out = self.root / "reference"
            rc = self.run(out, self.root / "reference.log")
            if rc != 0:
                raise RuntimeError(
                    f"the reference run failed ({rc}): see {self.root}/reference.log"
                )
            stages = json.loads((out / "manifest.json").read_text())["stages"]
            self.durations = {s: float(stages[s]["seconds"]) for s in STAGES}
            self.reference = out
        return self.reference


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL to ``proc``'s whole process group, and wait for it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def running_stage(out: Path) -> str | None:
    """The stage the run manifest says is running (None: none, or no manifest yet)."""
    try:
        stages = json.loads((out / "manifest.json").read_text()).get("stages", {})
    except (FileNotFoundError, ValueError):
        return None
    running = [s for s, e in stages.items() if e.get("status") == "running"]
    return running[-1] if running else None


def wait_for(out: Path, stage: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait until ``stage`` (or a later one) runs; False if the process ended first."""
    later = set(STAGES[STAGES.index(stage) :])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running_stage(out) in later:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def lock_free(out: Path) -> bool:
    """Whether no process holds ``out``'s run lock."""
    path = out / ".lock"
    if not path.exists():
        return True
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def finished_like_reference(setup: KillSetup, out: Path, tally: RunTally, case: str) -> bool:
    """Whether ``out`` ended as the reference did: status, rows (none lost or twice), the
    queries' text, the model, the evaluation; no lock held and no temporary file left."""
    reference = setup.undamaged()
    manifest: dict[str, Any] = json.loads((out / "manifest.json").read_text())
    problems = []
    if manifest.get("status") != "finished":
        problems.append(f"status {manifest.get('status')}")
    if not (out / "train" / "model").is_dir():
        problems.append("no model")
    results = (manifest["stages"].get("eval") or {}).get("results") or []
    if [r["model"] for r in results] != ["base", "base (unified format)", "distilled"]:
        problems.append(f"eval results {results}")
    if not lock_free(out):
        problems.append("the lock is held")
    left = [str(p.relative_to(out)) for p in out.rglob("*.tmp*")]
    if left:
        problems.append(f"temporary files left: {left}")
    if problems:
        tally.problems.append(f"{case}: {'; '.join(problems)}")
        return False
    same = compare(out, reference, tally, case, atol=None)
    texts = RunTally()  # the queries' text too, but their rows are counted once
    if not compare(out / "queries", reference / "queries", texts, f"{case}: queries' text"):
        tally.problems += texts.problems
        return False
    return same


def kill_case(
    setup: KillSetup,
    stage: str,
    rng: random.Random,
    folder: Path,
    *,
    within: float | None = None,
) -> RunTally:
    """One kill inside ``stage``, at a random moment of its reference time (of its first
    ``within`` seconds when given: an early kill costs less to wait for), then the same
    command to the end."""
    setup.undamaged()
    tally = RunTally(tried=1)
    log = folder.parent / f"{folder.name}.log"
    proc = setup.start(folder, log)
    try:
        if not wait_for(folder, stage, proc, RUN_TIMEOUT_S):
            tally.problems.append(f"kill in {stage}: the run ended before {stage} ran (see {log})")
            return tally
        span = 0.9 * setup.durations.get(stage, 1.0)
        time.sleep(rng.uniform(0, span if within is None else min(span, within)))
        landed = running_stage(folder) or "between stages"
    finally:
        kill(proc)
    case = f"kill in {stage} (landed in {landed})"
    if not lock_free(folder):
        tally.problems.append(f"{case}: the lock is still held after the kill")
        return tally
    rc = setup.run(folder, log)
    if rc != 0:
        tally.problems.append(f"{case}: the rerun failed ({rc}); see {log}")
        return tally
    tally.survived += finished_like_reference(setup, folder, tally, case)
    return tally


def kill_in_turn(
    setup: KillSetup,
    stages: tuple[str, ...],
    rng: random.Random,
    folder: Path,
    *,
    within: float | None = None,
) -> RunTally:
    """One run killed once inside each of ``stages`` in turn (each kill at a random moment
    of the stage's first ``within`` seconds, then the same command again), and a second run
    started on the folder while the first is writing it (refused, naming the first one's
    pid); then the command to the end, which must match the reference: a case per kill, and
    one for the second run. What :func:`kill_case` and :func:`two_runs` check, at the cost
    of about one run instead of two per case."""
    setup.undamaged()
    tally = RunTally()
    log = folder.parent / f"{folder.name}.log"
    cases = []
    for n, stage in enumerate(stages):
        tally.tried += 1
        proc = setup.start(folder, log)
        try:
            if not wait_for(folder, stage, proc, RUN_TIMEOUT_S):
                tally.problems.append(
                    f"kill in {stage}: the run ended before {stage} ran (see {log})"
                )
                return tally
            if n == 0:
                tally.tried += 1
                refused = second_run_refused(setup, folder, proc, tally)
                tally.survived += refused
            span = 0.9 * setup.durations.get(stage, 1.0)
            time.sleep(rng.uniform(0, span if within is None else min(span, within)))
            cases.append(f"kill in {stage} (landed in {running_stage(folder) or 'between stages'})")
        finally:
            kill(proc)
        if not lock_free(folder):
            tally.problems.append(f"{cases[-1]}: the lock is still held after the kill")
            return tally
    rc = setup.run(folder, log)
    name = ", then ".join(cases)
    if rc != 0:
        tally.problems.append(f"{name}: the rerun failed ({rc}); see {log}")
        return tally
    if finished_like_reference(setup, folder, tally, name):
        tally.survived += len(cases)
    return tally


def second_run_refused(
    setup: KillSetup, folder: Path, first: subprocess.Popen[bytes], tally: RunTally
) -> bool:
    """Start the command on ``folder`` while ``first`` writes it: it must be refused at
    once, naming the first one's pid (a clear error in ``tally``; else a problem there)."""
    second = subprocess.run(
        setup.command(folder), capture_output=True, text=True, env=setup.env(), timeout=600
    )
    said = second.stdout + second.stderr
    if second.returncode == 2 and f"in use by another geckokit run (pid {first.pid})" in said:
        tally.clear_errors += 1
        return True
    tally.problems.append(
        f"two runs on one folder: the second was not refused ({second.returncode}): {said}"
    )
    return False


def two_runs(setup: KillSetup, rng: random.Random, folder: Path) -> RunTally:
    """A second run started on a folder a first one is writing: refused at once, naming
    the first one's pid; the first killed, the folder then resumes to the reference."""
    setup.undamaged()
    tally, case = RunTally(tried=1), "two runs on one folder"
    log = folder.parent / f"{folder.name}.log"
    first = setup.start(folder, log)
    try:
        if not wait_for(folder, rng.choice(STAGES[:2]), first, RUN_TIMEOUT_S):
            tally.problems.append(f"{case}: the first run ended early (see {log})")
            return tally
        refused = second_run_refused(setup, folder, first, tally)
    finally:
        kill(first)
    if not refused:
        return tally
    rc = setup.run(folder, log)
    if rc != 0:
        tally.problems.append(f"{case}: the rerun failed ({rc}); see {log}")
        return tally
    tally.survived += finished_like_reference(setup, folder, tally, case)
    return tally
