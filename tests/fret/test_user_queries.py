"""Reading the user's own queries: every format, the skipped and dropped ones, the errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
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
