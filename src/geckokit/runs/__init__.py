"""Run folders shared by every stage: the lock and settings check of a folder
(:mod:`~geckokit.runs.folder`), the resumable sharded loop (:mod:`~geckokit.runs.shards`)
and what each of its files records it was made from (:mod:`~geckokit.runs.stamps`),
the clock that times each stage into the run manifest (:mod:`~geckokit.runs.clock`), and the
stage names and manifests as typed models (:mod:`~geckokit.runs.manifest`).

Infrastructure below the stages: it imports only the core (:mod:`geckokit.io`), and fret,
pipeline and the CLI import it.
"""

from __future__ import annotations

from geckokit.runs.clock import stage_clock
from geckokit.runs.folder import (
    LOCK_FILE,
    RunLockedError,
    RunMismatchError,
    check_run,
    holds_run_lock,
    open_run,
    run_lock,
    with_defaults,
)
from geckokit.runs.manifest import RunManifest, Stage
from geckokit.runs.shards import ShardRun, run_sharded, unfinished_rows

__all__ = [
    "LOCK_FILE",
    "RunLockedError",
    "RunManifest",
    "RunMismatchError",
    "ShardRun",
    "Stage",
    "check_run",
    "holds_run_lock",
    "open_run",
    "run_lock",
    "run_sharded",
    "stage_clock",
    "unfinished_rows",
    "with_defaults",
]
