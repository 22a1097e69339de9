"""Damaged run folders, shared by tests/reliability/test_damaged_runs.py and, at a larger
count, by ``bench/reliability.py --area damage``.

Each case makes a run folder the way a run leaves it (SciFact passages; the LLM and initial
encoder a :class:`Setup` holds), damages it the way a person or a disk would, reruns the
same command and checks what docs/run-folders.md promises: the damage is repaired (the
damaged file made again, the output equal to an undamaged run's) or the run is refused with
a clear error that says how to repair it and leaves the folder as it was; a damaged file is
never read as finished, and two runs' rows are never mixed. The kinds (:data:`KINDS`):

- ``cut short``, ``emptied``, ``byte flipped``: a finished shard of generate (queries/,
  rejects/) or of mine (scores/, candidates/, fret/), then the same command again;
- ``other corpus``: a half-finished generate resumed with another corpus of the same size;
- ``other seed, no manifest``: generate's manifest.json deleted, rerun with another seed;
- ``other top-n, no manifest``: mine's manifest.json deleted, rerun with another top_n;
- ``copied shard``: a shard of a run over another corpus copied into a finished run;
- ``run manifest lost``, ``run manifest garbled``, ``run manifest and copy lost``: a
  finished distill run's own manifest.json; the rerun keeps (or rebuilds) its history and
  still prints the results table;
- ``damaged in a finished distill``: any Parquet file of a finished distill run cut short;
- ``full disk``: the run folder on a tmpfs too small for the run (``mount -t tmpfs``,
  as root); where mounting is not allowed, ENOSPC raised by the Parquet writer after part
  of a file is written (:func:`full_disk` says which).

Random choices (which file, where it is cut, how small the disk) come from a seeded
generator, so a failure replays with the same seed. Training and mteb are replaced by
recorders in the distill cases (:func:`quick_training`): what is tested is the run folder.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import random
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pyarrow as pa

from geckokit.corpus import Corpus, load_corpus
from geckokit.encoder import EncoderRef
from geckokit.fret.generate import GenerateConfig
from geckokit.fret.generate_run import OUTPUTS, generate_queries
from geckokit.fret.mine_run import MineConfig, mine
from geckokit.io import DiskFullError, read_shards
from geckokit.pipeline.distill import DistillConfig, run_distill
from geckokit.runs.folder import RunMismatchError
from geckokit.runs.manifest import RunManifest, damaged_tables

KINDS = (
    "cut short",
    "emptied",
    "byte flipped",
    "other corpus",
    "other seed, no manifest",
    "other top-n, no manifest",
    "copied shard",
    "run manifest lost",
    "run manifest garbled",
    "run manifest and copy lost",
    "damaged in a finished distill",
    "full disk",
)
#: columns that differ between two runs of the same work (timing, the prompt cache)
VOLATILE = {"seconds", "prompt_tokens"}
#: the columns that name a row, where a table has them; a mixture's rows have no ids, and
#: are named by their text
IDS = ("query_id", "passage_id", "attempt")
TEXT_IDS = ("task", "query", "source")


@dataclass
class RunTally:
    """One area's row: cases tried, survived (repaired to an undamaged run's output, or
    refused with a clear error that leaves the folder as it was), clear errors, rows lost
    and duplicated, and a line per case that did not survive."""

    tried: int = 0
    survived: int = 0
    clear_errors: int = 0
    rows_lost: int = 0
    rows_duplicated: int = 0
    server_errors: int = 0  # no server here: the serve area's column
    problems: list[str] = field(default_factory=list)

    def __iadd__(self, other: RunTally) -> RunTally:
        for name in ("tried", "survived", "clear_errors", "rows_lost", "rows_duplicated"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.problems += other.problems
        return self


@dataclass
class Setup:
    """What the cases share: a folder for their runs, the LLM and initial encoder, two
    corpora of ``passages`` SciFact passages each (``a``; ``b``, the next ones), and the
    undamaged runs each case compares with (made once, on first use)."""

    root: Path
    scifact: Path
    llm: Any
    encoder: EncoderRef
    passages: int = 4
    shard_size: int = 2
    top_n: int = 3
    #: how far a number made again may be from the undamaged run's (0 for the scripted LLM);
    #: None: rows are compared by what names them alone, for llama.cpp, whose scores (and so
    #: the positives chosen from them) move with what its KV cache held before
    atol: float | None = 0.0
    made: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        both = load_corpus(self.scifact, limit=2 * self.passages)
        n = self.passages
        self.a = dataclasses.replace(both, passages=both.passages.slice(0, n))
        self.b = dataclasses.replace(both, passages=both.passages.slice(n, n))

    def generate(self, out: Path, corpus: Corpus | None = None, **kw: Any) -> dict[str, Any]:
        return generate_queries(
            corpus or self.a,
            out,
            llm=self.llm,
            shard_size=self.shard_size,
            show_progress=False,
            **kw,
        )

    def mine(self, out: Path, top_n: int | None = None) -> dict[str, Any]:
        return mine(
            self.undamaged("generate a"),
            self.a,
            out,
            llm=self.llm,
            encoder=self.encoder,
            config=MineConfig(top_n=top_n or self.top_n),
            shard_size=self.shard_size,
            show_progress=False,
        )

    def distill_config(self) -> DistillConfig:
        return DistillConfig.model_validate(
            {
                "corpus": str(self.scifact),
                "limit": self.passages,
                "encoder": self.encoder.name,
                "eval": [str(self.scifact)],
                "mine": {"top_n": self.top_n},
                "train": {"batch_size": 2},
            }
        )

    def distill(self, out: Path) -> RunManifest:
        with quick_training():
            return run_distill(
                self.distill_config(), out, llm=self.llm, encoder=self.encoder, show_progress=False
            )

    def undamaged(self, what: str) -> Path:
        """The folder of an undamaged run: ``generate a``, ``generate b``, ``mine a`` or
        ``distill``."""
        if what not in self.made:
            out = self.root / "undamaged" / what.replace(" ", "-")
            if what == "generate a":
                self.generate(out)
            elif what == "generate b":
                self.generate(out, self.b)
            elif what == "mine a":
                self.mine(out)
            else:
                self.distill(out)
            self.made[what] = out
        return self.made[what]


# -- what a run wrote, and how two compare


def rows(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Every table under ``folder`` (its shards read together) without :data:`VOLATILE`
    columns, its rows in a stable order."""
    found: dict[str, list[dict[str, Any]]] = {}
    for sub in sorted({p.parent for p in folder.rglob("part-*.parquet")}):
        table = read_shards(sub)
        assert table is not None
        keep = [c for c in table.column_names if c not in VOLATILE]
        found[str(sub.relative_to(folder))] = sorted(
            table.select(keep).to_pylist(), key=lambda r: json.dumps(r, sort_keys=True)
        )
    return found


def identity(row: dict[str, Any]) -> str:
    """What names a row: its :data:`IDS` columns, else its :data:`TEXT_IDS`, else the
    whole row."""
    ids = {k: row[k] for k in IDS if k in row} or {k: row[k] for k in TEXT_IDS if k in row}
    return json.dumps(ids or row, sort_keys=True, default=str)


def close(a: Any, b: Any, atol: float) -> bool:
    """Equal, or numbers (and lists of them) within ``atol`` of each other."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or abs(a - b) <= atol or (a != a and b != b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, atol) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], atol) for k in a)
    return bool(a == b)


def compare(
    got: Path, expected: Path, tally: RunTally, case: str, *, atol: float | None = 0.0
) -> bool:
    """Count the rows ``got`` lost or holds twice against ``expected`` (rows named by
    :func:`identity`); a problem line for any difference, a row whose values differ (beyond
    ``atol`` for numbers; None: values not compared) included. True when they agree."""
    want, have = rows(expected), rows(got)
    problems = []
    for table in sorted(set(want) | set(have)):
        w: dict[str, list[dict[str, Any]]] = {}
        h: dict[str, list[dict[str, Any]]] = {}
        for found, into in ((want.get(table, []), w), (have.get(table, []), h)):
            for row in found:
                into.setdefault(identity(row), []).append(row)
        lost = sum(max(0, len(r) - len(h.get(k, []))) for k, r in w.items())
        extra = sum(max(0, len(r) - len(w.get(k, []))) for k, r in h.items() if k in w)
        new = sum(len(r) for k, r in h.items() if k not in w)
        changed = sum(
            1
            for k, r in w.items()
            for a, b in zip(r, h.get(k, []), strict=False)
            if atol is not None and not close(a, b, atol)
        )
        tally.rows_lost += lost
        tally.rows_duplicated += extra
        if lost or extra or new or changed:
            problems.append(
                f"{table}: {lost} rows lost, {extra} duplicated, {new} not in the undamaged "
                f"run, {changed} changed"
            )
    if problems:
        tally.problems.append(f"{case}: " + "; ".join(problems))
    return not problems


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def refused(
    call: Callable[[], Any], folder: Path, tally: RunTally, case: str, *, words: tuple[str, ...]
) -> bool:
    """Whether ``call`` was refused with a :class:`RunMismatchError` whose message holds
    ``words`` (what is wrong, how to repair it) and left ``folder`` as it was."""
    before = snapshot(folder)
    try:
        call()
    except RunMismatchError as exc:
        message = str(exc)
        missing = [w for w in words if w not in message]
        if missing:
            tally.problems.append(f"{case}: the error does not say {missing}: {message}")
            return False
        if snapshot(folder) != before:
            tally.problems.append(f"{case}: refused, but the folder changed")
            return False
        tally.clear_errors += 1
        return True
    tally.problems.append(f"{case}: the run was not refused")
    return False


# -- damage


def damage(path: Path, how: str, rng: random.Random) -> None:
    """Cut ``path`` short at a random byte, empty it, or flip one random byte."""
    data = bytearray(path.read_bytes())
    if how == "cut short":
        data = data[: rng.randrange(len(data))]
    elif how == "emptied":
        data = bytearray()
    else:
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))


def _copy(source: Path, folder: Path) -> Path:
    shutil.copytree(source, folder)
    return folder


def damaged_shard(setup: Setup, rng: random.Random, folder: Path, how: str) -> RunTally:
    """A finished generate or mine run with one of its Parquet files damaged, rerun."""
    tally = RunTally(tried=1)
    stage = rng.choice(["generate a", "mine a"])
    _copy(setup.undamaged(stage), folder)
    target = rng.choice(sorted(folder.rglob("*.parquet")))
    case = f"{how}: {stage.split()[0]}'s {target.relative_to(folder)}"
    damage(target, how, rng)
    rerun = (
        (lambda: setup.generate(folder)) if stage == "generate a" else lambda: setup.mine(folder)
    )
    try:
        manifest = rerun()
    except Exception as exc:  # refused as another run's, or any error: it did not survive
        tally.problems.append(f"{case}: {type(exc).__name__}: {exc}")
        return tally
    if manifest["status"] != "finished":
        tally.problems.append(f"{case}: status {manifest['status']}")
    elif compare(folder, setup.undamaged(stage), tally, case, atol=setup.atol):
        tally.survived += 1
    return tally


def other_corpus(setup: Setup, rng: random.Random, folder: Path) -> RunTally:
    """Half of generate run over corpus a, resumed over corpus b of the same size: refused,
    and the folder still resumes over a to the undamaged output."""
    tally, case = RunTally(tried=1), "other corpus"
    setup.generate(folder, max_shards=rng.randint(1, _shards(setup) - 1))
    ok = refused(
        lambda: setup.generate(folder, setup.b), folder, tally, case, words=("other input rows",)
    )
    setup.generate(folder)
    tally.survived += ok and compare(
        folder, setup.undamaged("generate a"), tally, case, atol=setup.atol
    )
    return tally


def other_seed(setup: Setup, rng: random.Random, folder: Path) -> RunTally:
    """generate's manifest.json deleted from a half-finished run, rerun with another seed."""
    tally, case = RunTally(tried=1), "other seed, no manifest"
    setup.generate(folder, max_shards=rng.randint(1, _shards(setup)))
    (folder / "manifest.json").unlink()
    seed = rng.randint(1, 999)
    ok = refused(
        lambda: setup.generate(folder, config=GenerateConfig(seed=seed)),
        folder,
        tally,
        case,
        words=(f"config.seed: 0 there, {seed} now", "delete those files"),
    )
    setup.generate(folder)
    tally.survived += ok and compare(
        folder, setup.undamaged("generate a"), tally, case, atol=setup.atol
    )
    return tally


def other_top_n(setup: Setup, rng: random.Random, folder: Path) -> RunTally:
    """mine's manifest.json deleted from a finished run, rerun with another top_n."""
    tally, case = RunTally(tried=1), "other top-n, no manifest"
    _copy(setup.undamaged("mine a"), folder)
    (folder / "manifest.json").unlink()
    top_n = setup.top_n + rng.randint(1, 3)
    ok = refused(
        lambda: setup.mine(folder, top_n=top_n),
        folder,
        tally,
        case,
        words=(f"top_n: {setup.top_n} there, {top_n} now", "delete"),
    )
    setup.mine(folder)
    tally.survived += ok and compare(
        folder, setup.undamaged("mine a"), tally, case, atol=setup.atol
    )
    return tally


def copied_shard(setup: Setup, rng: random.Random, folder: Path) -> RunTally:
    """A shard of a run over corpus b copied into a finished run over a: refused; deleting
    it, as the error says, repairs the run."""
    tally, case = RunTally(tried=1), "copied shard"
    _copy(setup.undamaged("generate a"), folder)
    other = setup.undamaged("generate b")
    name = f"part-{rng.randrange(_shards(setup)):05d}.parquet"
    output = rng.choice(OUTPUTS)
    shutil.copy(other / output / name, folder / output / name)
    ok = refused(
        lambda: setup.generate(folder), folder, tally, case, words=(f"{output}/{name}", "delete")
    )
    (folder / output / name).unlink()
    setup.generate(folder)
    tally.survived += ok and compare(
        folder, setup.undamaged("generate a"), tally, case, atol=setup.atol
    )
    return tally


def run_manifest(setup: Setup, rng: random.Random, folder: Path, how: str) -> RunTally:
    """A finished distill run's manifest.json lost, garbled, or lost with its copy: the
    rerun keeps its history (or rebuilds what the stages produced and says the rest is
    lost) and the summary still prints the results table."""
    from rich.console import Console

    from geckokit.cli.distill import print_summary

    tally, case = RunTally(tried=1), how
    source = setup.undamaged("distill")
    _copy(source, folder)
    before = RunManifest.read(source)
    assert before is not None
    manifest = folder / "manifest.json"
    if how == "run manifest garbled":
        data = manifest.read_bytes()
        manifest.write_bytes(data[: rng.randrange(len(data))])
    else:
        manifest.unlink()
    if how == "run manifest and copy lost":
        (folder / ".manifest.json.bak").unlink()
    after = setup.distill(folder)
    console = Console(record=True, width=200, file=io.StringIO())
    print_summary(console, after, folder)
    shown = console.export_text()
    problems = []
    if "held-out retrieval" not in shown or "distilled" not in shown:
        problems.append("the results table is not printed")
    if not after.notes or "note:" not in shown:
        problems.append("nothing says what happened to the manifest")
    if how == "run manifest and copy lost":
        if "history before this sitting" not in " ".join(after.notes):
            problems.append("the lost history is not reported")
        if after.stages.eval is None or after.stages.eval.results != before.stages.eval.results:  # type: ignore[union-attr]
            problems.append("the results were not read again from eval/")
    elif _history(after) != _history(before):
        problems.append("the stages' history changed")
    if how == "run manifest garbled" and not (folder / "manifest.json.damaged").exists():
        problems.append("the garbled manifest was not set aside")
    if problems:
        tally.problems.append(f"{case}: {'; '.join(problems)}")
    elif compare(folder, source, tally, case, atol=setup.atol):
        tally.survived += 1
    return tally


def _history(manifest: RunManifest) -> dict[str, Any]:
    """The stages' entries, but the report's (written anew at each sitting)."""
    return {k: v for k, v in manifest.stages.dump().items() if k != "report"}


def damaged_in_distill(setup: Setup, rng: random.Random, folder: Path) -> RunTally:
    """Any Parquet file of a finished distill run cut short: the rerun notices, makes it
    again, and ends with the undamaged run's rows."""
    source = setup.undamaged("distill")
    _copy(source, folder)
    target = rng.choice(sorted(folder.rglob("*.parquet")))
    tally, case = RunTally(tried=1), f"damaged in a finished distill: {target.relative_to(folder)}"
    damage(target, "cut short", rng)
    try:
        manifest = setup.distill(folder)
    except Exception as exc:  # any other error: a case that did not survive
        tally.problems.append(f"{case}: {type(exc).__name__}: {exc}")
        return tally
    if manifest.status != "finished" or damaged_tables(folder):
        tally.problems.append(f"{case}: status {manifest.status}, damaged {damaged_tables(folder)}")
    elif compare(folder, source, tally, case, atol=setup.atol):
        tally.survived += 1
    return tally


@contextmanager
def full_disk(folder: Path, pages: int) -> Iterator[Callable[[], None]]:
    """``folder`` on a tmpfs of ``pages`` 4 KiB pages; yields a function that gives the
    disk room again. Where mounting is not allowed, Parquet writes raise ENOSPC after half
    of the file instead, from the ``pages``-th on (the function stops that)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={pages * 4096}", "tmpfs", str(folder)],
        capture_output=True,
    )
    if mounted.returncode == 0:
        full_disk.mode = "tmpfs"  # type: ignore[attr-defined]

        def room() -> None:
            subprocess.run(["mount", "-o", "remount,size=64m", str(folder)], check=True)

        try:
            yield room
        finally:
            subprocess.run(["umount", str(folder)], check=False)
        return
    full_disk.mode = "simulated"  # type: ignore[attr-defined]
    import geckokit.io

    real, calls = geckokit.io.pq.write_table, [0]
    state = {"full": True}

    def write(table: pa.Table, where: Any, **kwargs: Any) -> None:
        calls[0] += 1
        if state["full"] and calls[0] >= pages:
            real(table.slice(0, table.num_rows // 2), where, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device")
        real(table, where, **kwargs)

    with mock.patch.object(geckokit.io.pq, "write_table", write):
        yield lambda: state.update(full=False)


def disk_fills(setup: Setup, rng: random.Random, folder: Path) -> RunTally:
    """generate on a disk too small for its output: a clear error, no file that reads as
    finished but is not whole, and once there is room the same command finishes it."""
    from geckokit.runs.shards import check_shards

    tally = RunTally(tried=1)
    expected = setup.undamaged("generate a")
    files = sum(1 for p in expected.rglob("*") if p.is_file())
    pages = rng.randint(1, files)  # each file takes a page at least, and one more in flight
    case = f"full disk of {pages} pages"
    with full_disk(folder, pages) as room:
        case += f" ({full_disk.mode})"  # type: ignore[attr-defined]
        try:
            setup.generate(folder)
            tally.problems.append(f"{case}: the run did not fail")
            return tally
        except DiskFullError as exc:
            if "free some space" not in str(exc) or "rerun the same command" not in str(exc):
                tally.problems.append(f"{case}: the error does not say how to go on: {exc}")
                return tally
            tally.clear_errors += 1
        leftovers = [p.name for p in folder.rglob(".*tmp-*")]
        done = sorted(p.name for p in folder.rglob("part-*.parquet"))
        check = check_shards(
            setup.a.passages, out=folder, outputs=OUTPUTS, shard_size=setup.shard_size, key=None
        )
        if leftovers or damaged_tables(folder) or check.damaged:
            tally.problems.append(
                f"{case}: left {leftovers} and damaged {damaged_tables(folder)} of {done}"
            )
            return tally
        room()
        setup.generate(folder)
        tally.survived += compare(folder, expected, tally, case, atol=setup.atol)
    return tally


def _shards(setup: Setup) -> int:
    return (setup.passages + setup.shard_size - 1) // setup.shard_size


def run_case(setup: Setup, kind: str, seed: int, folder: Path) -> RunTally:
    """One case of ``kind`` (:data:`KINDS`) with the generator seeded by ``seed``."""
    rng = random.Random(f"{kind}:{seed}")
    if kind in ("cut short", "emptied", "byte flipped"):
        return damaged_shard(setup, rng, folder, kind)
    if kind.startswith("run manifest"):
        return run_manifest(setup, rng, folder, kind)
    cases: dict[str, Callable[[Setup, random.Random, Path], RunTally]] = {
        "other corpus": other_corpus,
        "other seed, no manifest": other_seed,
        "other top-n, no manifest": other_top_n,
        "copied shard": copied_shard,
        "damaged in a finished distill": damaged_in_distill,
        "full disk": disk_fills,
    }
    return cases[kind](setup, rng, folder)


# -- training and mteb, replaced by recorders in the distill cases


@contextmanager
def quick_training() -> Iterator[None]:
    """``geckokit distill``'s training and mteb evaluation replaced by recorders that write
    what their stages leave (a model folder, a manifest with a loss curve; an eval manifest
    with result rows as mteb's would hold them): the run folder is what is tested."""
    import geckokit.evaluate.run
    import geckokit.train.trainer

    def train(mix: Path, out: Path, *, config: Any, prefinetune: Any) -> dict[str, Any]:
        assert read_shards(mix / "mixture") is not None
        (out / "model").mkdir(parents=True, exist_ok=True)
        curve = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
        manifest = {"stage": "train", "steps": 2, "loss_curve": curve}
        (out / "manifest.json").write_text(json.dumps(manifest))
        return {"steps": 2, "loss_curve": curve}

    def evaluate(models: list[str], tasks: list[str], *, out: Path, **kwargs: Any) -> pa.Table:
        base, distilled = models
        results = [
            {"model": m, "format": f, "dim": 384, "task": "scifact", "kind": "retrieval"}
            | {"metric": "ndcg_at_10"}
            | {"score": s, "recall_at_10": 0.8}
            for m, f, s in [(base, "plain", 0.5), (base, "gecko", 0.6), (distilled, "gecko", 0.7)]
        ]
        Path(out).mkdir(parents=True, exist_ok=True)
        manifest = {"stage": "eval", "results": results}
        (Path(out) / "manifest.json").write_text(json.dumps(manifest))
        return pa.Table.from_pylist(results)

    with (
        mock.patch.object(geckokit.train.trainer, "train", train),
        mock.patch.object(geckokit.evaluate.run, "evaluate", evaluate),
    ):
        yield
