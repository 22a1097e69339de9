"""Corpus embeddings on Ray workers in shards, with MiniLM on a few hundred SciFact passages
on a local Ray cluster: mining with executor ray above mine.ivf_above embeds on two workers,
and the vectors are the ones one process computes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from geckokit.corpus import load_corpus
from geckokit.encoder import EncoderRef
from geckokit.format import document_text
from geckokit.runs.executor import Executor, ExecutorSettings
from geckokit.tasks import DEFAULT_QUERY_TASK

pytestmark = pytest.mark.slow

PASSAGES, CHARS = 300, 200


@pytest.fixture(scope="module")
def corpus(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = (shared_data / "beir" / "scifact" / "corpus.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines[:PASSAGES]]
    for row in rows:
        row["text"] = row["text"][:CHARS]
    path = tmp_path_factory.mktemp("scifact") / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _ray(address: str) -> ExecutorSettings:
    return ExecutorSettings(executor=Executor.RAY, workers=2, worker_cpus=0.5, ray_address=address)


def test_empty_batches_are_refused(tmp_path: Path) -> None:
    from geckokit.fret.embed_workers import embed_on_workers

    with pytest.raises(ValueError, match="batch_size and batches_per_shard must be at least 1"):
        embed_on_workers(["a"], encoder="x", folder=tmp_path, settings=_ray("x"), batch_size=0)


def test_mine_on_ray_embeds_on_the_workers_above_the_threshold(
    ray_cluster: str, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geckokit.encoder import load_encoder
    from geckokit.fret import embed_workers
    from geckokit.fret.fusion import Fusion
    from geckokit.fret.mine_run import MineConfig, mine
    from geckokit.fret.retrieve import embed_passages
    from geckokit.io import write_table

    calls: list[int] = []
    on_workers = embed_workers.embed_on_workers

    def counted(texts: list[str], **kwargs: object) -> np.ndarray:
        calls.append(len(texts))
        # small shards, so that both workers take several: 10 batches of 32, 2 per shard
        return on_workers(texts, batch_size=32, batches_per_shard=2, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(embed_workers, "embed_on_workers", counted)
    passages = load_corpus(corpus).passages
    seeds = passages["passage_id"].to_pylist()[:10]
    write_table(
        pa.table(
            {
                "query_id": [f"{p}:q0" for p in seeds],
                "passage_id": seeds,
                "task_type": ["question answering"] * len(seeds),
                "task": [DEFAULT_QUERY_TASK] * len(seeds),
                "query": passages["title"].to_pylist()[:10],
            }
        ),
        tmp_path / "gen" / "queries" / "part-00000.parquet",
    )
    model = load_encoder("all-minilm-l6-v2")
    encoder = EncoderRef.named(model, "all-minilm-l6-v2")
    manifest = mine(
        tmp_path / "gen",
        corpus,
        tmp_path / "m",
        llm=None,
        encoder=encoder,
        config=MineConfig(top_n=5, fusion=Fusion.SEED, ivf_above=100, nprobe=4),
        show_progress=False,
        executor=_ray(ray_cluster),
    )
    assert calls == [len(passages)]  # embedded once, on the workers
    assert not (tmp_path / "m" / embed_workers.EMBEDDINGS).exists()  # shards gone once whole
    assert manifest["index"]["kind"] == "ivf-sq8" and manifest["index"]["recall"] is not None
    # what the workers computed is what the cache now serves, and what MiniLM gives here
    cached = embed_passages(encoder, passages, show_progress=False)
    texts = [
        document_text(t, x)
        for t, x in zip(passages["title"].to_pylist(), passages["text"].to_pylist(), strict=True)
    ]
    here = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(cached, here, atol=1e-4)
