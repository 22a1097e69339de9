"""Corpus loading: every layout, normalisation, splitting, dropping and bad input."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from geckokit.corpus import CorpusError, count_tokens, load_corpus, split_passage
from geckokit.corpus.load import content_id


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_jsonl_fields_are_normalised(tmp_path: Path) -> None:
    f = write_jsonl(
        tmp_path / "c.jsonl",
        [{"_id": "a", "title": "T", "text": "alpha text"}, {"id": 7, "body": "beta text"}],
    )
    corpus = load_corpus(f)
    assert corpus.passages.column_names == ["passage_id", "title", "text"]
    assert corpus.passages.to_pylist() == [
        {"passage_id": "a", "title": "T", "text": "alpha text"},
        {"passage_id": "7", "title": "", "text": "beta text"},
    ]


def test_ids_derived_stably_from_content(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "c.jsonl", [{"text": "one"}, {"text": "two"}])
    first = load_corpus(f).passages["passage_id"].to_pylist()
    again = load_corpus(f).passages["passage_id"].to_pylist()
    assert first == again == [content_id("", "one"), content_id("", "two")]
    assert load_corpus(f).stats.derived_ids == 2


def test_duplicate_ids_are_named(tmp_path: Path) -> None:
    f = write_jsonl(
        tmp_path / "c.jsonl",
        [{"_id": "x", "text": "a"}, {"_id": "x", "text": "b"}, {"_id": "y", "text": "c"}],
    )
    with pytest.raises(CorpusError, match="duplicate passage ids: 'x'"):
        load_corpus(f)


def test_empty_and_duplicate_passages_are_dropped_and_counted(tmp_path: Path) -> None:
    f = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"_id": "1", "text": "same"},
            {"_id": "2", "text": "   "},
            {"_id": "3", "text": "same"},
            {"_id": "4", "text": "other"},
        ],
    )
    corpus = load_corpus(f)
    assert corpus.passages["passage_id"].to_pylist() == ["1", "4"]
    assert (corpus.stats.dropped_empty, corpus.stats.dropped_duplicate, corpus.stats.documents) == (
        1,
        1,
        4,
    )


def test_invalid_utf8_reports_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "c.jsonl"
    f.write_bytes(b'{"_id": "1", "text": "fine"}\n{"_id": "2", "text": "bad \xff byte"}\n')
    with pytest.raises(CorpusError, match=r"c\.jsonl:2: invalid UTF-8"):
        load_corpus(f)
    corpus = load_corpus(f, errors="skip")
    assert corpus.passages.num_rows == 1 and "c.jsonl:2" in corpus.stats.skipped_invalid[0]


def test_bad_json_line_is_reported(tmp_path: Path) -> None:
    f = tmp_path / "c.jsonl"
    f.write_text('{"_id": "1", "text": "ok"}\n{"_id": "2", "text": \n')
    with pytest.raises(CorpusError, match=r"c\.jsonl:2: not valid JSON"):
        load_corpus(f)


def test_missing_text_field(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "c.jsonl", [{"_id": "1", "sentence": "x"}])
    with pytest.raises(CorpusError, match=r"no text field.*found _id, sentence"):
        load_corpus(f)


def test_parquet_csv_and_text_folder(tmp_path: Path) -> None:
    pq.write_table(
        pa.table({"doc_id": ["d1"], "title": ["P"], "contents": ["parquet text"]}),
        tmp_path / "c.parquet",
    )
    assert load_corpus(tmp_path / "c.parquet").passages.to_pylist() == [
        {"passage_id": "d1", "title": "P", "text": "parquet text"}
    ]

    with (tmp_path / "c.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, ["id", "title", "text"])
        w.writeheader()
        w.writerow({"id": "c1", "title": "C", "text": "csv text, with a comma"})
    assert load_corpus(tmp_path / "c.csv").passages.to_pylist() == [
        {"passage_id": "c1", "title": "C", "text": "csv text, with a comma"}
    ]

    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.md").write_text("# Heading A\n\nBody of a.")
    (docs / "sub" / "b_file.txt").write_text("Body of b.")
    (docs / "skip.bin").write_bytes(b"\x00")
    rows = load_corpus(docs).passages.to_pylist()
    assert rows == [
        {"passage_id": "a.md", "title": "Heading A", "text": "Body of a."},
        {"passage_id": "sub/b_file.txt", "title": "b file", "text": "Body of b."},
    ]


def test_beir_folder(shared_data: Path) -> None:
    corpus = load_corpus(shared_data / "beir" / "scifact", limit=50)
    assert corpus.format.value == "beir" and corpus.passages.num_rows == 50
    assert corpus.passages["passage_id"][0].as_py() == "4983"


def test_long_documents_are_split_with_overlap(tmp_path: Path) -> None:
    sentences = [f"Sentence number {i} talks about topic {i}." for i in range(60)]
    text = " ".join(sentences)
    pieces = split_passage(text, max_tokens=64, overlap=8)
    assert len(pieces) > 1
    assert all(count_tokens(p) <= 64 for p in pieces)
    for a, b in itertools.pairwise(pieces):
        assert set(a.split()[-4:]) & set(b.split()[:12])  # consecutive pieces overlap
    assert pieces[0].endswith(".")  # cut at a sentence end
    assert split_passage("short text", max_tokens=64, overlap=8) == ["short text"]
    f = write_jsonl(tmp_path / "c.jsonl", [{"_id": "long", "text": text}])
    corpus = load_corpus(f, max_tokens=64, overlap=8)
    ids = corpus.passages["passage_id"].to_pylist()
    assert ids[0] == "long#0" and len(ids) == len(pieces) and corpus.stats.split_documents == 1


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="overlap must be"):
        split_passage("x " * 100, max_tokens=16, overlap=10)
    with pytest.raises(CorpusError, match="no such file"):
        load_corpus("/nonexistent/corpus.jsonl")
    with pytest.raises(CorpusError, match="cannot tell the corpus format"):
        load_corpus(__file__)
