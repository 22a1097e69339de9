"""The LLM's stored scores as a teacher for score distillation (see
:mod:`geckokit.train.losses`). Pure Python over mixture rows: no model, no LLM work.

FRet step 2 scores every one of a query's N candidates (QL, RC and their fusion); a mixture
row from FRet carries them with the candidates' texts. For each such row this module picks
the K candidates that enter the distillation term and lines up their teacher scores in
the order the trainer embeds them: the positive, the hard negative, then K - 2 others.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from geckokit.types import ClosedSet


class Teacher(ClosedSet):
    QL = "ql"  # query likelihood: mean log P(query token | passage) (ART's teacher)
    RC = "rc"  # relevance classification: log P(relevant) (or the expected grade)
    FUSED = "fused"  # the fused score that chose the positive (reciprocal ranks)


#: The mixture column that holds each teacher's scores.
TEACHER_COLUMNS = {Teacher.QL: "ql_scores", Teacher.RC: "rc_scores", Teacher.FUSED: "fused_scores"}

#: Mixture columns a distillation objective reads (written by ``geckokit mix`` for FRet rows).
CANDIDATE_COLUMNS = (
    "positive_id",
    "negative_id",
    "candidate_ids",
    "candidate_texts",
    "ql_scores",
    "rc_scores",
    "fused_scores",
)


def pick_candidates(
    scores: Sequence[float],
    *,
    positive: int,
    negative: int | None,
    k: int,
    rng: random.Random,
) -> list[int]:
    """Indices into a query's N candidates of the (at most) ``k`` that enter the
    distillation term: ``positive`` first, ``negative`` second (when not None), then others
    spread over the teacher's ranking: the remaining candidates with a finite score, best
    first by ``scores``, are cut into ``k - 2`` equal strata and one is drawn from each (all
    of them when there are no more than that), so the list keeps near-top, middle and
    bottom candidates. Candidates without a score (NaN) are not drawn."""
    if k < 2:
        raise ValueError(f"distillation needs at least 2 candidates per query, got k={k}")
    head = [positive] + ([negative] if negative is not None else [])
    others = [i for i in range(len(scores)) if i not in head and math.isfinite(scores[i])]
    others.sort(key=lambda i: -scores[i])  # stable: ties keep the encoder's order
    slots = k - len(head)
    if len(others) <= slots:
        return head + others
    edges = [len(others) * j // slots for j in range(slots + 1)]
    return head + [others[rng.randrange(a, b)] for a, b in pairwise(edges)]


@dataclass(frozen=True)
class TeacherColumns:
    """Per mixture row: ``texts``, the ``k - 2`` candidate texts beyond the positive and
    negative ("" where there are fewer); ``scores``, the ``k`` teacher scores in the order
    positive, negative, others (NaN where there is none). ``with_teacher`` counts the rows
    that have at least two scored candidates, ``fret_rows`` the rows that carry candidates."""

    texts: list[list[str]]
    scores: list[list[float]]
    with_teacher: int
    fret_rows: int


def teacher_columns(
    rows: Mapping[str, Sequence[Any]],
    *,
    teacher: Teacher,
    k: int,
    rng: random.Random | None = None,
) -> TeacherColumns:
    """The distillation inputs of mixture ``rows`` (columns as lists: ``positive``,
    ``negative`` and :data:`CANDIDATE_COLUMNS`). Rows without candidates (the human-labelled
    sources), without a usable score, or whose passage texts the mixture lacks get "" and NaN
    throughout, which leaves them out of the term. The ``fused`` teacher is not used where
    the LLM scored nothing (the ``seed`` fusion: its fused order is the encoder's own with
    the seed on top). Candidates are drawn with ``rng`` (default: seeded with 0); pass the
    same generator to successive chunks of a mixture to draw as over the whole."""
    nan = float("nan")
    rng = rng or random.Random(0)
    column = TEACHER_COLUMNS[teacher]
    texts: list[list[str]] = []
    scores: list[list[float]] = []
    with_teacher = fret_rows = 0
    for i in range(len(rows["positive"])):
        picked = _row(rows, i, column, teacher, k, rng)
        fret_rows += rows["candidate_ids"][i] is not None
        if picked is None:
            texts.append([""] * (k - 2))
            scores.append([nan] * k)
            continue
        index, row_scores, cand_texts = picked
        pos, neg, *rest = index
        row_texts = [cand_texts[j] for j in rest]
        row_values = [row_scores[pos], nan if neg is None else row_scores[neg]]
        row_values += [row_scores[j] for j in rest]
        with_teacher += sum(math.isfinite(v) for v in row_values) >= 2
        texts.append(row_texts + [""] * (k - 2 - len(row_texts)))
        scores.append(row_values + [nan] * (k - len(row_values)))
    return TeacherColumns(texts, scores, with_teacher, fret_rows)


def _row(
    rows: Mapping[str, Sequence[Any]],
    i: int,
    column: str,
    teacher: Teacher,
    k: int,
    rng: random.Random,
) -> tuple[tuple[int, int | None, *tuple[int, ...]], list[float], list[str]] | None:
    """(positive, negative or None, others...) indices, the row's teacher scores and its
    candidate texts; None when the row cannot teach."""
    ids = rows["candidate_ids"][i]
    cand_texts = rows["candidate_texts"][i]
    values = rows[column][i]
    if not ids or not cand_texts or values is None or len(cand_texts) != len(ids):
        return None
    if len(values) != len(ids) or rows["positive_id"][i] not in ids:
        return None
    if teacher is Teacher.FUSED and not any(
        _finite(v) for c in ("ql_scores", "rc_scores") for v in rows[c][i] or ()
    ):
        return None  # the seed fusion: the fused order is not the LLM's
    row_scores = [float(v) if _finite(v) else float("nan") for v in values]
    positive = ids.index(rows["positive_id"][i])
    negative_id = rows["negative_id"][i]
    negative = ids.index(negative_id) if negative_id in ids else None
    picked = pick_candidates(row_scores, positive=positive, negative=negative, k=k, rng=rng)
    return (positive, negative, *picked[2 if negative is not None else 1 :]), row_scores, cand_texts


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(value)
