"""Reading text pairs for pre-finetuning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geckokit.train.pairs import load_pairs


def _jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_question_answer_pairs_take_the_unified_format(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "qa.jsonl",
        [
            {"question": "Who wrote Hamlet?", "answer": "Shakespeare wrote it."},
            {"question": "What is H2O?", "answer": "Water.", "task": "question answering"},
            {"question": "   ", "answer": "dropped: empty question"},
        ],
    )
    table = load_pairs(path, task="search result")
    assert table.to_pydict() == {
        "query": [
            "task: search result | query: Who wrote Hamlet?",
            "task: question answering | query: What is H2O?",
        ],
        "positive": ["title: none | text: Shakespeare wrote it.", "title: none | text: Water."],
        "source": ["pairs:question-answer"] * 2,
    }


def test_title_body_pairs_from_a_csv_and_a_corpus_folder(tmp_path: Path) -> None:
    csv = tmp_path / "pairs.csv"
    csv.write_text("title,body\nCats,Cats purr.\nDogs,Dogs bark.\n")
    assert load_pairs(csv).column("query").to_pylist() == [
        "task: search result | query: Cats",
        "task: search result | query: Dogs",
    ]
    beir = tmp_path / "beir"
    beir.mkdir()
    _jsonl(
        beir / "corpus.jsonl",
        [
            {"_id": "1", "title": "Cats", "text": "Cats purr."},
            {"_id": "2", "title": "", "text": "No title: not a pair."},
            {"_id": "3", "title": "Dogs", "text": "Dogs bark."},
        ],
    )
    table = load_pairs(beir)
    assert table.column("positive").to_pylist() == [
        "title: none | text: Cats purr.",
        "title: none | text: Dogs bark.",
    ]
    assert set(table.column("source").to_pylist()) == {"pairs:title-text"}


def test_bad_pairs_are_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        load_pairs(tmp_path / "missing.jsonl")
    wrong = _jsonl(tmp_path / "wrong.jsonl", [{"premise": "a", "hypothesis": "b"}])
    with pytest.raises(ValueError, match=r"no pair columns.*\(question, answer\)"):
        load_pairs(wrong)
    one = _jsonl(tmp_path / "one.jsonl", [{"query": "q", "positive": "p"}])
    with pytest.raises(ValueError, match="at least a batch"):
        load_pairs(one)
    txt = tmp_path / "pairs.txt"
    txt.write_text("x")
    with pytest.raises(ValueError, match=r"\.jsonl, \.parquet or \.csv"):
        load_pairs(txt)
