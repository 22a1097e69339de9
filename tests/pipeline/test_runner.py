"""The stage runner's decisions, with scripted stages: what a rerun skips, runs again or
refuses, and what it records in the run manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from geckokit.io import write_json
from geckokit.pipeline.runner import CONFIG_FILE, Action, Step, first_stage, plan, run_stages
from geckokit.pipeline.stages import STEPS
from geckokit.pipeline.stages import first_stage as distill_first_stage
from geckokit.runs.folder import RunMismatchError
from geckokit.runs.manifest import RunManifest, Stage

DEFAULTS = {"a": 1, "b": {"size": 1, "pick": "first", "parallel": 4}, "c": 1}


class Scripted(Step):
    """Writes a finished manifest into its folder, and records that it ran."""

    calls: ClassVar[list[str]]
    fail: ClassVar[set[str]] = set()

    def run(self) -> dict[str, Any]:
        self.calls.append(self.name)
        if self.name in self.fail:
            raise KeyboardInterrupt
        write_json(
            {"stage": self.name, "status": "finished", "picked": self.pick()},
            self.folder / "manifest.json",
        )
        return {"rows": 3} if self.stage is Stage.MIX else {}

    def pick(self) -> str:
        return str(self.settings_now["b"]["pick"])

    def history(self) -> dict[str, Any] | None:
        return {"rows": 3} if self.stage is Stage.MIX else None

    settings_now: ClassVar[dict[str, Any]] = DEFAULTS


class First(Scripted):
    stage = Stage.GENERATE
    settings = ("a",)


class Second(Scripted):
    stage = Stage.MINE
    settings = ("b",)
    in_place = ("b.pick",)
    driving = ("b.parallel",)

    def current(self) -> bool:
        done = json.loads((self.folder / "manifest.json").read_text())
        return bool(done["picked"] == self.pick())


class Third(Scripted):
    stage = Stage.MIX
    settings = ("c",)


KINDS: list[type[Scripted]] = [First, Second, Third]


@pytest.fixture
def calls() -> list[str]:
    Scripted.calls, Scripted.fail = [], set()
    return Scripted.calls


def run(
    out: Path,
    until: Stage = Stage.MIX,
    *,
    shown: list[tuple[str, Action]] | None = None,
    **settings: Any,
) -> RunManifest:
    current = {**DEFAULTS, **settings}
    Scripted.settings_now = current
    return run_stages(
        [k(out) for k in KINDS],
        out,
        until=until,
        settings=current,
        defaults=DEFAULTS,
        on_stage=None if shown is None else lambda s, a: shown.append((s.name, a)),
    )


def test_a_finished_stage_is_skipped_and_the_manifest_keeps_its_time(
    tmp_path: Path, calls: list[str]
) -> None:
    out = tmp_path / "run"
    stopped = run(out, Stage.MINE)
    assert calls == ["generate", "mine"] and stopped.status == "stopped after mine"
    assert json.loads((out / CONFIG_FILE).read_text()) == DEFAULTS
    shown: list[tuple[str, Action]] = []
    finished = run(out, shown=shown)
    assert calls == ["generate", "mine", "mix"] and finished.status == "finished"
    assert shown == [("generate", Action.SKIP), ("mine", Action.SKIP), ("mix", Action.RUN)]
    assert finished.stages.mix is not None and finished.stages.mix.rows == 3
    # the earlier stages' entries are kept as they were, and the file says the same
    assert finished.stages.generate == stopped.stages.generate
    saved = json.loads((out / "manifest.json").read_text())
    assert saved == finished.dump() and list(saved["stages"]) == ["generate", "mine", "mix"]
    assert saved["stages"]["mix"] == {
        "seconds": saved["stages"]["mix"]["seconds"],
        "sittings": 1,
        "rows": 3,
    }


def test_a_stopped_stage_keeps_its_time_and_the_next_sitting_adds_on(
    tmp_path: Path, calls: list[str]
) -> None:
    out = tmp_path / "run"
    Scripted.fail = {"mine"}
    with pytest.raises(KeyboardInterrupt):
        run(out)
    stopped = RunManifest.read(out)
    assert stopped is not None and stopped.status == "stopped during mine"
    assert stopped.stages.mine is not None and stopped.stages.mine.status == "stopped"
    # a sitting killed outright leaves its entry "running": the next marks it stopped
    killed = json.loads((out / "manifest.json").read_text())
    killed["stages"]["mix"] = {"seconds": 7.0, "sittings": 1, "status": "running"}
    (out / "manifest.json").write_text(json.dumps(killed))
    Scripted.fail = set()
    again = run(out, Stage.MINE)
    assert calls == ["generate", "mine", "mine"]
    assert again.stages.mine is not None and again.stages.mine.sittings == 2
    assert again.stages.mine.status is None  # finished
    assert again.stages.mix is not None and again.stages.mix.status == "stopped"


def test_a_changed_setting_refuses_its_stage_and_later_ones_once_started(
    tmp_path: Path, calls: list[str]
) -> None:
    out = tmp_path / "run"
    run(out, Stage.GENERATE)
    # mine/ has not started: a change to its settings is taken
    run(out, Stage.GENERATE, b={"size": 2, "pick": "first"})
    assert json.loads((out / CONFIG_FILE).read_text())["b"]["size"] == 2
    run(out, Stage.MINE, b={"size": 2, "pick": "first"})
    with pytest.raises(RunMismatchError, match=r"\(b\) and its mine/ already ran"):
        run(out, b={"size": 3, "pick": "first"})
    with pytest.raises(RunMismatchError, match=r"\(a, b\) and its queries/, mine/ already ran"):
        run(out, a=2, b={"size": 3, "pick": "first"})
    assert calls == ["generate", "mine"]  # refused before any stage ran
    # a stage after the changed one's that has not started yet runs with the new setting
    run(out, b={"size": 2, "pick": "first"}, c=5)
    assert calls[-1] == "mix"
    with pytest.raises(RunMismatchError, match=r"\(c\) and its mix/ already ran"):
        run(out, b={"size": 2, "pick": "first"}, c=6)


def test_an_in_place_setting_runs_its_stage_again_and_leaves_the_later_ones_stale(
    tmp_path: Path, calls: list[str]
) -> None:
    out = tmp_path / "run"
    first = run(out, Stage.MINE)
    picked = run(out, Stage.MINE, b={"size": 1, "pick": "last"})
    assert calls == ["generate", "mine", "mine"]
    assert first.stages.mine is not None and picked.stages.mine is not None
    assert picked.stages.mine.sittings == 2  # "again": its time adds on
    assert picked.stages.mine.seconds >= first.stages.mine.seconds
    run(out, b={"size": 1, "pick": "last"})  # mix runs on the new choice
    with pytest.raises(RunMismatchError, match=r"\(b\) and its mix/ already ran"):
        run(out, b={"size": 1, "pick": "first"})


def test_a_driving_setting_changes_freely(tmp_path: Path, calls: list[str]) -> None:
    out = tmp_path / "run"
    run(out)
    # how many sequences the LLM decodes together leaves no output stale
    again = run(out, b={**DEFAULTS["b"], "parallel": 1})
    assert calls == ["generate", "mine", "mix"] and again.status == "finished"
    assert json.loads((out / CONFIG_FILE).read_text())["b"]["parallel"] == 1
    with pytest.raises(RunMismatchError, match=r"\(b\) and its mine/"):
        run(out, b={**DEFAULTS["b"], "parallel": 2, "size": 2})


def test_a_setting_missing_from_the_record_is_at_its_default(
    tmp_path: Path, calls: list[str]
) -> None:
    out = tmp_path / "run"
    run(out)
    (out / CONFIG_FILE).write_text(json.dumps({"a": 1, "b": {"pick": "first"}}))  # older
    run(out)  # b.size and c were at their defaults: no change
    (out / CONFIG_FILE).write_text(json.dumps({"a": 1, "b": {"pick": "first"}}))
    with pytest.raises(RunMismatchError, match=r"\(b\) and its mine/, mix/"):
        run(out, b={"size": 2, "pick": "first"})


def test_a_manifest_this_version_cannot_read_is_refused(tmp_path: Path, calls: list[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"stage": "distill", "stages": {"mixture": {}}}))
    with pytest.raises(RunMismatchError, match="not a distill run manifest this geckokit reads"):
        run(out)
    assert calls == [] and not (out / CONFIG_FILE).exists()  # refused before anything


def test_off_stages_are_neither_run_nor_shown(tmp_path: Path, calls: list[str]) -> None:
    class Optional(Third):
        def wanted(self) -> bool:
            return False

    out = tmp_path / "run"
    steps = [First(out), Second(out), Optional(out)]
    assert plan(steps) == {
        Stage.GENERATE: Action.RUN,
        Stage.MINE: Action.RUN,
        Stage.MIX: Action.OFF,
    }
    shown: list[str] = []
    Scripted.settings_now = DEFAULTS
    manifest = run_stages(
        steps,
        out,
        until=Stage.MIX,
        settings=DEFAULTS,
        defaults=DEFAULTS,
        prepare=lambda actions, m: shown.append(
            f"prepare {sorted(a.value for a in actions.values())}"
        ),
        on_stage=lambda s, a: shown.append(s.name),
    )
    assert shown == ["prepare ['off', 'run', 'run']", "generate", "mine"]
    assert calls == ["generate", "mine"] and manifest.stages.mix is None


def test_the_first_stage_a_setting_affects() -> None:
    assert first_stage("b.size", KINDS) is Stage.MINE
    assert first_stage("b.pick", KINDS) is Stage.MIX  # taken in place by mine
    assert first_stage("b", KINDS) is Stage.MINE
    assert first_stage("unknown", KINDS) is Stage.GENERATE
    # distill's own stages, as bench/panel.py asks
    assert distill_first_stage("mine.top_n") is Stage.MINE
    assert distill_first_stage("mine.fusion") is Stage.MIX
    assert distill_first_stage("generate.validation.max_word_overlap") is Stage.GENERATE
    assert distill_first_stage("queries_file_sha256") is Stage.MINE
    assert distill_first_stage("train.epochs") is Stage.TRAIN
    assert distill_first_stage("eval") is Stage.EVAL
    assert [s.stage for s in STEPS] == list(Stage)
    # every setting of a distill config belongs to a stage
    from geckokit.pipeline.config import setting_defaults

    declared = {k.split(".")[0] for s in STEPS for k in (*s.settings, *s.in_place)}
    assert set(setting_defaults()) == declared


def test_a_lost_run_manifest_is_restored_from_its_copy(tmp_path: Path, calls: list[str]) -> None:
    out = tmp_path / "run"
    first = run(out)
    (out / "manifest.json").unlink()
    again = run(out)
    assert calls == ["generate", "mine", "mix"]  # nothing ran again
    assert again.stages.dump() == first.stages.dump()  # times and sittings kept
    assert len(again.notes) == 1 and "restored from its copy .manifest.json.bak" in again.notes[0]
    assert RunManifest.read(out) is not None and (out / "manifest.json").exists()


def test_with_no_copy_what_the_stages_made_is_read_from_their_folders(
    tmp_path: Path, calls: list[str]
) -> None:
    out = tmp_path / "run"
    run(out)
    (out / "manifest.json").unlink()
    (out / ".manifest.json.bak").write_text("{garbled")
    again = run(out)
    assert calls == ["generate", "mine", "mix"]
    mix = again.stages.mix
    assert mix is not None and (mix.rows, mix.recovered, mix.seconds) == (3, True, 0.0)
    assert again.stages.generate is None  # its folder holds nothing the entry records
    (note,) = again.notes
    assert "its copy .manifest.json.bak is damaged too" in note
    assert (
        "the run's history before this sitting (stage times, sittings, LLM tokens) is lost" in note
    )
    assert note.endswith("what mix produced was read again from their folders")
    # the next sitting finds the rebuilt record, still marked
    assert run(out).notes == [] and RunManifest.read(out).stages.mix.recovered  # type: ignore[union-attr]


def test_a_lost_settings_record_still_refuses_other_settings(
    tmp_path: Path, calls: list[str]
) -> None:
    out = tmp_path / "run"
    run(out)
    (out / CONFIG_FILE).unlink()
    with pytest.raises(RunMismatchError, match=r"other settings \(c\) and its mix/ already ran"):
        run(out, c=2)
    # the same settings resume, noting where their record came from, and write it back
    (note,) = run(out).notes
    assert note == f"{out / CONFIG_FILE} was missing; restored from its copy .config.json.bak"
    assert json.loads((out / CONFIG_FILE).read_text()) == DEFAULTS
    assert run(out).notes == [] and calls == ["generate", "mine", "mix"]


def test_a_settings_record_lost_with_its_copy_is_noted(tmp_path: Path, calls: list[str]) -> None:
    out = tmp_path / "run"
    run(out)
    (out / CONFIG_FILE).unlink()
    (out / f".{CONFIG_FILE}.bak").unlink()
    (out / "mix" / "manifest.json").unlink()  # mix runs again ...
    Scripted.fail = {"mix"}  # ... and stops: that sitting records no settings ...
    with pytest.raises(KeyboardInterrupt):
        run(out, c=2)
    assert not (out / CONFIG_FILE).exists()
    Scripted.fail = set()
    again = run(out, c=2)  # ... one that ran its stages does
    (note,) = again.notes
    assert note.startswith(f"{out / CONFIG_FILE} was missing, with no copy: the settings")
    assert "queries/, mine/, mix/ ran with are unknown" in note
    assert json.loads((out / CONFIG_FILE).read_text())["c"] == 2  # recorded from now on
