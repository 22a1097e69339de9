"""`geckokit mix` on the shared human-labelled sets."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from geckokit.cli.main import cli


def test_mix_command_builds_every_source(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "mix"
    args = [
        "mix",
        "--out",
        str(out),
        "--nli",
        str(shared_data / "training_pairs/snli_esnli/test.jsonl"),
        "--classification",
        str(shared_data / "classification/banking77/train.jsonl"),
        "--sts",
        str(shared_data / "sts/stsbenchmark/train.jsonl"),
        "--qa",
        str(shared_data / "training_pairs/trecqa_wang/train.jsonl"),
        "--pairs",
        str(shared_data / "beir/scifact"),
        "--claims",
        str(shared_data / "training_pairs/climate_fever/test.jsonl"),
        "--weights",
        "nli:snli_esnli=2",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    table = pq.read_table(out / "mixture" / "part-00000.parquet")
    sources = set(table["source"].to_pylist())
    assert sources == {
        "nli:snli_esnli",
        "classification:banking77",
        "sts:stsbenchmark",
        "qa:trecqa_wang",
        "beir:scifact",
        "claims:climate_fever",
    }
    assert all(q.startswith("task: ") for q in table["query"].to_pylist())
    bad = CliRunner().invoke(
        cli,
        [
            "mix",
            "--out",
            str(out),
            "--sts",
            str(shared_data / "sts/stsbenchmark/train.jsonl"),
            "--weights",
            "nope=1",
        ],
    )
    assert bad.exit_code == 2 and "unknown sources ['nope']" in bad.output


def test_mix_needs_a_source(tmp_path: Path) -> None:
    from geckokit.mixture.build import build_mixture

    with pytest.raises(ValueError, match="no sources given"):
        build_mixture(tmp_path)


def test_a_mixture_of_fret_and_another_source_carries_fret_rankings(tmp_path: Path) -> None:
    import json

    from geckokit.io import write_table
    from geckokit.mixture.build import build_mixture
    from tests.conftest import fret_table

    passages = {f"p{i}": {"title": f"T{i}", "text": f"body {i}"} for i in range(8)}
    run = tmp_path / "mined"
    write_table(
        fret_table(passages, [("t", "one"), ("t", "two")], per_query=4),
        run / "fret" / "part-00000.parquet",
    )
    sts = tmp_path / "sts" / "train.jsonl"
    sts.parent.mkdir()
    sts.write_text(json.dumps({"sentence1": "a", "sentence2": "b", "score": 5.0}) + "\n")
    manifest = build_mixture(tmp_path / "mix", fret=[run], sts=[sts])
    assert manifest["sources"] == {"fret:mined": 2, "sts:sts": 2}
    rows = pq.read_table(tmp_path / "mix" / "mixture" / "part-00000.parquet").to_pylist()
    fret_rows = [r for r in rows if r["source"] == "fret:mined"]
    assert [len(r["candidate_texts"]) for r in fret_rows] == [4, 4]
    assert all(len(r["ql_scores"]) == len(r["fused_scores"]) == 4 for r in fret_rows)
    assert all(
        r["candidate_ids"] is None and r["rc_scores"] is None for r in rows if r not in fret_rows
    )
