"""``geckokit distill``'s resume and selection logic in seconds: the scripted LLM and the
tiny encoder of :mod:`geckokit.testing` in place of the real models, training and mteb
replaced by recorders (the real models: test_distill.py).

A run stopped in any stage resumes there and ends as a run that never stopped; another
fusion chooses again from the stored scores with no LLM work; a changed scoring setting is
refused once mine/ has started."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import geckokit.evaluate.report
import geckokit.evaluate.run
import geckokit.mixture.build
import geckokit.train.trainer
from geckokit.fret import cost
from geckokit.io import read_shards
from geckokit.pipeline.demo import demo_dir
from geckokit.pipeline.distill import DistillConfig, distill
from geckokit.runs.folder import RunMismatchError
from geckokit.testing import TINY_ENCODER, ScriptedLLM, tiny_encoder

PASSAGES = 100
#: passages per generate shard (generate_queries' default, which distill keeps)
GENERATE_SHARD = 32


def _config(**changes: Any) -> DistillConfig:
    """A hundred demo passages, three candidates per query, the tiny encoder as initial encoder
    (the base and the benchmark are only names here: training and mteb are recorders)."""
    settings: dict[str, Any] = {
        "corpus": str(demo_dir() / "corpus.jsonl"),
        "limit": PASSAGES,
        "encoder": TINY_ENCODER,
        "eval": [str(demo_dir())],
        "mine": {"top_n": 3, "fusion": "ql"},
    }
    for key, value in changes.items():
        table, _, leaf = key.rpartition(".")
        (settings.setdefault(table, {}) if table else settings)[leaf] = value
    return DistillConfig.model_validate(settings)


class _Stops:
    """Stages made to raise KeyboardInterrupt (a Ctrl-C) the next time they run."""

    def __init__(self) -> None:
        self.armed: set[str] = set()

    def check(self, stage: str) -> None:
        if stage in self.armed:
            self.armed.discard(stage)
            raise KeyboardInterrupt(f"stopped in {stage}")


@pytest.fixture
def stops(monkeypatch: pytest.MonkeyPatch) -> _Stops:
    """Training and mteb replaced by recorders that write what their stages check; mix and
    the report wrapped so that a test can stop them; no LLM speed probe."""
    stops = _Stops()
    monkeypatch.setattr(cost, "probe_rates", lambda llm, **_: None)  # counts, not speed

    def train(mix: Path, out: Path, *, config: Any, prefinetune: Any) -> dict[str, Any]:
        stops.check("train")
        assert read_shards(mix / "mixture") is not None
        (out / "model").mkdir(parents=True, exist_ok=True)
        curve = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
        (out / "manifest.json").write_text(json.dumps({"stage": "train", "loss_curve": curve}))
        return {"steps": 2, "loss_curve": curve}

    def evaluate(models: list[str], tasks: list[str], *, out: Path, **kwargs: Any) -> pa.Table:
        stops.check("eval")
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "manifest.json").write_text(json.dumps({"stage": "eval"}))
        base, distilled = models
        rows = [
            {"model": m, "format": f, "dim": 384, "task": "demo", "kind": "retrieval", "score": s}
            for m, f, s in [(base, "plain", 0.5), (base, "gecko", 0.6), (distilled, "gecko", 0.7)]
        ]
        for row in rows:
            row["recall_at_10"] = 0.8
        return pa.Table.from_pylist(rows)

    build_mixture, write_report = (
        geckokit.mixture.build.build_mixture,
        geckokit.evaluate.report.write_report,
    )

    def mix(*args: Any, **kwargs: Any) -> Any:
        stops.check("mix")
        return build_mixture(*args, **kwargs)

    def report(*args: Any, **kwargs: Any) -> Any:
        stops.check("report")
        return write_report(*args, **kwargs)

    monkeypatch.setattr(geckokit.train.trainer, "train", train)
    monkeypatch.setattr(geckokit.evaluate.run, "evaluate", evaluate)
    monkeypatch.setattr(geckokit.mixture.build, "build_mixture", mix)
    monkeypatch.setattr(geckokit.evaluate.report, "write_report", report)
    return stops


def _run(
    out: Path, llm: ScriptedLLM, config: DistillConfig | None = None, **kw: Any
) -> dict[str, Any]:
    return distill(
        config or _config(), out, llm=llm, encoder=tiny_encoder(), show_progress=False, **kw
    )


def _outputs(out: Path) -> dict[str, list[dict[str, Any]]]:
    """What a run wrote that a stop must not change (times left out)."""
    tables = {
        "queries": read_shards(out / "queries" / "queries"),
        "scores": read_shards(out / "mine" / "scores"),
        "fret": read_shards(out / "mine" / "fret"),
        "mixture": read_shards(out / "mix" / "mixture"),
    }
    rows = {}
    for name, table in tables.items():
        assert table is not None, name
        keep = [c for c in table.column_names if c != "seconds"]
        rows[name] = sorted(
            table.select(keep).to_pylist(), key=lambda r: json.dumps(r, sort_keys=True)
        )
    return rows


def test_a_run_stopped_in_any_stage_resumes_there_and_ends_as_one_that_never_stopped(
    stops: _Stops, tmp_path: Path
) -> None:
    reference_llm = ScriptedLLM()
    reference = _run(tmp_path / "reference", reference_llm)
    assert reference["status"] == "finished"
    expected = _outputs(tmp_path / "reference")
    assert len(expected["queries"]) == PASSAGES and len(expected["fret"]) == PASSAGES
    # one request per passage's query (none rejected), two per (query, candidate) pair
    pairs = len(expected["scores"])
    assert reference_llm.usage.requests == PASSAGES + 2 * pairs
    shards = sorted((tmp_path / "reference" / "mine" / "scores").glob("part-*.parquet"))
    first_pairs = pq.read_metadata(shards[0]).num_rows
    assert len(shards) == 2 and GENERATE_SHARD < PASSAGES

    out, llm = tmp_path / "run", ScriptedLLM()
    # generate stops in its second shard
    llm.stop_after = GENERATE_SHARD + 5
    with pytest.raises(KeyboardInterrupt):
        _run(out, llm)
    stopped = json.loads((out / "manifest.json").read_text())
    assert stopped["status"] == "stopped during generate"
    assert stopped["stages"]["generate"]["status"] == "stopped"
    assert not (out / "mine").exists()

    stages = ["mine", "mix", "train", "eval", "report"]
    spent = [llm.usage.requests]
    for before, stage in zip(["generate", *stages], stages, strict=False):
        if stage == "mine":
            # generate resumes after its finished shard; mine stops in its second shard
            llm.stop_after = llm.usage.requests + PASSAGES - GENERATE_SHARD + 2 * first_pairs + 3
        else:
            llm.stop_after = None
            stops.armed.add(stage)
        with pytest.raises(KeyboardInterrupt):
            _run(out, llm)
        spent.append(llm.usage.requests)
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["status"] == f"stopped during {stage}", manifest["status"]
        entries = manifest["stages"]
        assert entries[stage]["status"] == "stopped"
        assert "status" not in entries[before] and entries[before]["sittings"] == 2, before
    # the mix sitting scored only the pairs of mine's unfinished shard, and then no LLM work
    assert spent[2] - spent[1] == 2 * (pairs - first_pairs)
    assert spent[2:] == [spent[2]] * 4
    done = _run(out, llm)
    assert done["status"] == "finished" and llm.usage.requests == spent[-1]
    # what a stop cost: the requests in the shards in flight, made again
    assert llm.usage.requests == reference_llm.usage.requests + 5 + 3
    assert _outputs(out) == expected
    assert all(e["sittings"] == 2 and "status" not in e for e in done["stages"].values())
    assert done["stages"]["train"]["loss"] == [2.0, 1.5]
    assert [r["model"] for r in done["stages"]["eval"]["results"]] == [
        "base",
        "base (unified format)",
        "distilled",
    ]
    assert (out / "report.html").exists()

    # finished: a rerun does nothing but write the report again, with no LLM work
    spent = llm.usage.requests
    again = _run(out, llm)
    assert llm.usage.requests == spent and again["stages"]["mine"]["sittings"] == 2


def test_another_fusion_chooses_again_from_the_stored_scores_with_no_llm_work(
    stops: _Stops, tmp_path: Path
) -> None:
    out, llm = tmp_path / "run", ScriptedLLM()
    _run(out, llm, until="mine")
    spent = llm.usage.requests
    estimates: list[dict[str, Any]] = []
    rc = _run(
        out,
        llm,
        config=_config(**{"mine.fusion": "rc"}),
        until="mine",
        on_estimate=estimates.append,
    )
    assert llm.usage.requests == spent and not estimates  # no LLM work, nothing to estimate
    assert rc["stages"]["mine"]["sittings"] == 2
    mined = json.loads((out / "mine" / "manifest.json").read_text())
    assert mined["selection"]["fusion"] == "rc"
    fret = read_shards(out / "mine" / "fret")
    assert fret is not None and fret.num_rows == PASSAGES
    for row in fret.to_pylist():  # each positive is now the candidate RC scores best
        best = max(range(len(row["candidate_ids"])), key=lambda i: row["rc_scores"][i])
        assert row["positive_id"] == row["candidate_ids"][best]

    # once mix/ has used the selection, another one would mix two runs: refused
    _run(out, llm, config=_config(**{"mine.fusion": "rc"}), until="mix")
    with pytest.raises(RunMismatchError, match=r"\(mine\) and its mix/ already ran"):
        _run(out, llm, config=_config(**{"mine.fusion": "rrf"}), until="mix")
    assert llm.usage.requests == spent


@pytest.mark.parametrize(
    "change",
    [{"rerank_prompt": "graded"}, {"mine.passage_max_tokens": 100}, {"mine.top_n": 4}],
)
def test_a_changed_scoring_setting_is_refused_once_mine_has_started(
    change: dict[str, Any], stops: _Stops, tmp_path: Path
) -> None:
    out, llm = tmp_path / "run", ScriptedLLM()
    _run(out, llm, until="generate")
    _run(out, llm, config=_config(**change), until="generate")  # mine/ not started: taken
    _run(out, llm, until="generate")  # and back
    llm.stop_after = llm.usage.requests + 3
    with pytest.raises(KeyboardInterrupt):
        _run(out, llm, until="mine")  # mine/ has started, a few pairs scored
    spent = llm.usage.requests
    llm.stop_after = None
    with pytest.raises(RunMismatchError, match=r"its mine/ already ran"):
        _run(out, llm, config=_config(**change), until="mine")
    assert llm.usage.requests == spent  # refused before any work
    assert json.loads((out / "config.json").read_text())["mine"]["fusion"] == "ql"
    assert _run(out, llm, until="mine")["stages"]["mine"]["sittings"] == 2  # the same resumes


def test_a_loaded_encoder_must_carry_the_name_the_settings_give(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="named 'other' but the settings' initial encoder"):
        distill(_config(), tmp_path / "run", llm=ScriptedLLM(), encoder=tiny_encoder("other"))
    assert not (tmp_path / "run").exists()


def test_examples_that_cannot_fill_a_batch_are_refused_before_any_llm_work(
    tmp_path: Path, stops: _Stops
) -> None:
    llm = ScriptedLLM()
    config = _config(limit=12, **{"train.batch_size": 32})
    with pytest.raises(ValueError, match=r"at most 12 training examples \(12 passages x 1"):
        distill(config, tmp_path / "run", llm=llm, encoder=tiny_encoder())
    assert llm.usage.requests == 0 and not (tmp_path / "run" / "queries").exists()
    # query slots count; a run that stops before training is not refused
    config = _config(limit=12, **{"train.batch_size": 32, "generate.queries_per_passage": 2})
    with pytest.raises(ValueError, match="at most 24 training examples"):
        distill(config, tmp_path / "run", llm=llm, encoder=tiny_encoder())
    distill(_config(limit=12), tmp_path / "run", until="generate", llm=llm, encoder=tiny_encoder())
    assert llm.usage.requests > 0
