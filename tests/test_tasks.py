"""Task strings are defined once (geckokit.tasks): the trained model's prompts are the unified
format, and a benchmark is trained on (``mix --pairs``) with the task it is evaluated with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import geckokit
from geckokit import tasks
from geckokit.format import document_text, query_text
from geckokit.mixture import from_beir_pairs
from geckokit.mixture.build import build_mixture
from geckokit.tasks import (
    DEFAULT_QUERY_TASK,
    DOCUMENT_PROMPT,
    QUERY_PROMPT,
    TASK_STRINGS,
    pairs_task,
    rerank_task,
    task_string,
)


def test_saved_prompts_are_what_format_builds() -> None:
    for text in ("how do bees communicate", "x"):
        assert QUERY_PROMPT + text == query_text(DEFAULT_QUERY_TASK, text)
        assert DOCUMENT_PROMPT + text == document_text(None, text)
    # the strings trained models carry in their config (changing them changes every model)
    assert QUERY_PROMPT == "task: search result | query: "
    assert DOCUMENT_PROMPT == "title: none | text: "


def _beir(folder: Path) -> Path:
    """A two-passage BEIR folder with one judged train query."""
    folder.mkdir(parents=True)
    passages = [{"_id": "d1", "title": "Bees", "text": "Bees dance."}, {"_id": "d2", "text": "x"}]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(p) for p in passages) + "\n")
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "do bees dance"}) + "\n")
    (folder / "qrels").mkdir()
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return folder


#: every benchmark with an evaluation string, the shared BEIR sets, and one unknown to both
BENCHMARKS = sorted({*TASK_STRINGS, "SciFact", "cranfield", "cisi", "cacm", "my-own-set"})


@pytest.mark.parametrize("name", BENCHMARKS)
def test_pairs_train_with_the_task_evaluation_uses(tmp_path: Path, name: str) -> None:
    folder = _beir(tmp_path / name)
    (row,) = from_beir_pairs(folder).to_pylist()
    evaluated = task_string(name, "retrieval")
    assert row["task"] == pairs_task(name) == evaluated
    assert row["query"] == query_text(evaluated, "do bees dance")


def test_scifact_trains_and_evaluates_with_fact_checking(tmp_path: Path) -> None:
    """Paper Table 9's string; rerank-eval keeps its longer instruction for the LLM judge."""
    manifest = build_mixture(tmp_path / "mix", pairs=[_beir(tmp_path / "scifact")])
    assert manifest["sources"] == {"beir:scifact": 1}
    assert task_string("scifact", "retrieval") == pairs_task("scifact") == "fact checking"
    assert rerank_task("scifact").startswith("Given a scientific claim")
    assert rerank_task("my-own-set") == tasks.RERANK_DEFAULT_TASK


def test_each_instruction_string_is_written_in_one_module() -> None:
    """The long task strings and the prompts appear in geckokit/tasks.py and nowhere else in
    the package, so that no module keeps a copy that can drift."""
    strings = [
        QUERY_PROMPT,
        tasks.NLI_TASK,
        tasks.STS_TASK,
        tasks.QA_TASK,
        tasks.CLAIMS_TASK,
        tasks.RERANK_DEFAULT_TASK,
        *tasks.CLASSIFICATION_TASKS.values(),
        *tasks.RERANK_TASKS.values(),
    ]
    root = Path(geckokit.__file__).parent
    for path in root.rglob("*.py"):
        if path.name == "tasks.py" and path.parent == root:
            continue
        source = path.read_text(encoding="utf-8")
        copies = [s for s in strings if s.strip() in source]
        assert not copies, f"{path.relative_to(root)} holds its own copy of {copies}"
