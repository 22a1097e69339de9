"""Mixture adapters: unified format, positives and negatives as each set defines them."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from geckokit.format import document_text, query_text
from geckokit.mixture import (
    from_beir_pairs,
    from_claims,
    from_classification,
    from_fret,
    from_nli,
    from_qa_pairs,
    from_sts,
)


def jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_unified_format() -> None:
    assert query_text("fact checking", " a claim ") == "task: fact checking | query: a claim"
    assert document_text(None, "body") == "title: none | text: body"
    assert document_text("T", "body") == "title: T | text: body"


def test_nli_entailment_positive_contradiction_negative(tmp_path: Path) -> None:
    f = jsonl(
        tmp_path / "nli.jsonl",
        [
            {
                "premise": "A man plays guitar.",
                "hypothesis": "A man makes music.",
                "label": "entailment",
            },
            {
                "premise": "A man plays guitar.",
                "hypothesis": "A man sleeps.",
                "label": "contradiction",
            },
            {"premise": "A man plays guitar.", "hypothesis": "He is famous.", "label": "neutral"},
            {"premise": "Only neutral.", "hypothesis": "x", "label": "neutral"},
        ],
    )
    rows = from_nli(f, task="nli").to_pylist()
    assert rows == [
        {
            "task": "nli",
            "query": query_text("nli", "A man plays guitar."),
            "positive": query_text("nli", "A man makes music."),
            "negative": query_text("nli", "A man sleeps."),
            "source": "nli",
        }
    ]


def test_classification_same_label_positive_and_unique_id(tmp_path: Path) -> None:
    f = jsonl(
        tmp_path / "c.jsonl",
        [{"text": f"pay {i}", "label": 0} for i in range(3)]
        + [{"text": f"card {i}", "label": 1} for i in range(3)],
    )
    rows = from_classification(f, task="intent", source="bank").to_pylist()
    assert len(rows) == 6
    for r in rows:
        uid = r["query"].rsplit("[", 1)[1]
        assert r["positive"].endswith("[" + uid) and r["negative"].endswith("[" + uid)
        q_kind = r["query"].split("query: ")[1].split()[0]
        assert r["positive"].split("query: ")[1].split()[0] == q_kind  # same label
        assert r["negative"].split("query: ")[1].split()[0] != q_kind  # another label
        assert r["positive"] != r["query"]
    assert len({r["query"].rsplit("[", 1)[1] for r in rows}) == 6
    with pytest.raises(ValueError, match="at least two labels"):
        from_classification(
            jsonl(tmp_path / "one.jsonl", [{"text": "a", "label": 0}, {"text": "b", "label": 0}]),
            task="t",
            source="s",
        )


def test_sts_threshold_and_both_directions(tmp_path: Path) -> None:
    f = jsonl(
        tmp_path / "sts.jsonl",
        [
            {"sentence1": "a", "sentence2": "b", "score": 4.5},
            {"sentence1": "c", "sentence2": "d", "score": 2.0},
        ],
    )
    rows = from_sts(f, min_score=4.0, task="sim").to_pylist()
    assert [(r["query"], r["positive"], r["negative"]) for r in rows] == [
        (query_text("sim", "a"), query_text("sim", "b"), ""),
        (query_text("sim", "b"), query_text("sim", "a"), ""),
    ]


def test_qa_pairs_and_missing_fields(tmp_path: Path) -> None:
    f = jsonl(
        tmp_path / "qa.jsonl",
        [
            {"question": "who?", "answer_sentence": "Ann did.", "label": 1},
            {"question": "who?", "answer_sentence": "It rained.", "label": 0},
        ],
    )
    (row,) = from_qa_pairs(f, task="qa").to_pylist()
    assert row["positive"] == document_text(None, "Ann did.") and row["negative"] == document_text(
        None, "It rained."
    )
    with pytest.raises(ValueError, match="missing hypothesis"):
        from_nli(jsonl(tmp_path / "bad.jsonl", [{"premise": "p", "label": "entailment"}]))


def test_claims_relevant_evidence_positive_nei_negative(tmp_path: Path) -> None:
    f = jsonl(
        tmp_path / "claims.jsonl",
        [
            {
                "claim": "Sea ice is shrinking.",
                "evidences": [
                    {"evidence": "Ice cover fell.", "evidence_label": "SUPPORTS", "article": "Ice"},
                    {
                        "evidence": "Seals swim.",
                        "evidence_label": "NOT_ENOUGH_INFO",
                        "article": "Seal",
                    },
                    {"evidence": "Ice grew.", "evidence_label": "REFUTES", "article": "Ice"},
                ],
            },
            {  # nothing relevant: skipped
                "claim": "Cats fly.",
                "evidences": [{"evidence": "Cats purr.", "evidence_label": "NOT_ENOUGH_INFO"}],
            },
        ],
    )
    rows = from_claims(f, task="fc").to_pylist()
    assert [(r["positive"], r["negative"]) for r in rows] == [
        (document_text("Ice", "Ice cover fell."), document_text("Seal", "Seals swim.")),
        (document_text("Ice", "Ice grew."), document_text("Seal", "Seals swim.")),
    ]
    assert rows[0]["query"] == query_text("fc", "Sea ice is shrinking.")
    bad = jsonl(
        tmp_path / "bad.jsonl",
        [{"claim": "c", "evidences": [{"evidence": "e", "evidence_label": "MAYBE"}]}],
    )
    with pytest.raises(ValueError, match="evidence_label 'MAYBE' is not one of"):
        from_claims(bad)
    with pytest.raises(ValueError, match="missing evidences"):
        from_claims(jsonl(tmp_path / "none.jsonl", [{"claim": "c"}]))


def test_claims_on_climate_fever(shared_data: Path) -> None:
    table = from_claims(shared_data / "training_pairs/climate_fever/test.jsonl")
    # 2,745 supporting or refuting evidences of 1,061 claims; 947 of the claims also have
    # a NOT_ENOUGH_INFO evidence, which gives 2,175 rows a hard negative
    assert table.num_rows == 2745
    assert sum(1 for n in table["negative"].to_pylist() if n) == 2175


def test_fret_rows_use_the_chosen_positive_and_negative() -> None:
    fret = pa.table(
        {
            "task": ["t"],
            "query": ["q"],
            "positive_title": ["P"],
            "positive_text": ["pos"],
            "negative_ids": [["n1"]],
            "negative_titles": [[""]],
            "negative_texts": [["neg"]],
        }
    )
    (row,) = from_fret(fret).to_pylist()
    assert row == {
        "task": "t",
        "query": query_text("t", "q"),
        "positive": document_text("P", "pos"),
        "negative": document_text("", "neg"),
        "source": "fret",
    }


def test_beir_train_qrels(shared_data: Path) -> None:
    table = from_beir_pairs(shared_data / "beir" / "scifact", split="train")
    assert table.num_rows == 919  # SciFact's train qrels
    row = table.slice(0, 1).to_pylist()[0]
    assert row["query"].startswith("task: Given a scientific claim") and row["positive"].startswith(
        "title: "
    )
    assert row["source"] == "beir:scifact"
