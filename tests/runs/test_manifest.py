"""The manifests' models: what is read is written back unchanged, unknown stage manifests are
left out, one this version cannot read is refused with a clear message, and a stage whose
files were damaged since is not finished."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from geckokit.io import write_table
from geckokit.runs.folder import RunMismatchError
from geckokit.runs.manifest import (
    MineManifest,
    RunManifest,
    Stage,
    damaged_tables,
    finished,
    parse_stage_manifest,
    read_stage_manifest,
)

RUN = {
    "stage": "distill",
    "status": "stopped after mine",
    "out": "runs/x",
    "stages": {
        "generate": {
            "seconds": 12.5,
            "sittings": 1,
            "summary": {"passages": 4, "queries": 4, "mean_query_words": None, "attempts": 5},
            "llm_this_run": None,
        },
        "mine": {"seconds": 3.0, "sittings": 2, "status": "stopped"},
        "eval": {
            "seconds": 1.0,
            "results": [{"benchmark": "b", "model": "base", "ndcg@10": 50.0, "recall@10": 60.0}],
        },
    },
    "estimate": {"passages": 4, "seconds": None},
}


def test_a_run_manifest_round_trips(tmp_path: Path) -> None:
    manifest = RunManifest.model_validate(RUN)
    assert manifest.dump() == RUN  # no key added or dropped, None kept, aliases kept
    eval_entry = manifest.stages.eval
    assert eval_entry is not None and eval_entry.results is not None
    assert eval_entry.results[0].ndcg_at_10 == 50.0
    assert [s for s, _ in manifest.stages.items()] == [Stage.GENERATE, Stage.MINE, Stage.EVAL]
    assert RunManifest().dump() == {"stage": "distill", "status": "running", "stages": {}}
    (tmp_path / "manifest.json").write_text(json.dumps({**RUN, "stages": {"fret": {}}}))
    with pytest.raises(RunMismatchError, match=r"not a distill run manifest .* stages\.fret"):
        RunManifest.read(tmp_path)


def test_stage_manifests_are_read_as_their_stage_s(tmp_path: Path) -> None:
    assert parse_stage_manifest({"stage": "prefinetune", "steps": 3}) is None
    mine = parse_stage_manifest({"stage": "mine", "counts": {"pairs": 6}, "extra": [1]})
    assert isinstance(mine, MineManifest) and mine.counts["pairs"] == 6 and mine.finished
    assert mine.dump() == {"stage": "mine", "counts": {"pairs": 6}, "extra": [1]}
    folder = tmp_path / "mine"
    folder.mkdir()
    assert not finished(folder, Stage.MINE)  # no manifest yet
    (folder / "manifest.json").write_text(json.dumps({"status": "partial"}))
    assert not finished(folder, Stage.MINE)
    (folder / "manifest.json").write_text(json.dumps({"summary": {"relabel_rate": "high"}}))
    with pytest.raises(RunMismatchError, match="not a MineManifest this geckokit reads"):
        read_stage_manifest(folder, Stage.MINE)
    assert [s.folder for s in Stage] == ["queries", "mine", "mix", "train", "eval", "report.html"]


def test_a_finished_stage_whose_tables_are_damaged_is_not_finished(tmp_path: Path) -> None:
    folder = tmp_path / "mix"
    write_table(pa.table({"query": ["q"]}), folder / "mixture" / "part-00000.parquet")
    (folder / "manifest.json").write_text(json.dumps({"stage": "mix", "rows": 1}))
    assert finished(folder, Stage.MIX) and damaged_tables(folder) == []
    part = folder / "mixture" / "part-00000.parquet"
    part.write_bytes(part.read_bytes()[:-9])  # cut short
    assert damaged_tables(folder) == [part]
    assert not finished(folder, Stage.MIX)  # so it runs again and writes it whole


def test_a_garbled_stage_manifest_is_not_finished(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"stage": "mix", "rows": 1')
    assert read_stage_manifest(tmp_path, Stage.MIX) is None
    assert not finished(tmp_path, Stage.MIX)


def test_a_lost_run_manifest_is_read_from_its_copy_and_noted(tmp_path: Path) -> None:
    RunManifest.model_validate(RUN).write(tmp_path / "manifest.json")
    (tmp_path / "manifest.json").unlink()
    manifest, note = RunManifest.read_noting(tmp_path)
    assert manifest is not None and manifest.dump() == RUN
    assert note is not None and "restored from its copy .manifest.json.bak" in note
    assert manifest.notes == [note]
    assert "notes" not in manifest.dump()  # a note is shown, never written
