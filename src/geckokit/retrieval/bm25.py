"""BM25 over passages with bm25s: the lexical first-stage retriever (InPars retrieves its
candidates this way).

Text is lowercased, split into words of two or more characters, stripped of English
stopwords (bm25s's list: the 33 words of Lucene's English analyzer) and stemmed with the
Snowball English stemmer (PyStemmer). Scoring is bm25s's default, Lucene's BM25 with
k1 = 1.5 and b = 0.75: a query word adds idf * tf / (tf + k1 (1 - b + b |d| / avg |d|)), with
idf = ln(1 + (N - df + 0.5) / (df + 0.5)), never negative; a repeated query word counts each
time. A passage is indexed as its title and text joined by a space.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from geckokit._deps import require

K1 = 1.5  # term-frequency saturation
B = 0.75  # length normalisation
METHOD = "lucene"
STOPWORDS = "english"
STEMMER = "english"  # Snowball


def _bm25s() -> Any:
    return require("bm25s", extra="bm25", purpose="BM25 retrieval")


def _stemmer() -> Any:
    stemmer = require("Stemmer", extra="bm25", purpose="BM25 retrieval (Snowball stemming)")
    return stemmer.Stemmer(STEMMER)


def require_bm25() -> None:
    """Raise :class:`~geckokit._deps.MissingDependencyError` now when bm25s or PyStemmer is
    missing: a run that will need BM25 checks before its other, longer work."""
    _bm25s()
    _stemmer()


def passage_text(title: str | None, text: str) -> str:
    """What BM25 indexes of a passage: its title and text joined by a space."""
    return f"{(title or '').strip()} {text.strip()}".strip()


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Each text as BM25 sees it: lowercased words, English stopwords dropped, stemmed."""
    if not texts:
        return []
    tokens = _bm25s().tokenize(
        list(texts),
        lower=True,
        stopwords=STOPWORDS,
        stemmer=_stemmer(),
        return_ids=False,
        show_progress=False,
    )
    return [list(t) for t in tokens]


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Rows of the ``k`` highest ``scores`` (shape (n,)), best first; equal scores keep the
    row order, so the result does not depend on how the selection breaks ties."""
    n = len(scores)
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k < n:
        kth = np.partition(scores, n - k)[n - k]  # the k-th highest value
        rows = np.flatnonzero(scores >= kth)  # (m,), m >= k: every row tied with it too
    else:
        rows = np.arange(n)
    order = np.lexsort((rows, -scores[rows]))  # by score, then by row
    return rows[order[:k]].astype(np.int64)


class BM25Index:
    """A BM25 index of ``texts`` (one per passage, in row order; see :func:`passage_text`).

    ``scores`` gives every passage's score for each query, ``search`` the best ``k`` rows.
    Queries go in as raw text and are tokenized like the passages; a word the corpus never
    uses, or a query made of stopwords only, scores 0 everywhere.
    """

    def __init__(self, texts: Sequence[str]) -> None:
        if not texts:
            raise ValueError("BM25 needs at least one passage to index, got none")
        bm25s = _bm25s()
        tokens = bm25s.tokenize(
            list(texts), lower=True, stopwords=STOPWORDS, stemmer=_stemmer(), show_progress=False
        )
        self.model = bm25s.BM25(k1=K1, b=B, method=METHOD)
        self.model.index(tokens, show_progress=False)
        self.size = len(texts)

    def scores(self, queries: Sequence[str]) -> Iterator[np.ndarray]:
        """Each query's BM25 score of every passage, shape (n,) float32, one query at a time
        (a whole (queries, n) matrix would not fit for a large corpus)."""
        for words in tokenize(queries):
            ids = self.model.get_tokens_ids(words)  # words the corpus never uses drop out
            if not ids:
                yield np.zeros(self.size, dtype=np.float32)
                continue
            yield np.asarray(self.model.get_scores_from_ids(ids), dtype=np.float32)

    def search(self, queries: Sequence[str], *, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best rows per query and their scores, best first (ties in row order),
        each of shape (queries, min(k, n)). Passages that share no word with a query score
        0 and fill its list in row order when fewer than ``k`` match."""
        k = min(k, self.size)
        rows = np.zeros((len(queries), k), dtype=np.int64)
        out = np.zeros((len(queries), k), dtype=np.float32)
        for i, s in enumerate(self.scores(queries)):
            rows[i] = top_k(s, k)
            out[i] = s[rows[i]]
        return rows, out
