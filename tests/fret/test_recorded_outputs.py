"""Parsing and validation on answers recorded from the real Qwen2.5-Coder-0.5B model.

tests/data/generate_v1_qwen0.5b_scifact.jsonl holds raw answers of the bundled prompt for
24 SciFact passages (ids only; the passage text is read from ../shared/data), with the
task, query or reject reason they were judged to give when recorded.
"""

from __future__ import annotations

import json
from pathlib import Path

from geckokit.corpus import load_corpus
from geckokit.fret.parse import ParseError, parse_task_query
from geckokit.fret.prompts import load_generate_prompt
from geckokit.fret.validate import check_query

RECORDED = Path(__file__).resolve().parents[1] / "data" / "generate_v1_qwen0.5b_scifact.jsonl"


def test_recorded_answers_parse_and_validate_as_recorded(shared_data: Path) -> None:
    records = [json.loads(line) for line in RECORDED.read_text().splitlines()]
    assert len(records) == 24
    corpus = load_corpus(shared_data / "beir" / "scifact").passages
    by_id = {r["passage_id"]: r for r in corpus.to_pylist()}
    examples = [e.query for e in load_generate_prompt().examples]
    outcomes = []
    for rec in records:
        passage = by_id[rec["passage_id"]]
        try:
            task, query = parse_task_query(rec["raw"])
            reason = check_query(
                task,
                query,
                title=passage["title"],
                passage=passage["text"],
                example_queries=examples,
            )
        except ParseError as exc:
            task, query, reason = "", "", exc.reason
        assert reason == rec["reject_reason"], rec
        if reason is None:
            assert (task, query) == (rec["task"], rec["query"])
            assert query.strip() and task.lower().startswith(("given", "retrieve", "find"))
        outcomes.append(reason)
    # the model mostly follows the format: most answers are accepted as they are
    assert outcomes.count(None) >= len(records) // 2
