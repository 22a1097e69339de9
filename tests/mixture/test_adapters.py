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


def base(table: pa.Table) -> list[dict[str, object]]:
    """The rows' text columns (the FRet-only ranking columns left aside)."""
    return table.select(["task", "query", "positive", "negative", "source"]).to_pylist()


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
    rows = base(from_nli(f, task="nli"))
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
    rows = base(from_classification(f, task="intent", source="bank"))
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
    rows = base(from_sts(f, min_score=4.0, task="sim"))
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
    (row,) = base(from_qa_pairs(f, task="qa"))
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
    rows = base(from_claims(f, task="fc"))
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
    assert {k: row[k] for k in ("task", "query", "positive", "negative", "source")} == {
        "task": "t",
        "query": query_text("t", "q"),
        "positive": document_text("P", "pos"),
        "negative": document_text("", "neg"),
        "source": "fret",
    }
    # a fret table of the oldest layout (no candidates) still mixes, without a ranking
    assert row["negative_id"] == "n1" and row["candidate_ids"] is None
    assert row["candidate_texts"] is None and row["ql_scores"] is None


def test_fret_rows_carry_every_candidate_with_its_text_and_scores(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import math

    from tests.conftest import fret_table

    passages = {f"p{i}": {"title": f"Title {i}", "text": f"text of passage {i}"} for i in range(10)}
    fret = fret_table(
        passages, [("find it", "first query"), ("find it", "second query")], per_query=5
    )
    assert fret["candidate_titles"].to_pylist()[0] == [f"Title {i}" for i in range(5)]
    assert fret["candidate_texts"].to_pylist()[1] == [f"text of passage {i}" for i in range(5, 10)]
    table = from_fret(fret, source="fret:run")
    for f, m in zip(fret.to_pylist(), table.to_pylist(), strict=True):
        assert m["positive_id"] == f["positive_id"] and m["negative_id"] == f["negative_ids"][0]
        assert m["candidate_ids"] == f["candidate_ids"]
        assert m["candidate_texts"] == [
            document_text(passages[c]["title"], passages[c]["text"]) for c in f["candidate_ids"]
        ]
        # the positive's and the negative's texts are those of their candidates
        assert m["positive"] == m["candidate_texts"][m["candidate_ids"].index(m["positive_id"])]
        assert m["negative"] == m["candidate_texts"][m["candidate_ids"].index(m["negative_id"])]
        for column in ("encoder_scores", "rc_scores", "fused_scores"):
            assert m[column] == f[column]
        assert math.isnan(m["ql_scores"][2])  # a missing score stays missing
        assert m["ql_scores"][:2] == f["ql_scores"][:2]
    assert "no candidate texts" not in caplog.text

    # a fret table written before the candidates' texts were stored: ids and scores, no texts
    old = fret.drop_columns(["candidate_titles", "candidate_texts"])
    with caplog.at_level("WARNING"):
        rows = from_fret(old).to_pylist()
    assert "no candidate texts" in caplog.text and "rerun `geckokit mine`" in caplog.text
    assert rows[0]["candidate_ids"] == fret["candidate_ids"].to_pylist()[0]
    assert rows[0]["candidate_texts"] is None


def test_other_sources_leave_the_ranking_columns_null(tmp_path: Path) -> None:
    f = jsonl(
        tmp_path / "sts.jsonl",
        [{"sentence1": "a cat sits", "sentence2": "a cat is sitting", "score": 4.5}],
    )
    table = from_sts(f)
    for column in ("positive_id", "negative_id", "candidate_ids", "candidate_texts", "ql_scores"):
        assert table[column].null_count == table.num_rows


def test_beir_train_qrels(shared_data: Path) -> None:
    table = from_beir_pairs(shared_data / "beir" / "scifact", split="train")
    assert table.num_rows == 919  # SciFact's train qrels
    row = table.slice(0, 1).to_pylist()[0]
    assert row["query"].startswith("task: fact checking | query: ") and row["positive"].startswith(
        "title: "
    )
    assert row["source"] == "beir:scifact"
