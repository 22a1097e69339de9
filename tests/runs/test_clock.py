"""The time a distill stage spends survives a stop: Ctrl-C, an error, or a process killed
outright."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from geckokit.runs.clock import stage_clock
from geckokit.runs.manifest import RunManifest


def _entry(path: Path, stage: str = "mine") -> dict:
    return json.loads(path.read_text())["stages"][stage]


def test_a_running_stage_writes_its_time_as_it_goes(tmp_path: Path) -> None:
    path, manifest = tmp_path / "manifest.json", RunManifest()
    with stage_clock(manifest, path, "mine", every=0.05) as done:
        first = _entry(path)  # written as the stage starts
        assert first["status"] == "running" and first["sittings"] == 1
        time.sleep(0.4)
        running = _entry(path)
        assert running["status"] == "running" and running["seconds"] >= 0.2
        done(summary={"examples": 3})
    finished = _entry(path)
    assert finished["seconds"] >= 0.4 and finished["sittings"] == 1
    assert finished["summary"] == {"examples": 3} and "status" not in finished
    time.sleep(0.15)  # the clock stopped with the stage: nothing rewrites the entry
    assert _entry(path) == finished


def test_an_interrupted_stage_keeps_its_time_and_the_next_sitting_adds_on(
    tmp_path: Path,
) -> None:
    path, manifest = tmp_path / "manifest.json", RunManifest()
    with pytest.raises(KeyboardInterrupt), stage_clock(manifest, path, "train") as done:
        time.sleep(0.2)
        raise KeyboardInterrupt
    stopped = _entry(path, "train")
    assert stopped["status"] == "stopped" and stopped["seconds"] >= 0.2
    assert json.loads(path.read_text())["status"] == "stopped during train"
    with stage_clock(manifest, path, "train") as done:
        time.sleep(0.1)
        done()
    again = _entry(path, "train")
    assert (
        again["sittings"] == 2 and again["seconds"] >= stopped["seconds"] + 0.05
    )  # rounded to 0.1 s
    # a finished stage run anew (its folder deleted) starts from zero; "again" adds on
    with stage_clock(manifest, path, "train") as done:
        done()
    assert _entry(path, "train")["sittings"] == 1
    with stage_clock(manifest, path, "train", again=True) as done:
        done()
    assert _entry(path, "train")["sittings"] == 2


_CHILD = """
import sys, time
from pathlib import Path
from geckokit.runs.clock import stage_clock
from geckokit.runs.manifest import RunManifest

with stage_clock(RunManifest(), Path(sys.argv[1]), "generate", every=0.05) as done:
    time.sleep(600)
"""


def test_a_sitting_killed_outright_keeps_the_time_it_wrote(tmp_path: Path) -> None:
    """``kill -9`` gives the process no chance to write; the clock wrote as it went, so the
    next sitting counts the killed one's time (to within one heartbeat)."""
    path = tmp_path / "manifest.json"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)])
    try:
        deadline = time.monotonic() + 120
        while not (path.exists() and _entry(path, "generate")["seconds"] >= 0.5):
            assert child.poll() is None, "the child process ended early"
            assert time.monotonic() < deadline, "no heartbeat within 2 minutes"
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    killed = _entry(path, "generate")
    assert killed["status"] == "running" and killed["seconds"] >= 0.5
    manifest = RunManifest.model_validate_json(path.read_text())
    with stage_clock(manifest, path, "generate") as done:
        done()
    resumed = _entry(path, "generate")
    assert resumed["sittings"] == 2 and resumed["seconds"] >= killed["seconds"]


def test_an_entry_rebuilt_after_the_manifest_was_lost_stays_marked(tmp_path: Path) -> None:
    """Its time before the loss is unknown: a sitting that runs the stage again adds on to
    what is known, and the entry still says that it is not the whole time."""
    path = tmp_path / "manifest.json"
    manifest = RunManifest.model_validate(
        {"stages": {"mine": {"seconds": 0.0, "recovered": True, "summary": {"examples": 3}}}}
    )
    with stage_clock(manifest, path, "mine", again=True) as done:
        done(summary={"examples": 4})
    entry = _entry(path)
    assert (entry["recovered"], entry["sittings"], entry["summary"]) == (True, 2, {"examples": 4})


def test_a_disk_full_while_recording_a_stop_keeps_the_stage_s_own_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, manifest = tmp_path / "manifest.json", RunManifest()
    with pytest.raises(ValueError, match="the stage's own"), stage_clock(manifest, path, "mix"):

        def full(self: RunManifest, where: Path) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(RunManifest, "write", full)
        raise ValueError("the stage's own error")
    assert manifest.status == "stopped during mix"
