"""A resumable, sharded loop over a table of work items.

Rows are cut into fixed shards in their given order. Outputs are written secondary-first,
primary-last, each atomically, so a killed run loses at most the shard in flight and never
leaves one that looks finished.

Each shard file records what it was made from, its *stamp* (:mod:`geckokit.runs.stamps`):
a digest of its input rows and the settings that shape its output (a
:class:`~geckokit.runs.stamps.ShardKey`), sealed with a digest of the file's own rows and
of the stamp itself. A shard is finished when every one of its output files reads back whole
(page checksums verified, the seals checked) and its stamp matches the rows and settings the
run now has. Before a run resumes,
:func:`check_shards` sorts the files it finds:

- damaged (cut short, empty, garbled anywhere): deleted and made again;
- made from other input rows (another corpus of the same size, a shard copied from another
  run) or with other settings: the run is refused with
  :class:`~geckokit.runs.folder.RunMismatchError` naming the files, never mixed;
- written before shards were stamped: trusted when they read back whole.

The stamp does not depend on the run folder's manifests, so this holds when they are lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from geckokit.io import DamagedFileError, shard_name, write_table
from geckokit.runs.folder import RunMismatchError, with_defaults
from geckokit.runs.stamps import ShardKey, read_stamped, stamped

log = logging.getLogger(__name__)


@dataclass
class ShardRun:
    shards_total: int
    shards_skipped: int
    shards_written: int
    items_processed: int
    seconds: float
    #: what this call cost the LLM whose ``usage`` was passed (tokens and seconds), when it
    #: processed any item: a stage manifest's ``llm_this_run``
    llm: dict[str, Any] | None = None
    #: damaged shards found, deleted and made again (or left to make, with max_shards)
    shards_repaired: int = 0


@dataclass
class ShardCheck:
    """What :func:`check_shards` found in a run folder."""

    #: the shards to (re)make, in order
    todo: list[int]
    #: damaged shard files, by shard: each with what is wrong
    damaged: dict[int, list[str]] = field(default_factory=dict)
    #: files this run did not make: path and why (other input rows, other settings, ...)
    foreign: list[tuple[Path, str]] = field(default_factory=list)
    #: finished shards written before shards were stamped (not checked against the input)
    unstamped: int = 0

    def refuse_foreign(self, out: Path, description: str) -> None:
        """Raise :class:`RunMismatchError` naming the files that another run made."""
        if not self.foreign:
            return
        by_reason: dict[str, list[str]] = {}
        for path, why in self.foreign:
            by_reason.setdefault(why, []).append(str(path.relative_to(out)))
        found = "; ".join(
            f"{why}: {', '.join(paths[:3])}" + (f" and {len(paths) - 3} more" if paths[3:] else "")
            for why, paths in by_reason.items()
        )
        raise RunMismatchError(
            f"{description}: {out} holds shards this run did not make ({found}). Other input "
            "rows mean another corpus, sample or limit, or a shard copied from another run. "
            "Rerun with the inputs and settings that made them to resume, or delete those files "
            "to make them again (or use another --out folder)"
        )


def check_shards(
    items: pa.Table,
    *,
    out: Path,
    outputs: tuple[str, ...],
    shard_size: int,
    key: ShardKey | None,
) -> ShardCheck:
    """Sort the shard files of ``outputs`` under ``out`` for a run over ``items`` (see the
    module docstring). Without a ``key`` only whether each file reads back whole is checked."""
    n = items.num_rows
    n_shards = (n + shard_size - 1) // shard_size
    check = ShardCheck(todo=[])
    for k in range(n_shards):
        if not (out / outputs[0] / shard_name(k)).exists():
            check.todo.append(k)
            continue
        shard = items.slice(k * shard_size, shard_size)
        expected = key.stamp(k, shard) if key is not None else None
        unstamped = False
        for name in outputs:
            path = out / name / shard_name(k)
            problem, stamp = _inspect(path, expected, key)
            if problem is None:
                unstamped = unstamped or stamp is None
            elif problem.startswith("is "):  # damaged or missing
                check.damaged.setdefault(k, []).append(f"{path.relative_to(out)} {problem}")
            else:
                check.foreign.append((path, problem))
                break  # the shard is refused: one of its files names it
        if k in check.damaged:
            check.todo.append(k)
        else:
            check.unstamped += unstamped
    for name in outputs:
        for path in sorted((out / name).glob("part-*.parquet")):
            index = _index(path)
            if index is not None and index >= n_shards:
                check.foreign.append((path, f"beyond this run's {n_shards} shards"))
    return check


def _index(path: Path) -> int | None:
    digits = path.name.removeprefix("part-").removesuffix(".parquet")
    return int(digits) if digits.isdigit() else None


def _inspect(
    path: Path, expected: dict[str, Any] | None, key: ShardKey | None
) -> tuple[str | None, dict[str, Any] | None]:
    """What is wrong with one shard file (None: nothing) and its stamp."""
    if not path.exists():
        return "is missing", None
    try:
        _, stamp = read_stamped(path)
    except DamagedFileError as exc:
        return f"is damaged {str(exc).removeprefix(f'{path} is damaged ')}", None
    if stamp is None or expected is None or key is None:
        return None, stamp
    if stamp.get("input_sha256") != expected["input_sha256"]:
        return "made from other input rows", stamp
    was = with_defaults(key.defaults, stamp.get("settings") or {})
    if was != key.settings:
        changed = ", ".join(
            f"{k}: {v!r} there, {w!r} now" for k, v, w in _differences(was, key.settings)[:3]
        )
        return f"made with other settings ({changed})", stamp
    return None, stamp


def _differences(was: Any, now: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """The dotted settings whose values differ, leaf by leaf through nested tables."""
    if isinstance(was, dict) and isinstance(now, dict):
        return [
            d
            for k in sorted(set(was) | set(now))
            for d in _differences(was.get(k), now.get(k), f"{prefix}{k}.")
        ]
    return [] if was == now else [(prefix.rstrip("."), was, now)]


def resumable_shards(
    items: pa.Table,
    *,
    out: Path,
    outputs: tuple[str, ...],
    shard_size: int,
    key: ShardKey | None,
    description: str,
) -> ShardCheck:
    """:func:`check_shards`, then what a run does with what it found: files another run
    made refuse the run; damaged shards are deleted (every output's file) to be made again."""
    check = check_shards(items, out=out, outputs=outputs, shard_size=shard_size, key=key)
    check.refuse_foreign(out, description)
    for k, problems in check.damaged.items():
        log.warning(
            "%s: shard %d is damaged and will be made again: %s",
            description,
            k,
            "; ".join(problems),
        )
        for name in outputs:
            (out / name / shard_name(k)).unlink(missing_ok=True)
    if check.unstamped:
        log.info(
            "%s: %d finished shards were written before shards recorded their input; "
            "they are kept unchecked",
            description,
            check.unstamped,
        )
    return check


def run_sharded(
    items: pa.Table,
    *,
    out: Path,
    outputs: tuple[str, ...],
    shard_size: int,
    stage: Callable[[pa.Table], pa.Table],
    split: Callable[[pa.Table], dict[str, pa.Table]],
    description: str = "working",
    max_shards: int | None = None,
    show_progress: bool = True,
    usage: Any = None,
    key: ShardKey | None = None,
    checked: ShardCheck | None = None,
) -> ShardRun:
    """Process ``items`` shard by shard with ``stage``; ``split`` turns a shard's result into
    one table per name in ``outputs`` (``outputs[0]`` is the primary, whose file marks the
    shard finished). ``max_shards`` stops after writing that many shards (for tests and
    partial runs). Returns counts; the progress bar shows items, rate and ETA. When the
    output is not a terminal (a log file of a background run), where a live bar does not
    draw, each finished shard prints one plain line with the same figures instead (and no
    bar at the end).
    ``usage``, an LLM's :class:`~geckokit.llm.base.UsageStats`, has the tokens this call
    spent counted into the result's ``llm`` (the backend may have served other work before).
    ``key`` says what shapes the output besides the rows: each shard is stamped with it, and
    a rerun checks the finished shards against it (:func:`resumable_shards`); None stamps
    nothing and checks only that the files read back whole. ``checked``: that check, made
    already by the caller (before it recorded the run as started, so that a refused run
    leaves the folder as it was)."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    n = items.num_rows
    n_shards = (n + shard_size - 1) // shard_size
    check = checked or resumable_shards(
        items, out=out, outputs=outputs, shard_size=shard_size, key=key, description=description
    )
    todo = check.todo
    done_items = n - sum(min(shard_size, n - k * shard_size) for k in todo)
    if done_items:
        log.info(
            "%s: %d of %d shards already finished, resuming",
            description,
            n_shards - len(todo),
            n_shards,
        )
    t0 = time.perf_counter()
    before = usage.copy() if usage is not None else None
    written = processed = 0
    with ShardProgress(description, total=n, completed=done_items, show=show_progress) as bar:
        for k in todo:
            if max_shards is not None and written >= max_shards:
                break
            shard = items.slice(k * shard_size, shard_size)
            processed += write_shard(
                stage,
                shard,
                k,
                out=out,
                outputs=outputs,
                split=split,
                on_item=bar.advance,
                stamp=key.stamp(k, shard) if key is not None else None,
            )
            written += 1
            bar.shard_done()
    seconds = time.perf_counter() - t0
    spent = None
    if before is not None and processed:
        spent = {**usage.since(before), "seconds": round(seconds, 1)}
    return ShardRun(
        n_shards, n_shards - len(todo), written, processed, seconds, spent, len(check.damaged)
    )


@runtime_checkable
class BatchedStage(Protocol):
    """A stage that gains from being handed several rows at once (an LLM stage that writes or
    scores them together, or sends them to servers concurrently): :func:`write_shard` calls
    it on ``rows_per_call`` rows at a time instead of one. Its rows must not depend on
    which rows share a call beyond what the stage documents."""

    rows_per_call: int

    def __call__(self, rows: pa.Table) -> pa.Table: ...


def write_shard(
    stage: Callable[[pa.Table], pa.Table],
    shard: pa.Table,
    index: int,
    *,
    out: Path,
    outputs: tuple[str, ...],
    split: Callable[[pa.Table], dict[str, pa.Table]],
    on_item: Callable[[int], None] | None = None,
    stamp: dict[str, Any] | None = None,
) -> int:
    """Run ``stage`` on ``shard`` row by row (a :class:`BatchedStage`: ``rows_per_call``
    rows at a time) and write shard number ``index`` of each output (secondary outputs
    first, the primary ``outputs[0]`` last, each atomically, each carrying ``stamp``:
    :meth:`ShardKey.stamp`); returns the rows processed. ``on_item`` is called with the
    rows done after each call (a progress bar). The local loop and each Ray worker write a
    shard through here, so their files are the same."""
    step = max(1, stage.rows_per_call) if isinstance(stage, BatchedStage) else 1
    results = []
    for i in range(0, shard.num_rows, step):
        rows = shard.slice(i, step)
        results.append(stage(rows))
        if on_item is not None:
            on_item(rows.num_rows)
    parts = split(pa.concat_tables(results) if results else stage(shard.slice(0, 0)))
    for name in (*outputs[1:], outputs[0]):
        write_table(stamped(parts[name], stamp), out / name / shard_name(index))
    return int(shard.num_rows)


class ShardProgress:
    """The progress of a sharded run: a live bar (items, rate, ETA) on a terminal; off a
    terminal (a log file of a background run), where a live bar does not draw, one plain
    line with the same figures per finished shard instead. ``show=False``: nothing."""

    def __init__(self, description: str, *, total: int, completed: int, show: bool) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        self.console = Console()
        self.show = show
        self.live = show and self.console.is_terminal
        self.progress = Progress(
            *columns, console=self.console, disable=not self.live, transient=False
        )
        self.bar = self.progress.add_task(description, total=total, completed=completed, rate="")
        self.done = 0
        self.t0 = time.perf_counter()

    def __enter__(self) -> ShardProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def advance(self, items: int) -> None:
        """Count ``items`` more processed."""
        self.done += items
        elapsed = time.perf_counter() - self.t0
        rate = f"{60 * self.done / elapsed:.1f}/min" if elapsed > 0 else ""
        self.progress.update(self.bar, advance=items, rate=rate)

    def shard_done(self) -> None:
        """A shard is written: off a terminal, print its line."""
        if self.show and not self.live:
            self.console.print(_plain_line(self.progress.tasks[self.bar]))


def unfinished_shards(out: Path, primary: str, n: int, shard_size: int) -> list[int]:
    """The shards of ``n`` items that :func:`run_sharded` (same ``shard_size``, primary
    output ``primary`` under ``out``) has not finished: those whose primary file is missing
    or does not read back whole (their stamps are checked when the run resumes)."""
    n_shards = (n + shard_size - 1) // shard_size
    return [k for k in range(n_shards) if not _readable(out / primary / shard_name(k))]


def _readable(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        read_stamped(path)
    except DamagedFileError:
        return False
    return True


def unfinished_rows(out: Path, primary: str, n: int, shard_size: int) -> list[int]:
    """Indices of the ``n`` items in :func:`unfinished_shards`."""
    return [
        i
        for k in unfinished_shards(out, primary, n, shard_size)
        for i in range(k * shard_size, min(n, (k + 1) * shard_size))
    ]


def _plain_line(task: Any) -> str:
    """The bar's own figures as one line, for output that is not a terminal:
    ``description: done/total (pct), rate, ETA``."""
    done, total = int(task.completed), int(task.total or 0)
    left = task.time_remaining
    eta = f"{left / 60:.0f} min" if left is not None else "unknown"
    rate = task.fields.get("rate") or "rate unknown"
    return f"{task.description}: {done}/{total} ({done / max(1, total):.0%}), {rate}, ETA {eta}"
