"""Picking a query's distillation candidates and lining up the teacher's scores."""

from __future__ import annotations

import math
import random
from typing import Any

import pyarrow as pa
import pytest

from geckokit.mixture import MIXTURE_SCHEMA, from_fret
from geckokit.train.teacher import Teacher, pick_candidates, teacher_columns
from tests.conftest import fret_table

NAN = float("nan")


def test_positive_and_negative_first_then_one_from_each_stratum() -> None:
    scores = [float(20 - i) for i in range(20)]  # candidate i ranks i-th for the teacher
    picked = pick_candidates(scores, positive=3, negative=19, k=5, rng=random.Random(0))
    assert picked[:2] == [3, 19]
    # the 18 others (all but 3 and 19), best first, cut in thirds of six
    others = [i for i in range(20) if i not in (3, 19)]
    thirds = [others[0:6], others[6:12], others[12:18]]
    assert [p in third for p, third in zip(picked[2:], thirds, strict=True)] == [True] * 3
    assert picked == pick_candidates(scores, positive=3, negative=19, k=5, rng=random.Random(0))
    draws = {
        tuple(pick_candidates(scores, positive=3, negative=19, k=5, rng=random.Random(s)))
        for s in range(20)
    }
    assert len(draws) > 1  # drawn, not fixed


def test_unscored_candidates_are_not_drawn_and_few_are_all_taken() -> None:
    scores = [1.0, NAN, 0.5, NAN, 0.2]
    assert pick_candidates(scores, positive=0, negative=4, k=8, rng=random.Random(0)) == [0, 4, 2]
    assert pick_candidates(scores, positive=2, negative=None, k=3, rng=random.Random(0)) == [
        2,
        0,
        4,
    ]
    with pytest.raises(ValueError, match="at least 2 candidates"):
        pick_candidates(scores, positive=0, negative=4, k=1, rng=random.Random(0))


def _mixture_rows(*, scored: bool = True) -> dict[str, list[Any]]:
    """Two FRet rows of six candidates each (candidate 2's QL missing), then two STS rows."""
    passages = {f"p{i}": {"title": f"T{i}", "text": f"body {i}"} for i in range(12)}
    fret = fret_table(passages, [("t", "one"), ("t", "two")], per_query=6, scored=scored)
    other = pa.Table.from_pylist(
        [
            {"task": "s", "query": a, "positive": b, "negative": "", "source": "sts"}
            for a, b in (("a", "b"), ("b", "a"))
        ],
        schema=MIXTURE_SCHEMA,
    )
    return pa.concat_tables([from_fret(fret), other]).to_pydict()


def test_teacher_scores_line_up_with_positive_negative_and_the_others() -> None:
    rows = _mixture_rows()
    cols = teacher_columns(rows, teacher=Teacher.RC, k=4)
    assert cols.fret_rows == 2 and cols.with_teacher == 2
    assert len(cols.texts) == len(cols.scores) == 4  # two FRet rows, two STS rows
    for i in range(2):
        ids, texts, rc = rows["candidate_ids"][i], rows["candidate_texts"][i], rows["rc_scores"][i]
        pos, neg = ids.index(rows["positive_id"][i]), ids.index(rows["negative_id"][i])
        assert cols.scores[i][:2] == [rc[pos], rc[neg]]
        assert len(cols.texts[i]) == 2  # k - 2 beyond the positive and negative
        for text, score in zip(cols.texts[i], cols.scores[i][2:], strict=True):
            j = texts.index(text)
            assert j not in (pos, neg) and rc[j] == score
    for i in (2, 3):  # STS: nothing to distil
        assert cols.texts[i] == ["", ""] and all(math.isnan(v) for v in cols.scores[i])


def test_missing_scores_and_padding_are_nan() -> None:
    rows = _mixture_rows()
    cols = teacher_columns(rows, teacher=Teacher.QL, k=10)  # more than the 6 there are
    for i in range(2):
        ids = rows["candidate_ids"][i]
        head = (ids.index(rows["positive_id"][i]), ids.index(rows["negative_id"][i]))
        others = [j for j in range(6) if j not in head and j != 2]  # 2: QL missing, not drawn
        assert len(cols.texts[i]) == 8 and len(cols.scores[i]) == 10
        assert sum(t != "" for t in cols.texts[i]) == len(others)
        finite = sum(j != 2 for j in head) + len(others)  # candidate 2 may be the negative
        assert sum(math.isfinite(v) for v in cols.scores[i]) == finite
    assert 2 in (rows["candidate_ids"][0].index(rows["negative_id"][0]),)  # it is, in row 0
    assert math.isnan(cols.scores[0][1])


def test_rows_that_cannot_teach() -> None:
    seed = _mixture_rows(scored=False)
    for teacher in Teacher:  # the seed fusion: no LLM scores, and its fused order is not one
        assert teacher_columns(seed, teacher=teacher, k=4).with_teacher == 0
    rows = _mixture_rows()
    rows["candidate_texts"] = [None] * len(rows["candidate_texts"])  # an older fret table
    cols = teacher_columns(rows, teacher=Teacher.QL, k=4)
    assert cols.with_teacher == 0 and cols.fret_rows == 2


def test_chunks_drawn_with_one_generator_draw_as_the_whole() -> None:
    passages = {f"p{i}": {"title": "", "text": f"body {i}"} for i in range(40)}
    queries = [("t", f"query {i}") for i in range(4)]
    rows = from_fret(fret_table(passages, queries, per_query=10))
    whole = teacher_columns(rows.to_pydict(), teacher=Teacher.RC, k=4, rng=random.Random(3))
    rng = random.Random(3)
    parts = [
        teacher_columns(b.to_pydict(), teacher=Teacher.RC, k=4, rng=rng)
        for b in rows.to_batches(max_chunksize=3)
    ]
    assert [t for p in parts for t in p.texts] == whole.texts
    other = teacher_columns(rows.to_pydict(), teacher=Teacher.RC, k=4, rng=random.Random(4))
    assert other.texts != whole.texts  # the seed matters
