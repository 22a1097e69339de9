"""Parsing and validation of FRet step 1 answers (hand-written shapes; see also
test_recorded_outputs.py for answers recorded from the real 0.5B model)."""

from __future__ import annotations

import pytest

from geckokit.fret.parse import ParseError, parse_task_query
from geckokit.fret.validate import ValidationConfig, check_query, copy_overlap, word_overlap

PASSAGE = "The Romans built more than 80,000 kilometres of paved roads with drainage layers."


@pytest.mark.parametrize(
    "text",
    [
        '{"task": "Given a question, retrieve answers.", "query": "how long were roman roads"}',
        '```json\n{"task": "Given a question, retrieve answers.", "query": "how long were roman roads"}\n```',
        'Sure! Here it is:\n{"task": "Given a question, retrieve answers.", "query": "how long were roman roads",}\nHope it helps.',
        "{'task': 'Given a question, retrieve answers.', 'query': 'how long were roman roads'}",
        '{"Task": "Given a question, retrieve answers.", "Query": "how long were roman roads"}',
        '"task": "Given a question, retrieve answers.", "query": "how long were roman roads"',
    ],
)
def test_parse_shapes(text: str) -> None:
    assert parse_task_query(text) == (
        "Given a question, retrieve answers.",
        "how long were roman roads",
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty_output"),
        ("I cannot help with that.", "no_json"),
        ('{"task": "Given x, find y."}', "no_json"),
        ('{"query": "roman roads length"}', "missing_task"),
        ('{"task": "t", "query": ""}', "missing_query"),
    ],
)
def test_parse_failures_have_reasons(text: str, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_task_query(text)
    assert info.value.reason == reason


def test_copy_overlap_hand_computed() -> None:
    # query trigrams: (romans built more) (built more than) (more than 80) -> all in the passage
    assert copy_overlap("Romans built more than 80", PASSAGE) == 1.0
    # (how long were) (long were roman) (were roman roads): none in the passage
    assert copy_overlap("how long were roman roads", PASSAGE) == 0.0
    # 1 of 2 trigrams: (paved roads with) yes, (roads with gravel) no
    assert copy_overlap("paved roads with gravel", PASSAGE) == 0.5


def test_word_overlap_hand_computed() -> None:
    # content words {roman, paved, roads, drained}: paved and roads are in the passage
    # ("Romans" is not "roman", "with" and "the" are stopwords and not counted)
    assert word_overlap("The Roman paved roads were drained", PASSAGE) == 0.5
    # every content word is the passage's own, though one trigram of five is
    # ("with drainage layers"), so the phrase check lets it through
    assert word_overlap("kilometres of roads, paved with drainage layers", PASSAGE) == 1.0
    assert copy_overlap("kilometres of roads, paved with drainage layers", PASSAGE) == 0.2
    assert word_overlap("how did they last", PASSAGE) == 0.0
    assert word_overlap("the of and", PASSAGE) == 0.0  # stopwords only


def test_word_overlap_threshold() -> None:
    echo = "kilometres of roads, paved with drainage layers"
    args = ("Given a claim, retrieve evidence.", echo)
    kwargs = {"title": "Roman roads", "passage": PASSAGE}
    assert check_query(*args, **kwargs) is None  # the default sets no limit
    strict = ValidationConfig(max_word_overlap=0.6)
    assert check_query(*args, config=strict, **kwargs) == "echoes_passage"
    # the title's words count as the passage's: "roman" is only in the title
    assert (
        check_query(
            "Given a claim, retrieve evidence.",
            "Roman highways outlasted the empire",
            config=ValidationConfig(max_word_overlap=0.3),
            **kwargs,
        )
        is None
    )
    assert (
        check_query(
            "Given a claim, retrieve evidence.",
            "Roman roads outlasted the empire",
            config=ValidationConfig(max_word_overlap=0.3),
            **kwargs,
        )
        == "echoes_passage"
    )
    with pytest.raises(ValueError):
        ValidationConfig(max_word_overlap=0)


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "empty_query"),
        ("roads", "too_short"),
        ("word " * 60, "too_long"),
        ("The Romans built more than 80,000 kilometres of paved roads", "copies_passage"),
        ("Roman roads", "too_short"),
        ("Roman roads engineering", "copies_title"),
        ("how to tell if sourdough starter is active", "copies_example"),
        ("how long were roman roads", "duplicate"),
    ],
)
def test_rejections(query: str, reason: str) -> None:
    got = check_query(
        "Given a question, retrieve passages that answer it.",
        query,
        title="Roman roads engineering",
        passage=PASSAGE,
        earlier=["How long were Roman roads?"],
        example_queries=["how to tell if sourdough starter is active"],
    )
    assert got == reason


def test_acceptance_and_thresholds() -> None:
    kwargs = {"title": "Roman roads", "passage": PASSAGE}
    assert (
        check_query(
            "Given a question, retrieve answers.", "why did roman roads last so long", **kwargs
        )
        is None
    )
    assert check_query("Find", "why did roman roads last so long", **kwargs) == "empty_task"
    strict = ValidationConfig(max_query_words=4)
    assert (
        check_query(
            "Given a question, retrieve answers.",
            "why did roman roads last so long",
            config=strict,
            **kwargs,
        )
        == "too_long"
    )
    with pytest.raises(ValueError):
        ValidationConfig(max_copy_overlap=0)
