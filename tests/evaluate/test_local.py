"""Local benchmark files: kind detection, task specs, readers and their errors; task strings;
model facts (dims, formats)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from geckokit.evaluate.local import (
    TaskKind,
    detect_kind,
    load_local,
    parse_task_spec,
)
from geckokit.evaluate.models import ModelInfo, PromptFormat, eval_dims
from geckokit.tasks import task_string


def _jsonl(path: Path, rows: list[dict]) -> None:  # type: ignore[type-arg]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_kinds_of_the_shared_benchmarks(shared_data: Path) -> None:
    assert detect_kind(shared_data / "beir" / "scifact") is TaskKind.RETRIEVAL
    assert detect_kind(shared_data / "sts" / "sick") is TaskKind.STS
    assert detect_kind(shared_data / "sts" / "stsbenchmark" / "test.jsonl") is TaskKind.STS
    assert detect_kind(shared_data / "pair_classification" / "mrpc") is TaskKind.PAIR_CLASSIFICATION
    assert detect_kind(shared_data / "classification" / "banking77") is TaskKind.CLASSIFICATION


def test_task_specs(shared_data: Path, tmp_path: Path) -> None:
    banking = shared_data / "classification" / "banking77"
    spec = parse_task_spec(f"clustering:{banking}")
    assert (spec.kind, spec.name, spec.path) == (
        TaskKind.CLUSTERING,
        "banking77-clustering",
        banking,
    )
    spec = parse_task_spec(str(shared_data / "sts" / "stsbenchmark" / "test.jsonl"))
    assert (spec.kind, spec.name) == (TaskKind.STS, "stsbenchmark")
    assert parse_task_spec("SciFact").kind is None  # an MTEB task name
    with pytest.raises(ValueError, match="does not exist"):
        parse_task_spec(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="does not exist"):
        parse_task_spec("sts:nowhere.jsonl")
    with pytest.raises(ValueError, match="empty task"):
        parse_task_spec("  ")
    _jsonl(tmp_path / "odd" / "test.jsonl", [{"foo": 1}])
    with pytest.raises(ValueError, match=r"cannot tell the task kind .* KIND:PATH"):
        parse_task_spec(str(tmp_path / "odd"))


def test_readers(shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    scifact = load_local(parse_task_spec(str(shared_data / "beir" / "scifact")))
    assert (scifact.split, len(scifact.data.queries), len(scifact.data.corpus)) == (
        "test",
        300,
        5183,
    )
    mrpc = load_local(parse_task_spec(str(shared_data / "pair_classification" / "mrpc")))
    assert mrpc.split == "test" and len(mrpc.data.values) == 1725
    assert set(mrpc.data.values) == {0.0, 1.0}
    with caplog.at_level(logging.WARNING):
        sentiment = load_local(
            parse_task_spec(str(shared_data / "classification" / "tweeteval_sentiment"))
        )
    assert sentiment.train_split == "validation" and "no train split" in caplog.text
    train, test = sentiment.data
    assert len(train.texts) == len(train.labels) and len(test.texts) > 0


def test_reader_errors_and_revisions(tmp_path: Path) -> None:
    _jsonl(tmp_path / "cls" / "test.jsonl", [{"text": "a", "label": 0}])
    with pytest.raises(ValueError, match="no training split"):
        load_local(parse_task_spec(str(tmp_path / "cls")))
    _jsonl(tmp_path / "pairs" / "test.jsonl", [{"sentence1": "a", "sentence2": "b", "label": 2}])
    with pytest.raises(ValueError, match="must be 0 or 1"):
        load_local(parse_task_spec(str(tmp_path / "pairs")))
    _jsonl(
        tmp_path / "sts" / "test.jsonl",
        [{"sentence1": "a", "sentence2": "b", "score": 1}, {"sentence1": "a", "score": 2}],
    )
    with pytest.raises(ValueError, match=r"test.jsonl:2: missing sentence2"):
        load_local(parse_task_spec(str(tmp_path / "sts")))
    _jsonl(tmp_path / "sts" / "test.jsonl", [{"sentence1": "a", "sentence2": "b", "score": 1}])
    first = load_local(parse_task_spec(str(tmp_path / "sts"))).revision
    _jsonl(tmp_path / "sts" / "test.jsonl", [{"sentence1": "a", "sentence2": "c", "score": 1}])
    assert load_local(parse_task_spec(str(tmp_path / "sts"))).revision != first


def test_task_strings_follow_table_9() -> None:
    assert task_string("SciFact", "retrieval") == "fact checking"
    assert task_string("nfcorpus", "retrieval") == "fact checking"
    assert task_string("FiQA2018", "retrieval") == "question answering"
    assert task_string("ArguAna", "retrieval") == "semantic similarity"
    assert task_string("cranfield", "retrieval") == "search result"
    assert task_string("stsbenchmark", "sts") == "sentence similarity"
    assert task_string("mrpc", "pair_classification") == "sentence similarity"
    assert task_string("banking77", "classification") == "classification"
    assert task_string("banking77-clustering", "clustering") == "clustering"
    with pytest.raises(ValueError, match="unknown task kind 'ranking'"):
        task_string("x", "ranking")


def test_dims_and_formats() -> None:
    plain = ModelInfo("m", "m", "m", "r")
    trained = ModelInfo(
        "t",
        "t",
        "t",
        "r",
        {"prompts": {"query": "task: search result | query: "}, "matryoshka_dims": [384, 256, 64]},
    )
    assert eval_dims(None, 384, plain) == [384]
    assert eval_dims(None, 384, trained) == [384, 256, 64]
    assert eval_dims([128, 384, 128], 384, plain) == [384, 128]
    with pytest.raises(ValueError, match=r"width 384; every dim must lie in \[1, 384\]"):
        eval_dims([512], 384, plain)
    assert plain.formats([PromptFormat.AUTO]) == [PromptFormat.PLAIN]
    assert trained.formats([PromptFormat.AUTO, PromptFormat.GECKO]) == [PromptFormat.GECKO]
    with pytest.raises(ValueError, match="valid: auto, gecko, plain"):
        PromptFormat.parse("fancy")


def test_import_stays_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, geckokit.evaluate\n"
        "print([m for m in ('mteb', 'torch', 'sentence_transformers', 'datasets') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
