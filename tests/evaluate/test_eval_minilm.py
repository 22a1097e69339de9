"""A real evaluation: all-MiniLM-L6-v2 (the default encoder, from its PyPI package) on small
slices of the shared benchmarks through `geckokit eval`, with the network blocked."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from geckokit.cli.main import cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def minilm_eval(
    slices: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("minilm") / "eval"
    attempts: list[Any] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guard(real: Any) -> Any:
        def connect(self: socket.socket, address: Any) -> Any:
            if self.family in (socket.AF_INET, socket.AF_INET6):
                attempts.append(address)
                raise OSError(f"network use in an offline test: {address}")
            return real(self, address)

        return connect

    tasks = ",".join(
        [
            str(slices["scifact"]),
            str(slices["stsbenchmark"]),
            str(slices["banking77"]),
            f"clustering:{slices['banking77']}",
        ]
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(socket.socket, "connect", guard(real_connect))
        mp.setattr(socket.socket, "connect_ex", guard(real_connect_ex))
        result = CliRunner().invoke(
            cli,
            [
                "eval",
                "--model",
                "all-minilm-l6-v2",
                "--tasks",
                tasks,
                "--dims",
                "384,128",
                "--out",
                str(out),
            ],
        )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    scores = {(r["task"], r["dim"]): r["score"] for r in manifest["results"]}
    return {
        "out": out,
        "output": result.output,
        "attempts": attempts,
        "manifest": manifest,
        "scores": scores,
    }


def test_scores_in_the_expected_range_offline(minilm_eval: dict[str, Any]) -> None:
    assert minilm_eval["attempts"] == []
    scores = minilm_eval["scores"]
    # full width (384): MiniLM finds most SciFact abstracts among 100, tracks STS-B gold
    # similarity closely and separates 10 banking intents well
    expected = {
        "scifact": (0.70, 1.0),
        "stsbenchmark": (0.80, 1.0),
        "banking77": (0.75, 1.0),
        "banking77-clustering": (0.60, 1.0),
    }
    for task, (lo, hi) in expected.items():
        assert lo <= scores[(task, 384)] <= hi, (task, scores[(task, 384)])
        # a third of the width keeps most of the score
        assert scores[(task, 384)] - 0.12 <= scores[(task, 128)] <= scores[(task, 384)] + 0.05
    assert minilm_eval["manifest"]["models"][0]["formats"] == ["plain"]  # auto: no prompts


def test_results_in_mteb_layout_table_and_manifest(minilm_eval: dict[str, Any]) -> None:
    from mteb.results import TaskResult

    out, manifest = minilm_eval["out"], minilm_eval["manifest"]
    model = manifest["models"][0]
    assert (model["name"], model["width"], model["dims"]) == ("all-minilm-l6-v2", 384, [384, 128])
    folder = out / "results" / "all-minilm-l6-v2" / model["revision"]
    full = TaskResult.from_disk(folder / "scifact.json")
    assert full.get_score() == pytest.approx(minilm_eval["scores"][("scifact", 384)])
    assert full.scores["test"][0]["main_score"] == full.scores["test"][0]["ndcg_at_10"]
    cut = TaskResult.from_disk(folder / "experiments" / "embed_dim_128" / "stsbenchmark.json")
    assert cut.get_score() == pytest.approx(minilm_eval["scores"][("stsbenchmark", 128)])
    assert json.loads((folder / "model_meta.json").read_text())["name"] == "all-minilm-l6-v2"
    table = (out / "results.md").read_text()
    assert (
        "| task | metric | all-minilm-l6-v2@384 (plain) | all-minilm-l6-v2@128 (plain) |" in table
    )
    assert "| scifact | ndcg_at_10 | " in table and "| mean |" in table
    assert table in minilm_eval["output"]
    assert [t["kind"] for t in manifest["tasks"]] == [
        "retrieval",
        "sts",
        "classification",
        "clustering",
    ]
    assert manifest["tasks"][0]["task_string"] == "fact checking"
    assert manifest["environment"]["mteb"] and manifest["seconds"] > 0


def test_rerun_through_the_python_api_reuses_results(
    minilm_eval: dict[str, Any], slices: dict[str, Path], tmp_path: Path
) -> None:
    from geckokit.evaluate import evaluate

    out = tmp_path / "eval"
    shutil.copytree(minilm_eval["out"], out)
    model = minilm_eval["manifest"]["models"][0]
    stored = (
        out
        / "results"
        / "all-minilm-l6-v2"
        / model["revision"]
        / "experiments"
        / "embed_dim_128"
        / "scifact.json"
    )
    before = stored.stat().st_mtime_ns
    table = evaluate("all-minilm-l6-v2", str(slices["scifact"]), dims=[128], out=out)
    assert table.num_rows == 1
    row = table.to_pylist()[0]
    assert (row["task"], row["dim"], row["format"]) == ("scifact", 128, "plain")
    assert row["score"] == pytest.approx(minilm_eval["scores"][("scifact", 128)])
    assert stored.stat().st_mtime_ns == before  # read back, not recomputed


def test_report_of_the_real_evaluation(minilm_eval: dict[str, Any], tmp_path: Path) -> None:
    from geckokit.evaluate import write_report

    from .test_report import assert_self_contained, parse

    path = write_report(minilm_eval["out"], out=tmp_path / "report.html")
    page = parse(path)
    assert "Evaluation" in page.headings and "Score against Matryoshka dimension" in page.headings
    assert page.tags["svg"] == 1 + 4  # scores per task, then one dims chart per task
    assert_self_contained(path, page)


def test_per_query_ndcg_averages_to_the_reported_score() -> None:
    """The per-query nDCG@10 that paired significance tests use, on the shipped demo set
    with the real MiniLM, is the reported mean taken apart."""
    from geckokit.encoder import EncoderRef, load_encoder
    from geckokit.evaluate.retrieval import evaluate_retrieval
    from geckokit.pipeline.demo import demo_dir

    got = evaluate_retrieval(
        EncoderRef(load_encoder("all-minilm-l6-v2")),  # unnamed: nothing cached
        demo_dir(),
        task="Given a question, retrieve passages that answer it.",
        gecko_format=False,
        per_query=True,
    )
    scores = got["ndcg@10_per_query"]
    assert len(scores) == got["queries"] and all(0 <= s <= 1 for s in scores)
    assert round(100 * sum(scores) / len(scores), 2) == got["ndcg@10"]
    assert got["ndcg@10"] > 50


def test_named_encoder_reuses_its_cached_corpus_embeddings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry encoder's (pinned) real MiniLM corpus embeddings of the demo set are kept
    under the embeddings cache and a second evaluation reuses them to the same scores."""
    import numpy as np

    import geckokit.registry
    from geckokit.encoder import EncoderRef, load_encoder
    from geckokit.evaluate.retrieval import evaluate_retrieval
    from geckokit.pipeline.demo import demo_dir

    monkeypatch.setattr(geckokit.registry, "cache_dir", lambda: tmp_path / "models")
    monkeypatch.delenv("GECKOKIT_EMBEDDINGS", raising=False)
    encoder = load_encoder("all-minilm-l6-v2")

    def run() -> dict[str, Any]:
        return evaluate_retrieval(
            EncoderRef.named(encoder, "all-minilm-l6-v2"),
            demo_dir(),
            task="Given a question, retrieve passages that answer it.",
            gecko_format=False,
            per_query=True,
        )

    first = run()
    [cached] = (tmp_path / "embeddings").glob("*.npy")
    assert np.load(cached).shape[0] == 350  # one row per demo passage
    inode = cached.stat().st_ino  # a write replaces the file: a new inode
    calls = []
    original = encoder.encode
    monkeypatch.setattr(
        encoder, "encode", lambda texts, **kw: calls.append(len(texts)) or original(texts, **kw)
    )
    assert run() == first
    assert cached.stat().st_ino == inode  # read, not written again (only touched)
    assert calls == [first["queries"]]  # only the queries were encoded again


def test_a_registry_encoders_evaluation_embeddings_are_kept_and_reused(
    slices: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`evaluate` with the registry MiniLM keeps its embeddings of each text list under the
    embeddings cache (lists of DISK_MIN_TEXTS or more; lowered here to cover the slice), and
    a second evaluation, as a new distill run's base row, encodes nothing and scores the
    same; a model folder's embeddings are not kept."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    import geckokit.evaluate.mteb_model
    import geckokit.registry
    from geckokit.evaluate import evaluate

    monkeypatch.setattr(geckokit.registry, "cache_dir", lambda: tmp_path / "models")
    monkeypatch.delenv("GECKOKIT_EMBEDDINGS", raising=False)
    monkeypatch.setattr(geckokit.evaluate.mteb_model, "DISK_MIN_TEXTS", 1)
    calls: list[int] = []
    original = SentenceTransformer.encode

    def counting(self: Any, texts: Any, *args: Any, **kw: Any) -> Any:
        calls.append(len(texts))
        return original(self, texts, *args, **kw)

    monkeypatch.setattr(SentenceTransformer, "encode", counting)

    def run(model: str = "all-minilm-l6-v2") -> float:
        table = evaluate(model, str(slices["scifact"]), dims=[384], formats=["gecko"])
        return float(table.column("score")[0].as_py())

    first = run()
    kept = sorted((tmp_path / "embeddings").glob("*.npy"))
    corpus = len((slices["scifact"] / "corpus.jsonl").read_text().splitlines())
    assert sorted(np.load(p).shape[0] for p in kept) == [30, corpus]  # queries, corpus
    assert all(p.name.startswith("all-minilm-l6-v2-eval-gecko-") for p in kept)
    assert calls == [corpus, 30] or calls == [30, corpus], calls
    calls.clear()
    assert run() == first
    assert calls == []  # both lists read back
    calls.clear()
    folder = geckokit.registry.resolve("all-minilm-l6-v2", kind=geckokit.registry.ModelKind.ENCODER)
    run(folder)  # a model folder, whose weights may change: not kept
    assert calls and sorted((tmp_path / "embeddings").glob("*.npy")) == kept
