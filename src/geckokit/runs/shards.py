"""A resumable, sharded loop over a table of work items.

Rows are cut into fixed shards in their given order. A shard is finished when its primary
output file exists; outputs are written secondary-first, primary-last, each atomically, so a
killed run loses at most the shard in flight and never leaves one that looks finished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from geckokit.io import shard_name, write_table

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
) -> ShardRun:
    """Process ``items`` shard by shard with ``stage``; ``split`` turns a shard's result into
    one table per name in ``outputs`` (``outputs[0]`` is the primary, whose file marks the
    shard finished). ``max_shards`` stops after writing that many shards (for tests and
    partial runs). Returns counts; the progress bar shows items, rate and ETA. When the
    output is not a terminal (a log file of a background run), where a live bar does not
    draw, each finished shard prints one plain line with the same figures instead (and no
    bar at the end).
    ``usage``, an LLM's :class:`~geckokit.llm.base.UsageStats`, has the tokens this call
    spent counted into the result's ``llm`` (the backend may have served other work before)."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    n = items.num_rows
    n_shards = (n + shard_size - 1) // shard_size
    primary = outputs[0]
    todo = unfinished_shards(out, primary, n, shard_size)
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
                stage, shard, k, out=out, outputs=outputs, split=split, on_item=bar.advance
            )
            written += 1
            bar.shard_done()
    seconds = time.perf_counter() - t0
    spent = None
    if before is not None and processed:
        spent = {**usage.since(before), "seconds": round(seconds, 1)}
    return ShardRun(n_shards, n_shards - len(todo), written, processed, seconds, spent)


def write_shard(
    stage: Callable[[pa.Table], pa.Table],
    shard: pa.Table,
    index: int,
    *,
    out: Path,
    outputs: tuple[str, ...],
    split: Callable[[pa.Table], dict[str, pa.Table]],
    on_item: Callable[[int], None] | None = None,
) -> int:
    """Run ``stage`` on ``shard`` row by row and write shard number ``index`` of each output
    (secondary outputs first, the primary ``outputs[0]`` last, each atomically); returns the
    rows processed. ``on_item`` is called with 1 after each row (a progress bar). The local
    loop and each Ray worker write a shard through here, so their files are the same."""
    results = []
    for i in range(shard.num_rows):
        results.append(stage(shard.slice(i, 1)))
        if on_item is not None:
            on_item(1)
    parts = split(pa.concat_tables(results) if results else stage(shard.slice(0, 0)))
    for name in (*outputs[1:], outputs[0]):
        write_table(parts[name], out / name / shard_name(index))
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
    output ``primary`` under ``out``) has not finished: those with no primary file."""
    n_shards = (n + shard_size - 1) // shard_size
    return [k for k in range(n_shards) if not (out / primary / shard_name(k)).exists()]


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
