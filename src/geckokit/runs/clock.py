"""The clock of a run's stages: each sitting's time, written into the run manifest while the
stage runs, so that a stopped or killed stage keeps the time it spent."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from geckokit.runs.manifest import ENTRY_TYPES, RunManifest, Stage

log = logging.getLogger(__name__)

#: how often a running stage writes its time so far into the run manifest: a sitting
#: killed outright (``kill -9``, a power cut) loses at most this much of it
HEARTBEAT_S = 30.0


@contextmanager
def stage_clock(
    manifest: RunManifest,
    path: Path,
    stage: Stage | str,
    *,
    again: bool = False,
    every: float = HEARTBEAT_S,
) -> Iterator[Callable[..., None]]:
    """Time one sitting of ``stage`` into its entry of ``manifest.stages`` (written to
    ``path``); the body calls the yielded ``done(**info)`` when the stage finishes, with
    what the stage produced (the fields of its :data:`~geckokit.runs.manifest.ENTRY_TYPES`).

    ``seconds`` is the stage's time over every sitting: while the stage runs, its entry says
    ``status: running`` and is rewritten every ``every`` seconds; one stopped by an error or
    Ctrl-C says ``stopped``. The sitting that finishes such a stage (either status: a
    ``running`` entry is one whose process was killed; ``distill``, holding the run's lock,
    marks it ``stopped`` when it starts) adds its time on. ``again``: the
    stage finished before and runs once more (mine re-selecting); its time adds on too.
    The clock writes ``manifest`` from its own thread while the body runs, so the body must
    not change ``manifest``: pass what the stage produced to ``done``."""
    stage = Stage.parse(stage)
    kind = ENTRY_TYPES[stage]
    earlier = manifest.stages.get(stage)
    if earlier is None or (earlier.status is None and not again):
        before, sittings = 0.0, 1
    else:
        before, sittings = earlier.seconds, earlier.sittings + 1
    # an entry rebuilt after the run manifest was lost stays marked: its time is partial
    recovered = {"recovered": True} if earlier is not None and earlier.recovered else {}
    t0 = time.perf_counter()
    lock, stop = threading.Lock(), threading.Event()

    def entry(**info: Any) -> None:
        with lock:
            seconds = round(before + time.perf_counter() - t0, 1)
            record = kind.model_validate(
                {"seconds": seconds, "sittings": sittings, **recovered, **info}
            )
            manifest.stages.put(stage, record)
            manifest.write(path)

    def beat() -> None:
        while not stop.wait(every):
            try:
                entry(status="running")
            except OSError as exc:  # a full disk: the stage's own writes will say so
                log.warning("the run manifest could not be updated: %s", exc)

    def done(**info: Any) -> None:
        halt()
        entry(**info)

    def halt() -> None:
        stop.set()
        if clock.is_alive():
            clock.join()

    entry(status="running")
    clock = threading.Thread(target=beat, name=f"{stage.value}-clock", daemon=True)
    clock.start()
    try:
        yield done
    except BaseException:
        halt()
        manifest.status = f"stopped during {stage.value}"
        try:
            entry(status="stopped")
        except OSError as exc:  # a full disk: the error that stopped the stage matters more
            log.warning("the run manifest could not record the stop: %s", exc)
        raise
    finally:
        halt()
