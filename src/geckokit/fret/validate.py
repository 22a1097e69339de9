"""Checks on generated queries (FRet step 1): reject copies, empties, and out-of-range lengths."""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel, Field

_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def copy_overlap(query: str, passage: str, *, n: int = 3) -> float:
    """Share of the query's word n-grams that occur in the passage (0 = none, 1 = all).
    Queries shorter than ``n`` words compare as a whole phrase."""
    q, p = words(query), words(passage)
    if not q:
        return 0.0
    size = min(n, len(q))
    q_grams = ngrams(q, size)
    return len(q_grams & ngrams(p, size)) / len(q_grams)


#: Function words left out of :func:`word_overlap`: sharing "the" or "is" with the passage
#: says nothing about whether a query restates it in its own terms.
STOPWORDS = frozenset(
    "a an and are as at be been but by can do does for from had has have how in into is it "
    "its may not no of on or than that the their these this those to was were what when "
    "which who why will with".split()
)


def word_overlap(query: str, passage: str) -> float:
    """Share of the query's distinct content words (not :data:`STOPWORDS`) that occur in
    the passage (0 = none, 1 = all). Unlike :func:`copy_overlap`, which catches copied
    phrases, this catches a query assembled from the passage's own terms: SciFact's real
    claims share 52% of their content words with their abstracts, a 0.5B model's claims
    written from the abstract 83%."""
    q = set(words(query)) - STOPWORDS
    if not q:
        return 0.0
    return len(q & set(words(passage))) / len(q)


class ValidationConfig(BaseModel):
    """Thresholds for accepting a generated query."""

    min_query_words: int = Field(
        3, ge=1, description="shorter queries are rejected (bare keywords)"
    )
    max_query_words: int = Field(48, ge=1, description="longer queries are rejected")
    max_copy_overlap: float = Field(
        0.75, gt=0, le=1, description="max share of query word trigrams found in the passage"
    )
    max_word_overlap: float = Field(
        1.0,
        gt=0,
        le=1,
        description="max share of the query's content words found in the title or passage "
        "(1 = no limit); lower asks for queries in other words than the passage's",
    )
    min_task_words: int = Field(3, ge=1)


def check_query(
    task: str,
    query: str,
    *,
    title: str,
    passage: str,
    earlier: Iterable[str] = (),
    example_queries: Iterable[str] = (),
    config: ValidationConfig | None = None,
) -> str | None:
    """None when the (task, query) pair is acceptable, else a short reason tag:
    ``empty_query``, ``empty_task``, ``too_short``, ``too_long``, ``copies_passage``,
    ``copies_title``, ``echoes_passage``, ``copies_example`` or ``duplicate``."""
    cfg = config or ValidationConfig()
    q_words = words(query)
    if not q_words:
        return "empty_query"
    if len(words(task)) < cfg.min_task_words:
        return "empty_task"
    if len(q_words) < cfg.min_query_words:
        return "too_short"
    if len(q_words) > cfg.max_query_words:
        return "too_long"
    if title and q_words == words(title):
        return "copies_title"
    if copy_overlap(query, passage) > cfg.max_copy_overlap:
        return "copies_passage"
    if (
        cfg.max_word_overlap < 1
        and word_overlap(query, f"{title}\n{passage}") > cfg.max_word_overlap
    ):
        return "echoes_passage"
    if any(q_words == words(e) for e in example_queries):
        return "copies_example"
    if any(q_words == words(e) for e in earlier):
        return "duplicate"
    return None
