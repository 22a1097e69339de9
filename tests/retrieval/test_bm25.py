"""BM25 on a hand-made corpus: stemmed words match, stopwords count for nothing."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from geckokit._deps import MissingDependencyError
from geckokit.retrieval.bm25 import (
    K1,
    METHOD,
    B,
    BM25Index,
    passage_text,
    require_bm25,
    tokenize,
    top_k,
)

pytest.importorskip("bm25s")

PASSAGES = [
    "The cat sat on the mat",
    "Running shoes for marathon runners",
    "A short history of the marathon",
    "Cooking pasta at home",
]


def test_bm25s_defaults_are_the_stated_ones() -> None:
    index = BM25Index(PASSAGES)
    assert (index.model.k1, index.model.b, index.model.method) == (K1, B, METHOD)
    assert (K1, B, METHOD) == (1.5, 0.75, "lucene")


def test_words_are_lowercased_stemmed_and_stopwords_dropped() -> None:
    assert tokenize(["The Runners are RUNNING to the marathons"]) == [["runner", "run", "marathon"]]
    assert tokenize(["the and of a"]) == [[]]
    assert tokenize(["how were they"]) == [["how", "were"]]  # Lucene's 33 words only
    assert passage_text(" Title ", "text ") == "Title text" and passage_text(None, "x") == "x"


def test_the_passage_sharing_the_querys_stemmed_words_ranks_first() -> None:
    index = BM25Index(PASSAGES)
    rows, scores = index.search(["how did the runner run?", "marathons"], k=4)
    assert rows.shape == scores.shape == (2, 4)
    # "runner" and "run" only in passage 1 (as "runners" and "running"); 0 for the others,
    # which keep their row order
    assert rows[0].tolist() == [1, 0, 2, 3] and scores[0][0] > 0 and not scores[0][1:].any()
    # "marathon" in 1 and 2: the shorter passage (2: three words left, 1: four) first
    assert rows[1].tolist()[:2] == [2, 1] and scores[1][0] > scores[1][1] > 0
    # hand-computed, Lucene's form: idf = ln(1 + (4 - 2 + 0.5) / (2 + 0.5)) times
    # tf / (tf + k1 (1 - b + b len / avg len)), tf = 1 (no (k1 + 1) factor since Lucene 8)
    lengths = [len(t) for t in tokenize(PASSAGES)]
    avg = sum(lengths) / 4
    idf = np.log(1 + 2.5 / 2.5)
    expected = [idf / (1 + K1 * (1 - B + B * lengths[r] / avg)) for r in (2, 1)]
    assert scores[1][:2] == pytest.approx(expected, rel=1e-5)


def test_stopwords_add_nothing_to_a_score() -> None:
    index = BM25Index(PASSAGES)
    # "the" is in passages 0 and 2, yet adds nothing; stopwords alone score 0 everywhere
    with_stopwords, bare, only = index.scores(["the cat on the mat", "cat mat", "the of on"])
    assert with_stopwords.tolist() == bare.tolist() and bare.argmax() == 0
    assert not only.any()
    # a word the corpus never uses scores 0 too
    assert not next(index.scores(["zebra"])).any()


def test_top_k_keeps_row_order_among_equal_scores() -> None:
    scores = np.array([0.5, 2.0, 0.5, 2.0, 1.0, 0.5], dtype=np.float32)
    assert top_k(scores, 3).tolist() == [1, 3, 4]
    assert top_k(scores, 5).tolist() == [1, 3, 4, 0, 2]  # the tie at the cut: rows 0, 2
    assert top_k(scores, 10).tolist() == [1, 3, 4, 0, 2, 5]
    assert top_k(scores, 0).tolist() == []


def test_an_empty_corpus_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one passage"):
        BM25Index([])


def test_a_missing_bm25s_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bm25s", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'geckokit\[bm25\]'"):
        require_bm25()
