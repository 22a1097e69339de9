"""The clock of a run's stages: each sitting's time, written into the run manifest while the
stage runs, so that a stopped or killed stage keeps the time it spent."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from geckokit.io import write_json

#: how often a running stage writes its time so far into the run manifest: a sitting
#: killed outright (``kill -9``, a power cut) loses at most this much of it
HEARTBEAT_S = 30.0


@contextmanager
def stage_clock(
    manifest: dict[str, Any],
    path: Path,
    stage: str,
    *,
    again: bool = False,
    every: float = HEARTBEAT_S,
) -> Iterator[Callable[..., None]]:
    """Time one sitting of ``stage`` into ``manifest["stages"][stage]`` (written to
    ``path``); the body calls the yielded ``done(**info)`` when the stage finishes.

    ``seconds`` is the stage's time over every sitting: while the stage runs, its entry says
    ``status: running`` and is rewritten every ``every`` seconds; one stopped by an error or
    Ctrl-C says ``stopped``. The sitting that finishes such a stage (either status: a
    ``running`` entry is one whose process was killed; ``distill``, holding the run's lock,
    marks it ``stopped`` when it starts) adds its time on. ``again``: the
    stage finished before and runs once more (mine re-selecting); its time adds on too.
    The clock writes ``manifest`` from its own thread while the body runs, so the body must
    not change ``manifest``: pass what the stage produced to ``done``."""
    earlier = manifest["stages"].get(stage) or {}
    if earlier.get("status") not in ("stopped", "running") and not again:
        earlier = {}
    before, sittings = earlier.get("seconds", 0.0), earlier.get("sittings", 0) + 1
    t0 = time.perf_counter()
    lock, stop = threading.Lock(), threading.Event()

    def entry(**info: Any) -> None:
        with lock:
            seconds = round(before + time.perf_counter() - t0, 1)
            manifest["stages"][stage] = {"seconds": seconds, "sittings": sittings, **info}
            write_json(manifest, path)

    def beat() -> None:
        while not stop.wait(every):
            entry(status="running")

    def done(**info: Any) -> None:
        halt()
        entry(**info)

    def halt() -> None:
        stop.set()
        if clock.is_alive():
            clock.join()

    entry(status="running")
    clock = threading.Thread(target=beat, name=f"{stage}-clock", daemon=True)
    clock.start()
    try:
        yield done
    except BaseException:
        halt()
        manifest["status"] = f"stopped during {stage}"
        entry(status="stopped")
        raise
    finally:
        halt()
