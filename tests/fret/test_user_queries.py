"""Reading the user's own queries: every format, the skipped and dropped ones, the errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from geckokit.fret.user_queries import (
    QUERY_SCHEMA,
    generated_queries,
    read_user_queries,
    stable_id,
)


def test_jsonl_takes_the_query_or_text_field_and_an_id_field(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    records = [
        {"_id": "a1", "query": "how to delete a file", "clicks": 3},
        {"id": 7, "text": "format a date"},  # a numeric id becomes a string
        {"query_id": "c", "query": "  "},  # empty: skipped
        {"query": "read a JSON file"},  # no id: derived from the text
        {"query": "how to  delete a file "},  # the first one again, whitespace aside
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "\n")
    got = read_user_queries(path, task="code search")
    assert got.queries.schema == QUERY_SCHEMA
    rows = got.queries.to_pylist()
    assert [r["query_id"] for r in rows] == ["a1", "7", stable_id("read a JSON file")]
    assert [r["query"] for r in rows] == [
        "how to delete a file",
        "format a date",
        "read a JSON file",
    ]
    assert all(r["passage_id"] is None and r["task_type"] is None for r in rows)
    assert {r["task"] for r in rows} == {"code search"} and {r["source"] for r in rows} == {"user"}
    # five records and a blank line read: two empty, one repeat
    assert got.counts == {"read": 6, "empty": 2, "duplicates": 1, "queries": 3}
    assert got.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert got.record() == {
        "source": str(path),
        "sha256": got.sha256,
        "task": "code search",
        **got.counts,
    }


def test_a_derived_id_is_the_same_in_every_run(tmp_path: Path) -> None:
    assert stable_id("read a JSON file") == stable_id("read  a JSON file\n")
    assert stable_id("read a JSON file").startswith("user:") and len(stable_id("x")) == 21
    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    one.write_text("read a JSON file\nformat a date\n")
    two.write_text("format a date\n\nread a JSON file")
    ids = {r["query"]: r["query_id"] for r in read_user_queries(one).queries.to_pylist()}
    assert ids == {r["query"]: r["query_id"] for r in read_user_queries(two).queries.to_pylist()}


def test_csv_and_tsv_take_a_query_or_text_column(tmp_path: Path) -> None:
    csv = tmp_path / "log.csv"
    csv.write_text('id,query,count\n1,"sort a list, descending",4\n2,,1\n3,sort a list\n')
    got = read_user_queries(csv)
    assert got.queries["query_id"].to_pylist() == ["1", "3"]
    assert got.queries["query"].to_pylist() == ["sort a list, descending", "sort a list"]
    assert got.queries["task"].to_pylist() == ["search result"] * 2  # the default task
    assert got.counts == {"read": 3, "empty": 1, "duplicates": 0, "queries": 2}
    tsv = tmp_path / "log.tsv"
    tsv.write_text("text\tuser\nsort a list\tx\nsort a list\ty\n")
    got = read_user_queries(tsv)
    assert got.queries["query"].to_pylist() == ["sort a list"]
    assert got.queries["query_id"].to_pylist() == [stable_id("sort a list")]
    assert got.counts == {"read": 2, "empty": 0, "duplicates": 1, "queries": 1}


def test_plain_text_is_one_query_a_line(tmp_path: Path) -> None:
    path = tmp_path / "queries.txt"
    path.write_text("\ufeffwhat is a closure\n\n   \nwhat is a closure\nlist comprehension\n")
    got = read_user_queries(path)
    assert got.queries["query"].to_pylist() == ["what is a closure", "list comprehension"]
    assert got.counts == {"read": 5, "empty": 2, "duplicates": 1, "queries": 2}


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "fine"}\n{"query": "cut off\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not valid JSON .*one JSON object a line"):
        read_user_queries(bad)
    bad.write_text('{"query": "fine"}\n["a list"]\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not a JSON object"):
        read_user_queries(bad)
    bad.write_text('{"question": "no field"}\n')
    with pytest.raises(
        ValueError, match=r"bad\.jsonl:1: no 'query' or 'text' field in \['question'\]"
    ):
        read_user_queries(bad)
    bad.write_text('{"query": 42}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: the query 42 is not a string"):
        read_user_queries(bad)
    bad.write_text('{"_id": "q", "query": "one"}\n{"_id": "q", "query": "two"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: query id 'q' was already given .* line 1"):
        read_user_queries(bad)
    csv = tmp_path / "bad.csv"
    csv.write_text("question,answer\nwhy,because\n")
    with pytest.raises(
        ValueError, match=r"bad\.csv:1: no 'query' or 'text' column .* name the CSV column"
    ):
        read_user_queries(csv)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(
        ValueError, match=r"empty\.txt: no queries found \(2 records read, 2 empty\)"
    ):
        read_user_queries(empty)
    with pytest.raises(ValueError, match=r"missing\.txt: no such queries file"):
        read_user_queries(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="task of the user queries is empty"):
        read_user_queries(empty, task=" ")


def test_generated_queries_take_the_same_schema() -> None:
    generated = pa.table(
        {
            "query_id": ["p1:q0"],
            "passage_id": ["p1"],
            "task_type": ["question answering"],
            "task": ["Given a question, retrieve passages that answer it."],
            "query": ["what is p1 about"],
            "raw": ["{...}"],
        }
    )
    got = generated_queries(generated)
    assert got.schema == QUERY_SCHEMA and got["source"].to_pylist() == ["generated"]
    assert got["passage_id"].to_pylist() == ["p1"]


# --- in FRet step 2: plumbing on hand-made vectors and scores (the real models: test_mine.py)


class _WordEncoder:
    """A deterministic test encoder: a text's vector counts the words of a small vocabulary."""

    words = ("file", "date", "json", "list")

    def encode(self, texts: list[str], **kwargs: object) -> np.ndarray:
        vectors = np.array(
            [[t.lower().count(w) for w in self.words] for t in texts], dtype=np.float32
        )
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)


PASSAGES = pa.table(
    {
        "passage_id": ["p-file", "p-date", "p-json", "p-list"],
        "title": ["", "", "", ""],
        "text": ["delete a file", "format a date", "parse json", "sort a list"],
    }
)


def _candidates(queries: pa.Table, top_n: int = 2) -> pa.Table:
    from geckokit.fret.retrieve import retrieve_candidates

    encoder = _WordEncoder()
    return retrieve_candidates(
        queries,
        PASSAGES,
        encoder=encoder,
        passage_embeddings=encoder.encode(PASSAGES["text"].to_pylist()),
        top_n=top_n,
        show_progress=False,
    )


def _queries(tmp_path: Path) -> pa.Table:
    """A generated query seeded on p-list that asks about dates, and two user queries."""
    generated = pa.table(
        {
            "query_id": ["p-list:q0"],
            "passage_id": ["p-list"],
            "task_type": ["question answering"],
            "task": ["Given a question, retrieve passages that answer it."],
            "query": ["which date format"],
        }
    )
    path = tmp_path / "log.txt"
    path.write_text("open a json file\nformat a date\n")
    user = read_user_queries(path).queries
    return pa.concat_tables([generated_queries(generated), user])


def test_a_user_query_keeps_the_top_n_and_has_no_seed(tmp_path: Path) -> None:
    candidates = _candidates(_queries(tmp_path))
    rows = candidates.to_pylist()
    # the generated query's seed was missed: it replaces the N-th candidate
    assert rows[0]["candidate_ids"] == ["p-date", "p-list"] and rows[0]["seed_retrieved"] is False
    # the user's: the top 2 as retrieved, nothing forced in
    assert [r["seed_id"] for r in rows[1:]] == [None, None]
    assert [r["seed_retrieved"] for r in rows[1:]] == [None, None]
    assert rows[1]["candidate_ids"][0] in {"p-file", "p-json"}
    assert rows[2]["candidate_ids"][0] == "p-date" and len(rows[2]["candidate_ids"]) == 2
    assert rows[1]["encoder_scores"] == sorted(rows[1]["encoder_scores"], reverse=True)
    # drop_solved compares the first candidate with the seed: the user's queries stay
    from geckokit.fret.mine_run import unsolved

    assert unsolved(candidates)["query_id"].to_pylist() == candidates["query_id"].to_pylist()
    solved = candidates.filter(pc.equal(candidates["query_id"], "p-list:q0"))
    first = solved.set_column(
        solved.schema.get_field_index("seed_id"), "seed_id", pa.array(["p-date"])
    )
    assert unsolved(pa.concat_tables([first, candidates.slice(1)])).num_rows == 2


def test_the_fused_ranking_picks_a_user_querys_positive(tmp_path: Path) -> None:
    from geckokit.fret.fusion import Fusion
    from geckokit.fret.mine_run import FRET_SCHEMA, SCORE_SCHEMA, MineConfig, build_fret, summarize
    from geckokit.mixture.adapters import from_fret

    candidates = _candidates(_queries(tmp_path), top_n=3)
    # QL prefers each query's last candidate, RC agrees: it becomes the positive
    rows = [
        {"query_id": q, "passage_id": p, "ql": -5.0 + i, "rc": -3.0 + i}
        for q, cands in zip(
            candidates["query_id"].to_pylist(),
            candidates["candidate_ids"].to_pylist(),
            strict=True,
        )
        for i, p in enumerate(cands)
    ]
    scores = pa.Table.from_pylist(
        [{**r, "label_logprobs": [], "seconds": 0.0} for r in rows], schema=SCORE_SCHEMA
    )
    passages = {r["passage_id"]: r for r in PASSAGES.to_pylist()}
    fret = build_fret(candidates, scores, passages, MineConfig(top_n=3, fusion=Fusion.RRF))
    assert fret.schema == FRET_SCHEMA
    for row in fret.to_pylist():
        assert row["positive_id"] == row["candidate_ids"][-1]  # the LLM's top choice
        assert row["negative_ids"] == [row["candidate_ids"][0]]  # rank N of the fused order
    generated, *user = fret.to_pylist()
    assert generated["source"] == "generated" and generated["seed_id"] == "p-list"
    assert generated["seed_rank"] == 1 and generated["relabelled"] is False
    assert [(r["source"], r["seed_id"], r["seed_rank"], r["relabelled"]) for r in user] == [
        ("user", None, None, None)
    ] * 2
    summary = summarize(fret)
    assert summary["examples"] == 3
    assert (summary["generated_queries"], summary["user_queries"]) == (1, 2)
    assert summary["relabel_rate"] == 0.0 and summary["seed_rank_mean"] == 1.0  # generated only
    only_user = summarize(fret.slice(1))
    assert only_user["user_queries"] == 2 and only_user["generated_queries"] == 0
    assert only_user["relabel_rate"] is None and only_user["seed_rank_mean"] is None
    assert only_user["seed_at_rank_1"] is None and only_user["positive_first_for_encoder"] == 0.0
    mixed = from_fret(fret, source="fret:m")
    assert mixed.num_rows == 3 and all(r["positive"] and r["negative"] for r in mixed.to_pylist())
    assert mixed["query"].to_pylist()[1] == "task: search result | query: open a json file"
    # the seed fusion has nothing to keep as a user query's positive
    with pytest.raises(ValueError, match="seed fusion needs the seed's index"):
        build_fret(candidates, None, passages, MineConfig(top_n=3, fusion=Fusion.SEED))


def test_settings_that_need_a_seed_are_refused_with_user_queries(tmp_path: Path) -> None:
    from geckokit.fret.fusion import Fusion
    from geckokit.fret.mine_run import MineConfig, check_seedless

    log = tmp_path / "log.txt"
    with pytest.raises(ValueError, match=r"seed fusion .*log\.txt have none; choose an LLM"):
        check_seedless(MineConfig(fusion=Fusion.SEED), log, generated=True)
    with pytest.raises(ValueError, match=r"warmup_encoder fine-tunes on .* turn it off"):
        check_seedless(MineConfig(warmup_encoder=True), log, generated=False)
    check_seedless(MineConfig(warmup_encoder=True), log, generated=True)  # on the generated
    check_seedless(MineConfig(fusion=Fusion.SEED), None, generated=True)  # no user queries
