"""Run folders: a rerun resumes only a run made with the same settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geckokit.runs.folder import (
    RunMismatchError,
    copy_path,
    open_run,
    read_record,
    write_record,
)


def _identity(queries: str, count: int, prompt: str = "/site-packages/p.toml") -> dict:
    return {
        "stage": "mine",
        "config": {"top_n": 5},
        "prompt": {"version": "rerank-v1", "sha256": "ab", "source": prompt},
        "model": {"id": "qwen", "path": "/models/q.gguf"},
        "queries": {"source": queries, "count": count},
    }


def test_a_moved_run_or_input_resumes_but_other_settings_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "a"
    out.mkdir()
    open_run(out, _identity("runs/a/queries", 954))
    # the run folder copied elsewhere, the prompt installed elsewhere: the same run
    moved = tmp_path / "b"
    moved.mkdir()
    (moved / "manifest.json").write_text((out / "manifest.json").read_text())
    open_run(moved, _identity("runs/b/queries", 954, prompt="/other/p.toml"))
    assert (
        json.loads((moved / "manifest.json").read_text())["queries"]["source"] == "runs/b/queries"
    )
    with pytest.raises(RunMismatchError, match="different queries"):
        open_run(moved, _identity("runs/b/queries", 953))
    other = _identity("runs/b/queries", 954)
    other["prompt"]["sha256"] = "cd"
    with pytest.raises(RunMismatchError, match="different prompt"):
        open_run(moved, other)


def test_a_folder_no_llm_has_worked_on_may_be_taken_on_by_one(tmp_path: Path) -> None:
    """Seed-fusion mining records no model; an LLM fusion may then score its pairs, and a
    seed sitting on a folder an LLM scored keeps that LLM's record for the next sitting."""
    out = tmp_path / "m"
    out.mkdir()
    no_llm = {**_identity("q", 9), "model": {"id": None}}
    open_run(out, no_llm)
    open_run(out, _identity("q", 9))  # an LLM takes it on
    open_run(out, no_llm)  # seed again: the scores on record are still qwen's
    assert json.loads((out / "manifest.json").read_text())["model"]["id"] == "qwen"
    other = {**_identity("q", 9), "model": {"id": "llama"}}
    with pytest.raises(RunMismatchError, match="different model"):
        open_run(out, other)


_HOLDER = """
import sys, time
from pathlib import Path
from geckokit.runs.folder import run_lock
with run_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_run_folder_in_use_by_another_process_is_refused_until_it_exits(
    tmp_path: Path,
) -> None:
    """Two processes writing one run folder would write the same shards twice: the second
    is refused at once, naming the first; killed outright, the first leaves no lock."""
    import os
    import signal
    import subprocess
    import sys

    from geckokit.encoder import EncoderRef
    from geckokit.fret.generate_run import generate_queries
    from geckokit.fret.mine_run import mine
    from geckokit.pipeline.distill import DistillConfig, distill
    from geckokit.runs.folder import LOCK_FILE, RunLockedError, run_lock

    out = tmp_path / "run"
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(
            RunLockedError, match=rf"in use by another geckokit run \(pid {child.pid}\)"
        ):
            with run_lock(out):
                pass
        # the whole run is refused before it writes anything
        config = DistillConfig.model_validate({"corpus": str(tmp_path / "c.jsonl")})
        with pytest.raises(RunLockedError):
            distill(config, out)
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]
        # and so are the sharded LLM stages run on their own
        with pytest.raises(RunLockedError):
            generate_queries(tmp_path / "c.jsonl", out, llm=None)
        with pytest.raises(RunLockedError):
            mine(tmp_path / "q", tmp_path / "c.jsonl", out, llm=None, encoder=EncoderRef(None))
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    with run_lock(out):  # the killed holder's lock went with it
        with run_lock(out):  # and this process may take its own lock again
            pass
        assert (out / LOCK_FILE).read_text() == str(os.getpid())


def test_a_run_record_lost_or_garbled_is_read_from_its_copy(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    assert read_record(path) == (None, None)  # a new run
    write_record({"status": "finished", "stages": {"mine": {"seconds": 3.0}}}, path)
    assert read_record(path) == ({"status": "finished", "stages": {"mine": {"seconds": 3.0}}}, None)

    path.unlink()
    data, note = read_record(path)
    assert data == {"status": "finished", "stages": {"mine": {"seconds": 3.0}}}
    assert note == f"{path} was missing; restored from its copy .manifest.json.bak"

    path.write_text('{"status": "fini')  # garbled: set aside for a look, the copy read
    data, note = read_record(path)
    assert data is not None and data["status"] == "finished"
    assert note is not None and "damaged" in note and "set aside as manifest.json.damaged" in note
    assert (tmp_path / "manifest.json.damaged").read_text() == '{"status": "fini'
    assert not path.exists()  # the next write puts it back

    copy_path(path).write_text("")
    data, note = read_record(path)
    assert data is None
    assert note == (
        f"{path} was missing, and its copy .manifest.json.bak is damaged too "
        f"({copy_path(path)} is damaged: not JSON (Expecting value: line 1 column 1 (char 0)))"
    )


def test_a_garbled_stage_manifest_is_set_aside_and_the_run_goes_on(tmp_path: Path) -> None:
    """Its shards carry their own record (tests/runs/test_shards.py), so nothing is lost."""
    out = tmp_path / "q"
    out.mkdir()
    (out / "manifest.json").write_bytes(b"\x00" * 40)
    open_run(out, _identity("q", 9))
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"
    assert (out / "manifest.json.damaged").read_bytes() == b"\x00" * 40
