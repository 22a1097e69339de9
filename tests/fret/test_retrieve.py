"""Candidates from the encoder, BM25 or their hybrid, on five hand-made passages whose
encoder and BM25 rankings are fixed by hand: the orders and scores are hand-computed."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from geckokit.fret.mine_run import unsolved
from geckokit.fret.retrieve import CANDIDATE_SCHEMA, retrieve_candidates, with_candidate_columns

pytest.importorskip("faiss")
pytest.importorskip("bm25s")

PASSAGES = pa.table(
    {
        "passage_id": ["p0", "p1", "p2", "p3", "p4"],
        "title": ["", "", "", "", ""],
        "text": ["apple banana", "cherry date", "apple cherry apple", "elderberry fig", "grape"],
    }
)
# the encoder's order for the query: p3, p0, p1, p4, p2 (unit vectors at 10, 20 ... 50 degrees)
ANGLES = {"p3": 10, "p0": 20, "p1": 30, "p4": 40, "p2": 50}
EMBEDDINGS = np.array(
    [[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in ANGLES.values()],
    dtype=np.float32,
)[[list(ANGLES).index(p) for p in PASSAGES["passage_id"].to_pylist()]]  # (5, 2), row order


class FixedQueries:
    """Test tool: every query embeds to (1, 0), so cosines are the passages' first axis."""

    def encode(self, texts: list[str], **_: object) -> np.ndarray:
        assert all(t.startswith("task: ") for t in texts)  # the encoder keeps the format
        return np.tile(np.array([1.0, 0.0], dtype=np.float32), (len(texts), 1))


def _queries(*seeds: str) -> pa.Table:
    n = len(seeds)
    return pa.table(
        {
            "query_id": [f"{s}:q{i}" for i, s in enumerate(seeds)],
            "passage_id": list(seeds),
            "task_type": ["question answering"] * n,
            "task": ["Given a fruit, find it"] * n,
            "query": ["apple"] * n,  # BM25 reads only this: p2 (apple twice), p0, zeros
        }
    )


def _retrieve(retriever: str, *seeds: str, top_n: int = 2) -> list[dict]:  # type: ignore[type-arg]
    table = retrieve_candidates(
        _queries(*seeds),
        PASSAGES,
        encoder=FixedQueries(),
        passage_embeddings=EMBEDDINGS,
        top_n=top_n,
        retriever=retriever,
        show_progress=False,
    )
    assert table.schema == CANDIDATE_SCHEMA
    return table.to_pylist()


def _cos(pid: str) -> float:
    return math.cos(math.radians(ANGLES[pid]))


# BM25 of "apple" (Lucene, k1 1.5, b 0.75): idf = ln(1 + 3.5 / 2.5); lengths 2, 2, 3, 2, 1
IDF = math.log(2.4)
BM25 = {"p2": IDF * 2 / (2 + 1.5 * (0.25 + 0.75 * 3 / 2)), "p0": IDF / (1 + 1.5)}


def test_the_encoder_alone_is_unchanged() -> None:
    hit, miss = _retrieve("encoder", "p0", "p2")
    assert hit["candidate_ids"] == ["p3", "p0"] and hit["seed_retrieved"]
    assert miss["candidate_ids"] == ["p3", "p2"] and not miss["seed_retrieved"]
    assert miss["encoder_scores"] == pytest.approx([_cos("p3"), _cos("p2")])
    assert miss["retriever_scores"] == miss["encoder_scores"] and miss["bm25_scores"] is None
    assert hit["encoder_first_id"] == miss["encoder_first_id"] == "p3"


def test_bm25_ranks_by_the_raw_query_and_keeps_the_encoders_cosines() -> None:
    hit, miss = _retrieve("bm25", "p0", "p4")
    assert hit["candidate_ids"] == ["p2", "p0"] and hit["seed_retrieved"]
    assert hit["bm25_scores"] == pytest.approx([BM25["p2"], BM25["p0"]], rel=1e-5)
    assert hit["retriever_scores"] == hit["bm25_scores"]
    assert hit["encoder_scores"] == pytest.approx([_cos("p2"), _cos("p0")])
    # the missed seed replaces the N-th with its own BM25 score: 0, no word in common
    assert miss["candidate_ids"] == ["p2", "p4"] and not miss["seed_retrieved"]
    assert miss["retriever_scores"] == pytest.approx([BM25["p2"], 0.0], rel=1e-5)
    # "first for the encoder" stays the encoder's own first in the corpus
    assert hit["encoder_first_id"] == miss["encoder_first_id"] == "p3"


def test_hybrid_fuses_the_two_rankings() -> None:
    # encoder p3 p0 p1 p4 p2; BM25 p2 p0 (the others share no word: not in its ranking)
    # p3 1/61 = .01639  p0 1/62 + 1/62 = .03226  p1 1/63  p4 1/64  p2 1/65 + 1/61 = .03178
    rrf = {"p0": 2 / 62, "p2": 1 / 65 + 1 / 61, "p3": 1 / 61, "p1": 1 / 63, "p4": 1 / 64}
    hit, miss = _retrieve("hybrid", "p0", "p4")
    assert hit["candidate_ids"] == ["p0", "p2"] and hit["seed_retrieved"]
    assert hit["retriever_scores"] == pytest.approx([rrf["p0"], rrf["p2"]])
    assert hit["bm25_scores"] == pytest.approx([BM25["p0"], BM25["p2"]], rel=1e-5)
    assert hit["encoder_scores"] == pytest.approx([_cos("p0"), _cos("p2")])
    assert miss["candidate_ids"] == ["p0", "p4"] and not miss["seed_retrieved"]
    assert miss["retriever_scores"] == pytest.approx([rrf["p0"], rrf["p4"]])
    assert miss["bm25_scores"] == [pytest.approx(BM25["p0"], rel=1e-5), 0.0]
    assert hit["encoder_first_id"] == "p3"  # not a candidate: only the encoder ranks it first
    # the whole fused order, with N = 5
    assert _retrieve("hybrid", "p0", top_n=5)[0]["candidate_ids"] == ["p0", "p2", "p3", "p1", "p4"]


def test_an_unknown_retriever_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown retriever 'dense'; valid: encoder, bm25"):
        _retrieve("dense", "p0")


def test_candidates_from_before_the_retriever_choice_read_as_the_encoders() -> None:
    old = pa.table(
        {
            "query_id": ["a:q0", "b:q0"],
            "seed_id": ["a", "b"],
            "task_type": ["t", "t"],
            "task": ["t", "t"],
            "query": ["q", "q"],
            "candidate_ids": [["a", "b"], ["a", "b"]],
            "encoder_scores": pa.array([[0.9, 0.5], [0.8, 0.7]], type=pa.list_(pa.float32())),
            "seed_retrieved": [True, True],
        }
    )
    new = with_candidate_columns(old)
    assert new.schema == CANDIDATE_SCHEMA
    assert new["retriever_scores"].to_pylist() == old["encoder_scores"].to_pylist()
    assert new["encoder_first_id"].to_pylist() == ["a", "a"]
    assert new["bm25_scores"].to_pylist() == [None, None]
    assert with_candidate_columns(new) is new
    # the encoder ranks b's seed second: only b is left to mine
    assert unsolved(old)["query_id"].to_pylist() == ["b:q0"]
