"""The plumbing of bench/panel.py: settings on the command line, the config file it writes
for ``geckokit distill``, which settings share one LLM run, and the mean over seeds."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def panel():  # type: ignore[no-untyped-def]
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import panel

    return panel


def test_settings_parse_as_json_else_string(panel) -> None:  # type: ignore[no-untyped-def]
    flat = panel.parse_settings(["train.epochs=3", "mine.fusion=rrf", "mine.drop_solved=true"])
    assert flat == {"train.epochs": 3, "mine.fusion": "rrf", "mine.drop_solved": True}
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        panel.parse_settings(["epochs"])


def test_config_file_round_trips_and_loads_as_a_distill_config(panel, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from geckokit.pipeline.distill import load_config

    config = {
        "corpus": "c.jsonl",
        "sample": 40,
        **panel.nest({"train.epochs": 2.0, "mine.weights": [1.0, 0.0, 1.0], "mine.top_n": 10}),
    }
    path = panel.write_config(tmp_path / "run.toml", config)
    assert tomllib.loads(path.read_text()) == config
    loaded = load_config(path, {})
    assert (loaded.sample, loaded.train.epochs, loaded.mine.top_n) == (40, 2.0, 10)


def test_selection_and_training_settings_share_the_llm_run(panel) -> None:  # type: ignore[no-untyped-def]
    base = panel.llm_key({"sample": 400})
    assert panel.llm_key({"sample": 400, "mine.fusion": "seed", "train.epochs": 3}) == base
    assert panel.llm_key({"sample": 400, "mix.sts": ["x"], "train.seed": 1}) == base
    assert panel.llm_key({"sample": 400, "mine.top_n": 10}) != base
    assert panel.llm_key({"sample": 200}) != base


def test_over_seeds_averages_each_query(panel) -> None:  # type: ignore[no-untyped-def]
    rows = [
        {
            "ndcg@10": 50.0,
            "recall@10": 60.0,
            "stsb": 80.0,
            "stsb_plain": 81.0,
            "per_query": [0.2, 0.8],
        },
        {
            "ndcg@10": 54.0,
            "recall@10": 62.0,
            "stsb": 82.0,
            "stsb_plain": 83.0,
            "per_query": [0.4, 0.6],
        },
    ]
    s = panel.over_seeds(rows)
    assert s["ndcg@10"] == 52.0 and s["ndcg@10_range"] == [50.0, 54.0]
    assert s["per_query"] == pytest.approx([0.3, 0.7])
    assert s["ndcg@10_stdev"] == pytest.approx(2.83, abs=0.01)


def test_the_user_queries_row_reads_the_train_queries_without_labels(panel, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "beir"
    (corpus / "qrels").mkdir(parents=True)
    (corpus / "queries.jsonl").write_text(
        '{"_id": "1", "text": "a train claim\\n split"}\n'
        '{"_id": "2", "text": "a test claim"}\n'
        '{"_id": "3", "text": "another train claim"}\n'
    )
    (corpus / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n1\td1\t1\n3\td9\t1\n")
    path = panel.train_queries_file(corpus, tmp_path / "out")
    assert path is not None
    assert path.read_text() == "a train claim split\nanother train claim\n"
    (corpus / "qrels" / "train.tsv").unlink()
    assert panel.train_queries_file(corpus, tmp_path / "out") is None
    # the file is part of the LLM run's identity; training settings are not
    with_file = panel.llm_key({"queries_file": str(path), "train.epochs": 2})
    assert with_file != panel.llm_key({}) and with_file == panel.llm_key(
        {"queries_file": str(path)}
    )
