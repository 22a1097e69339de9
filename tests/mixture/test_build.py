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
