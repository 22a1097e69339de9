"""FRet step 1 end to end with the real 0.5B model on SciFact passages: rows, manifest, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from geckokit.corpus import load_corpus
from geckokit.fret.generate import GenerateConfig
from geckokit.fret.generate_run import generate_queries
from geckokit.fret.validate import ValidationConfig, copy_overlap
from geckokit.io import read_shards
from geckokit.runs.folder import RunMismatchError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def passages(shared_data: Path):  # type: ignore[no-untyped-def]
    return load_corpus(shared_data / "beir" / "scifact", limit=4)


def test_every_passage_gets_a_query_or_a_reason(llm, passages, tmp_path: Path) -> None:
    config = GenerateConfig(temperature=0.0)
    llm.reset_cache()  # the few-shot prefix is evaluated anew, as a fresh run's would be
    manifest = generate_queries(
        passages, tmp_path, llm=llm, config=config, shard_size=2, show_progress=False
    )
    # every passage went through the LLM at least once, and the run counted it
    texts = passages.passages["text"].to_pylist()
    spent = manifest["llm_this_run"]
    assert spent["prompt_tokens_evaluated"] >= sum(len(llm.tokenize(t)) for t in texts)
    assert spent["completion_tokens"] > 0
    # what distill's estimate expects generate to evaluate, within a fifth of it
    from geckokit.fret.cost import estimate_cost
    from geckokit.pipeline.distill import load_config

    estimate = estimate_cost(
        passages.passages, load_config(None, {"corpus": "unused"}), llm, stages=["generate"]
    )
    assert estimate["tokens"]["generate_prompt"] == pytest.approx(
        spent["prompt_tokens_evaluated"], rel=0.2
    )
    # and each attempt writes about as much as the prompt's few-shot answers
    per_attempt = spent["completion_tokens"] / manifest["summary"]["attempts"]
    assert estimate["template_tokens"]["per_answer"] == pytest.approx(per_attempt, rel=0.3)
    queries = read_shards(tmp_path / "queries")
    rejects = read_shards(tmp_path / "rejects")
    assert queries is not None
    rows = queries.to_pylist()
    assert rows, "no query was accepted"
    text = dict(
        zip(
            passages.passages["passage_id"].to_pylist(),
            passages.passages["text"].to_pylist(),
            strict=True,
        )
    )
    for row in rows:
        assert row["task"].strip() and row["query"].strip()
        assert (
            copy_overlap(row["query"], text[row["passage_id"]])
            <= config.validation.max_copy_overlap
        )
        assert row["task_type"] and row["raw"] and row["seconds"] > 0
    ended = {r["passage_id"] for r in rows} | {
        r["passage_id"] for r in (rejects.to_pylist() if rejects is not None else []) if r["final"]
    }
    assert ended == set(text)
    assert manifest["status"] == "finished"
    assert (
        manifest["prompt"]["version"] == "generate-v1" and len(manifest["prompt"]["sha256"]) == 64
    )
    assert (
        manifest["model"]["sha256"]
        == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    )
    summary = manifest["summary"]
    assert summary["queries"] == len(rows) and sum(summary["task_types"].values()) == len(rows)
    assert summary["mean_query_words"] > 2
    assert sorted(p.name for p in (tmp_path / "queries").iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]


def test_resume_after_one_shard_gives_the_same_result(llm, passages, tmp_path: Path) -> None:
    config = GenerateConfig(temperature=0.0)
    llm.usage.reset()
    partial = generate_queries(
        passages,
        tmp_path / "a",
        llm=llm,
        config=config,
        shard_size=2,
        max_shards=1,
        show_progress=False,
    )
    assert partial["status"] == "partial" and partial["shards"] == {"total": 2, "finished": 1}
    first_shard = tmp_path / "a" / "queries" / "part-00000.parquet"
    stamp = first_shard.stat().st_mtime_ns
    # as a folder written before validation.max_word_overlap existed: it resumes, having run
    # with that setting's default
    manifest_path = tmp_path / "a" / "manifest.json"
    written = json.loads(manifest_path.read_text())
    del written["config"]["validation"]["max_word_overlap"]
    manifest_path.write_text(json.dumps(written))
    resumed = generate_queries(
        passages, tmp_path / "a", llm=llm, config=config, shard_size=2, show_progress=False
    )
    assert resumed["status"] == "finished"
    assert first_shard.stat().st_mtime_ns == stamp  # the finished shard was not redone
    # each sitting records its own tokens; together they are all the LLM spent
    sittings = [partial["llm_this_run"], resumed["llm_this_run"]]
    for key in ("prompt_tokens_evaluated", "prompt_tokens_cached", "completion_tokens"):
        assert sum(s[key] for s in sittings) == getattr(llm.usage, key)
    assert all(s["prompt_tokens_evaluated"] > 0 and s["seconds"] > 0 for s in sittings)
    # the second sitting reuses the few-shot prefix the first one evaluated
    assert resumed["llm_this_run"]["prompt_tokens_cached"] > 0
    fresh = generate_queries(
        passages, tmp_path / "b", llm=llm, config=config, shard_size=2, show_progress=False
    )
    cols = ["query_id", "task_type", "task", "query"]
    assert (
        read_shards(tmp_path / "a" / "queries").select(cols).to_pylist()
        == read_shards(tmp_path / "b" / "queries").select(cols).to_pylist()
    )
    with pytest.raises(RunMismatchError, match="different config"):
        generate_queries(
            passages,
            tmp_path / "a",
            llm=llm,
            config=GenerateConfig(temperature=0.0, seed=1),
            shard_size=2,
            show_progress=False,
        )
    with pytest.raises(RunMismatchError, match="different config"):  # away from its default
        generate_queries(
            passages,
            tmp_path / "a",
            llm=llm,
            config=GenerateConfig(
                temperature=0.0, validation=ValidationConfig(max_word_overlap=0.6)
            ),
            shard_size=2,
            show_progress=False,
        )
    del fresh


def test_a_crash_mid_shard_leaves_no_finished_looking_shard(
    llm, passages, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = llm.generate

    def dies_on_third_call(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(llm, "generate", dies_on_third_call)
    with pytest.raises(KeyboardInterrupt):
        generate_queries(
            passages,
            tmp_path,
            llm=llm,
            config=GenerateConfig(temperature=0.0, max_attempts=1),
            shard_size=2,
            show_progress=False,
        )
    assert [p.name for p in (tmp_path / "queries").iterdir()] == ["part-00000.parquet"]
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    assert (
        pq.read_table(tmp_path / "queries" / "part-00000.parquet").num_rows
        + pq.read_table(tmp_path / "rejects" / "part-00000.parquet").num_rows
        >= 2
    )


def test_summary_counts_passages_and_query_slots_left_empty() -> None:
    """Two slots for each of three passages: p1 fills both, p2 one, p3 none. Passages
    without a query and empty slots are different counts."""
    import pyarrow as pa

    from geckokit.fret.generate_run import summarize

    def q(pid: str) -> dict[str, object]:
        return {"passage_id": pid, "task_type": "fact checking", "query": "a b c", "seconds": 1.0}

    def r(pid: str, final: bool) -> dict[str, object]:
        return {"passage_id": pid, "reject_reason": "too_short", "final": final, "seconds": 1.0}

    queries = pa.Table.from_pylist([q("p1"), q("p1"), q("p2")])
    rejects = pa.Table.from_pylist([r("p2", False), r("p2", True), r("p3", True), r("p3", True)])
    s = summarize(queries, rejects, 3)
    assert s["passages_without_query"] == 1  # p3
    assert s["slots_without_query"] == 3  # p2's second, p3's two
    assert s["attempts"] == 7 and s["reject_rate"] == round(4 / 7, 4)
