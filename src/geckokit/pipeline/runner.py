"""The loop that runs a pipeline's stages into one run folder, and the one place that
decides what a rerun resumes, redoes or refuses.

A stage is a :class:`Step`: a name and a folder (its :class:`~geckokit.runs.manifest.Stage`),
the settings that identify its output, and a ``run``. :func:`run_stages` holds the run
folder's lock, then:

1. compares the settings with those the folder recorded (``config.json``): each changed
   setting leaves stale the first stage it affects (:func:`first_stage`) and every stage
   after it; a stale stage that has already started (its folder exists) is refused with
   :class:`~geckokit.runs.folder.RunMismatchError`, one not started yet simply runs with the
   new settings. A setting a stage takes *in place* (mine's selection: it chooses again from
   its stored scores) leaves only the later stages stale;
2. decides each stage's :class:`Action`: skipped when finished with these settings, run
   again when finished but an in-place setting changed, run (resuming its own finished
   shards) otherwise, or off when the settings do not ask for it;
3. runs the stages up to ``until`` in order, timing each sitting into the run manifest
   (:func:`~geckokit.runs.clock.stage_clock`) and recording what it produced there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from geckokit.io import MANIFEST, environment
from geckokit.runs.clock import stage_clock
from geckokit.runs.folder import (
    RunMismatchError,
    read_record,
    run_lock,
    with_defaults,
    write_record,
)
from geckokit.runs.manifest import ENTRY_TYPES, RunManifest, Stage, finished
from geckokit.types import ClosedSet

log = logging.getLogger(__name__)

#: The run folder's record of the settings it was run with.
CONFIG_FILE = "config.json"


class Action(ClosedSet):
    """What a sitting does with a stage."""

    RUN = "run"  # not finished: run it (its own finished shards are kept)
    AGAIN = "again"  # finished, but an in-place setting changed: run once more over its output
    SKIP = "skip"  # finished with these settings
    OFF = "off"  # these settings do not ask for it


class Step:
    """One stage of a run. Subclasses set the class attributes and ``run``; the defaults
    of the other methods suit a stage whose folder manifest says when it finished."""

    stage: ClassVar[Stage]
    #: what the stage does, in a few words (the CLI and the docs show it)
    title: ClassVar[str] = ""
    #: settings (config keys; dotted for one of a nested table) whose change leaves this
    #: stage's output stale, and every later stage's; a more specific key of another stage
    #: wins (``mine.fusion`` is taken in place though ``mine`` belongs to mine)
    settings: ClassVar[tuple[str, ...]] = ()
    #: settings this stage takes in place: a change runs it again over its own output and
    #: leaves only the later stages stale
    in_place: ClassVar[tuple[str, ...]] = ()
    #: settings that only say how this stage drives its model (how many sequences the LLM
    #: decodes together): a change leaves no output stale
    driving: ClassVar[tuple[str, ...]] = ()

    def __init__(self, out: Path) -> None:
        self.out = out

    @property
    def name(self) -> str:
        return self.stage.value

    @property
    def folder(self) -> Path:
        return self.out / self.stage.folder

    def wanted(self) -> bool:
        """Whether the settings ask for this stage at all."""
        return True

    def finished(self) -> bool:
        """Whether its folder holds its finished output."""
        return finished(self.folder, self.stage)

    def current(self) -> bool:
        """Whether its finished output was made with the in-place settings asked for now."""
        return True

    def run(self) -> dict[str, Any]:
        """Run (or resume) the stage; returns what its run-manifest entry records."""
        raise NotImplementedError

    def history(self) -> dict[str, Any] | None:
        """What the run-manifest entry of this finished stage records of its output, read
        again from its folder (for a run manifest that was lost); None: nothing to read."""
        return None

    def after(self, manifest: RunManifest) -> None:
        """Called once the stage has run or been skipped (records paths, frees memory)."""


def _matches(setting: str, key: str) -> bool:
    return setting == key or setting.startswith(key + ".")


def first_stage(setting: str, steps: Sequence[type[Step]]) -> Stage:
    """The first of ``steps`` whose output a change of ``setting`` (a config key, dotted for
    a nested one: ``mine.top_n``) leaves stale: the stage that declares it, or the one after
    the stage that takes it in place; the most specific declaration wins. A setting no stage
    declares affects the first stage."""
    found, depth = steps[0].stage, 0
    for i, step in enumerate(steps):
        declared = [(k, step.stage) for k in step.settings]
        if i + 1 < len(steps):
            declared += [(k, steps[i + 1].stage) for k in step.in_place]
        for key, stage in declared:
            if _matches(setting, key) and key.count(".") + 1 > depth:
                found, depth = stage, key.count(".") + 1
    return found


def _changed(saved: Any, current: Any, prefix: str = "") -> Iterator[str]:
    """The dotted keys whose values differ, leaf by leaf through nested tables."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in sorted(set(saved) | set(current)):
            yield from _changed(saved.get(key), current.get(key), f"{prefix}{key}.")
    elif saved != current:
        yield prefix.rstrip(".")


def check_settings(
    steps: Sequence[type[Step]], out: Path, settings: dict[str, Any], defaults: dict[str, Any]
) -> str | None:
    """Refuse ``settings`` when they differ from those ``out`` recorded in a way that leaves
    a started stage stale (see the module docstring), else record them (with a copy:
    :func:`~geckokit.runs.folder.write_record`). ``defaults``: each setting's default, for a
    record written before a setting existed (it ran with it). Returns a note when the record
    was missing or damaged: restored from its copy, or lost with stages started (then the
    finished stages are kept unchecked; the sharded ones still check their own shards)."""
    saved, note = read_record(out / CONFIG_FILE)
    started = [f"{s.stage.folder}/" for s in steps if (out / s.stage.folder).is_dir()]
    if saved is None and started:
        note = note or f"{out / CONFIG_FILE} was missing, with no copy"
        note += (
            f": the settings {', '.join(started)} ran with are unknown, so they were not "
            "compared with these (the shards of queries/ and mine/ are checked against their "
            "own records); delete the folders of stages to redo them with these settings"
        )
        return note
    if saved is not None:
        saved = with_defaults(defaults, saved)
        driving = {k for step in steps for k in step.driving}
        changed = [
            k
            for t in settings
            for k in _changed(saved.get(t), settings[t], f"{t}.")
            if k not in driving
        ]
        stages = list(Stage)
        firsts = [stages.index(first_stage(k, steps)) for k in changed]
        stale = [s.stage for s in steps if firsts and stages.index(s.stage) >= min(firsts)]
        started = [s.folder for s in stale if (out / s.folder).is_dir()]
        if started:
            names = sorted({k.split(".")[0] for k in changed})
            raise RunMismatchError(
                f"{out} holds a distill run with other settings ({', '.join(names)}) and its "
                f"{', '.join(f + '/' for f in started)} already ran with the old ones; rerun "
                "with the same settings to resume, delete those folders to redo them, or use "
                "another --out folder"
            )
    write_record(settings, out / CONFIG_FILE)
    return note


def plan(steps: Sequence[Step]) -> dict[Stage, Action]:
    """What this sitting does with each stage (see :class:`Action`)."""
    actions = {}
    for step in steps:
        if not step.wanted():
            actions[step.stage] = Action.OFF
        elif not step.finished():
            actions[step.stage] = Action.RUN
        else:
            actions[step.stage] = Action.SKIP if step.current() else Action.AGAIN
    return actions


def run_stages(
    steps: Sequence[Step],
    out: Path,
    *,
    until: Stage,
    settings: dict[str, Any],
    defaults: dict[str, Any],
    prepare: Callable[[dict[Stage, Action], RunManifest], None] | None = None,
    on_stage: Callable[[Step, Action], None] | None = None,
) -> RunManifest:
    """Run (or resume) ``steps`` into ``out`` up to and including ``until`` and return the
    run manifest (also ``out/manifest.json``). ``prepare`` is called with the plan before
    any stage runs (to estimate and load what the stages to run need); ``on_stage`` before
    each stage runs or is skipped (to show it). While it runs, another process that opens
    ``out`` fails with :class:`~geckokit.runs.folder.RunLockedError`."""
    last = [s.stage for s in steps].index(until)
    with run_lock(out):
        manifest = _run_manifest(steps, out)  # one this version cannot read: refused
        note = check_settings([type(s) for s in steps], out, settings, defaults)
        if note is not None:
            log.warning("%s", note)
            manifest.notes.append(note)
        manifest.status, manifest.out = "running", str(out)
        for _, entry in manifest.stages.items():
            if entry.status == "running":  # its process was killed: this one holds the lock
                entry.status = "stopped"
        actions = plan(steps)
        if prepare is not None:
            prepare(actions, manifest)
        for step in steps[: last + 1]:
            action = actions[step.stage]
            if on_stage is not None and action is not Action.OFF:
                on_stage(step, action)
            if action in (Action.RUN, Action.AGAIN):
                again = action is Action.AGAIN
                with stage_clock(manifest, out / MANIFEST, step.stage, again=again) as done:
                    done(**step.run())
            step.after(manifest)
        if not (out / CONFIG_FILE).exists():  # lost with its copy: these settings ran now
            write_record(settings, out / CONFIG_FILE)
        stopped = until is not steps[-1].stage
        manifest.status = f"stopped after {until.value}" if stopped else "finished"
        manifest.environment = environment()
        manifest.write(out / MANIFEST)
        return manifest


def _run_manifest(steps: Sequence[Step], out: Path) -> RunManifest:
    """The run manifest in ``out``, from its copy when it was lost or damaged; with neither
    and stages started, rebuilt from the finished stages' folders (:meth:`Step.history`),
    their times before this sitting unknown. What happened is in its notes."""
    manifest, note = RunManifest.read_noting(out)
    if manifest is not None:
        if note is not None:
            log.warning("%s", note)
        return manifest
    manifest = RunManifest()
    started = [s for s in steps if s.folder.exists()]
    if not started:
        return manifest  # a new run
    rebuilt = []
    for step in started:
        entry = step.history() if step.finished() else None
        if entry is not None:
            kind = ENTRY_TYPES[step.stage]
            manifest.stages.put(step.stage, kind.model_validate({**entry, "recovered": True}))
            rebuilt.append(step.name)
    note = (note or f"{out / MANIFEST} was missing, with no copy") + (
        ": the run's history before this sitting (stage times, sittings, LLM tokens) is lost"
    )
    if rebuilt:
        note += f"; what {', '.join(rebuilt)} produced was read again from their folders"
    log.warning("%s", note)
    manifest.notes.append(note)
    return manifest
