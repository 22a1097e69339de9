"""``geckokit distill`` with the user's own queries: in place of FRet step 1, or beside it."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from geckokit.cli.distill import describe_estimate
from geckokit.fret import cost
from geckokit.fret.cost import estimate_cost
from geckokit.fret.fusion import Fusion
from geckokit.fret.mine_run import MineConfig
from geckokit.pipeline.demo import demo_dir
from geckokit.pipeline.distill import DistillConfig, distill, load_config
from geckokit.pipeline.stages import check_config, llm_stages_left
from geckokit.runs.folder import RunMismatchError

PASSAGES = [
    "DataDirectory",
    "CacheDirectory",
    "BandwidthRate",
    "AvoidDiskWrites",
    "SocksPort",
    "Log",
]
LOG = "where does tor keep its state\n\nlimit the bandwidth my relay uses\nwhere does tor keep its state\n"


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, Path]:
    """Six demo passages and a query log of two queries (a blank line and a repeat)."""
    rows = [json.loads(x) for x in (demo_dir() / "corpus.jsonl").read_text().splitlines()]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows if r["_id"] in PASSAGES))
    log = tmp_path / "log.txt"
    log.write_text(LOG)
    return corpus, log


def _config(corpus: Path, log: Path | None, **more: object) -> DistillConfig:
    return DistillConfig.model_validate(
        {
            "corpus": str(corpus),
            "queries_file": None if log is None else str(log),
            "mine": {"top_n": 3},
            **more,
        }
    )


def test_settings_that_need_a_seed_are_refused_before_any_work(tmp_path: Path) -> None:
    log = str(tmp_path / "log.txt")
    with pytest.raises(ValueError, match="seed fusion keeps each query's seed passage"):
        load_config(None, {"corpus": "c", "queries_file": log, "mine.fusion": "seed"})
    with pytest.raises(ValueError, match="warmup_encoder fine-tunes"):
        load_config(None, {"corpus": "c", "queries_file": log, "mine.warmup_encoder": True})
    both = {"corpus": "c", "queries_file": log, "also_generate": True}
    assert load_config(None, {**both, "mine.warmup_encoder": True}).generates
    assert not load_config(None, {"corpus": "c", "queries_file": log}).generates
    assert load_config(None, {"corpus": "c"}).generates
    with pytest.raises(ValueError, match="queries_task"):
        load_config(None, {"corpus": "c", "queries_file": log, "queries_task": ""})
    # without FRet step 1 there is no generate stage to run
    rrf = MineConfig(fusion=Fusion.RRF)
    assert llm_stages_left(tmp_path / "q", tmp_path / "m", rrf, generate=False) == ["mine"]


def test_the_estimate_counts_the_user_queries_pairs() -> None:
    seeds, corpus = pa.table({"text": ["x" * 400] * 4}), pa.table({"text": ["x" * 800] * 1000})
    config = load_config(None, {"corpus": "unused", "mine.top_n": 5})
    config.mine.passage_max_tokens = 100
    # the file alone: no passage has queries written for it
    alone = estimate_cost(
        seeds.slice(0, 0), config, None, corpus=corpus, stages=["mine"], queries=0, user_queries=3
    )
    assert alone["llm_calls"] == {"generate": 0, "score_pairs": 15}
    assert alone["tokens"]["mine_prompt"] == 15 * 100 + 15 * 45  # 3 x 5 candidates, 15 pairs
    assert alone["tokens"]["generate_prompt"] == 0 and alone["user_queries"] == 3
    assert describe_estimate(alone).startswith("3 queries of yours -> 15 pairs to score;")
    # beside one generated query per passage: the pairs of both, the candidates of both
    both = estimate_cost(seeds, config, None, corpus=corpus, user_queries=3)
    assert both["llm_calls"] == {"generate": 4, "score_pairs": 35}
    assert both["tokens"]["mine_prompt"] == 35 * 100 + 35 * 45
    line = describe_estimate(both)
    assert line.startswith("4 passages, 3 queries of yours -> 4 queries to write and 35 pairs")
    small = estimate_cost(seeds, config, None, corpus=pa.table({"text": ["x" * 200] * 8}))
    assert small["tokens"]["mine_prompt"] == 8 * 50 + 20 * 45  # unchanged without the file


def test_the_queries_file_is_part_of_the_runs_identity(tmp_path: Path) -> None:
    """Another file, other content under the same path, another task, or generating beside
    it: refused once mine/ has run, taken before."""
    out, corpus, log = tmp_path / "run", tmp_path / "c.jsonl", tmp_path / "log.txt"
    out.mkdir()
    config = _config(corpus, log)
    check_config(config, out, queries_sha256="aa")
    check_config(config, out, queries_sha256="bb")  # mine/ has not run: taken
    assert json.loads((out / "config.json").read_text())["queries_file_sha256"] == "bb"
    (out / "mine").mkdir()
    check_config(config, out, queries_sha256="bb")  # the same: resumes
    with pytest.raises(RunMismatchError, match=r"\(queries_file_sha256\) and its mine/"):
        check_config(config, out, queries_sha256="cc")
    other = _config(corpus, tmp_path / "other.txt")
    with pytest.raises(RunMismatchError, match=r"\(queries_file\) and its mine/"):
        check_config(other, out, queries_sha256="bb")
    task = config.model_copy(update={"queries_task": "code search"})
    with pytest.raises(RunMismatchError, match=r"\(queries_task\) and its mine/"):
        check_config(task, out, queries_sha256="bb")
    generating = config.model_copy(update={"also_generate": True})
    with pytest.raises(RunMismatchError, match=r"\(also_generate\) and its mine/"):
        check_config(generating, out, queries_sha256="bb")
    # a config saved before these settings existed resumes without a file
    plain = _config(corpus, None)
    saved = plain.model_dump(mode="json")
    for key in ("queries_file", "queries_task", "also_generate"):
        del saved[key]
    (out / "config.json").write_text(json.dumps(saved))
    check_config(plain, out)
    assert json.loads((out / "config.json").read_text())["queries_file_sha256"] is None


@pytest.mark.slow
def test_distill_mines_the_user_queries_in_place_of_generated_ones(
    small: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    llm,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setattr(cost, "probe_rates", lambda llm, **_: None)  # counts, not speed
    corpus, log = small
    out = tmp_path / "run"
    estimates: list[dict] = []
    manifest = distill(
        _config(corpus, log), out, until="mine", llm=llm, on_estimate=estimates.append
    )
    assert manifest["status"] == "stopped after mine"
    assert set(manifest["stages"]) == {"mine"} and not (out / "queries").exists()
    assert estimates[0]["llm_calls"] == {"generate": 0, "score_pairs": 6}
    assert estimates[0]["passages"] == 0 and estimates[0]["user_queries"] == 2
    mined = json.loads((out / "mine" / "manifest.json").read_text())
    assert mined["status"] == "finished" and mined["counts"] == {"examples": 2, "pairs": 6}
    assert mined["queries"] is None
    assert (mined["queries_file"]["queries"], mined["queries_file"]["duplicates"]) == (2, 1)
    summary = manifest["stages"]["mine"]["summary"]
    assert (summary["user_queries"], summary["generated_queries"]) == (2, 0)
    assert (
        json.loads((out / "config.json").read_text())["queries_file_sha256"]
        == (mined["queries_file"]["sha256"])
    )

    spent = llm.usage.prompt_tokens_evaluated
    again = distill(_config(corpus, log), out, until="mine", llm=llm, on_estimate=estimates.append)
    assert again["status"] == "stopped after mine" and len(estimates) == 1  # nothing left
    assert llm.usage.prompt_tokens_evaluated == spent
    with pytest.raises(RunMismatchError, match=r"\(also_generate\) and its mine/ already ran"):
        distill(_config(corpus, log, also_generate=True), out, until="mine", llm=llm)
    log.write_text(LOG + "send the log to syslog\n")
    with pytest.raises(RunMismatchError, match=r"\(queries_file_sha256\) and its mine/"):
        distill(_config(corpus, log), out, until="mine", llm=llm)


@pytest.mark.slow
def test_distill_mines_the_user_queries_beside_generated_ones(
    small: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    llm,  # type: ignore[no-untyped-def]
) -> None:
    from geckokit.io import read_shards

    monkeypatch.setattr(cost, "probe_rates", lambda llm, **_: None)  # counts, not speed
    corpus, log = small
    out = tmp_path / "run"
    estimates: list[dict] = []
    config = _config(corpus, log, also_generate=True, sample=2)  # neighbours: all six
    config.generate.task_types = ["question answering"]
    manifest = distill(config, out, until="mine", llm=llm, on_estimate=estimates.append)
    written = json.loads((out / "queries" / "manifest.json").read_text())["counts"]["queries"]
    assert written > 0 and set(manifest["stages"]) == {"generate", "mine"}
    assert estimates[0]["llm_calls"] == {"generate": 2, "score_pairs": (2 + 2) * 3}
    fret = read_shards(out / "mine" / "fret")
    assert fret is not None and fret.num_rows == written + 2
    by_source = {s: fret.filter(pc.equal(fret["source"], s)) for s in ("generated", "user")}
    assert by_source["user"]["seed_id"].null_count == 2
    assert by_source["generated"]["seed_id"].null_count == 0
    summary = manifest["stages"]["mine"]["summary"]
    assert (summary["generated_queries"], summary["user_queries"]) == (written, 2)
    assert summary["relabel_rate"] is not None
    mined = json.loads((out / "mine" / "manifest.json").read_text())
    assert mined["queries"]["count"] == written and mined["queries_file"]["queries"] == 2
