"""Corpus embeddings on a pool of workers, in shards: what mining does above
``mine.ivf_above`` passages with executor ``ray``.

Each worker loads the encoder once (on a GPU when the executor reserves one per worker,
``worker_gpus`` > 0) and embeds whole shards. A shard's rows are batches of passage texts
(``start``, ``texts``), so that the encoder sees ``batch_size`` texts at a time; it writes
one row per passage (``row``, ``embedding``) to ``{folder}/embeddings/part-NNNNN.parquet``,
stamped with the encoder and a digest of its texts, through the same sharded executor as the
LLM stages (:mod:`geckokit.runs.executor`): a killed run resumes from its finished shards.
The assembled array then goes to the embeddings cache like any other
(:func:`~geckokit.fret.retrieve.embed_passages`), and the shards are deleted.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from geckokit.io import read_shards
from geckokit.runs.executor import ExecutorSettings, Loaded, shard_executor
from geckokit.runs.stamps import ShardKey, json_sha256

#: the sharded output's folder name under the shards' folder
EMBEDDINGS = "embeddings"
EMBEDDING_SCHEMA = pa.schema([("row", pa.int64()), ("embedding", pa.list_(pa.float32()))])


def load_encoder_worker(name: str, *, gpu: bool) -> Loaded:
    """The encoder ``name`` (:func:`~geckokit.encoder.load_encoder`) on ``cuda`` when
    ``gpu``, else on the CPU, for one worker."""
    from geckokit.encoder import load_encoder

    return Loaded(load_encoder(name, device="cuda" if gpu else "cpu"), info={"model": name})


class EmbeddingStage:
    """Stage: rows of (start, texts) -> rows of (row, embedding), normalised, one per text."""

    def __init__(self, encoder: Any, *, batch_size: int) -> None:
        self.encoder, self.batch_size = encoder, batch_size

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows: list[int] = []
        vectors: list[np.ndarray] = []
        for start, texts in zip(
            batch["start"].to_pylist(), batch["texts"].to_pylist(), strict=True
        ):
            emb = self.encoder.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )  # (len(texts), dim)
            rows.extend(range(start, start + len(texts)))
            vectors.extend(np.asarray(emb, dtype=np.float32))
        embedding = pa.array([v.tolist() for v in vectors], type=pa.list_(pa.float32()))
        return pa.table({"row": rows, "embedding": embedding}, schema=EMBEDDING_SCHEMA)


def _embedding_stage(model: Any, *, batch_size: int) -> EmbeddingStage:
    return EmbeddingStage(model, batch_size=batch_size)


def _embeddings_only(table: pa.Table) -> dict[str, pa.Table]:
    return {EMBEDDINGS: table}


def _texts_sha256(shard: pa.Table) -> str:
    return json_sha256(
        [s, t] for s, t in zip(shard["start"].to_pylist(), shard["texts"].to_pylist(), strict=True)
    )


def embed_on_workers(
    texts: list[str],
    *,
    encoder: str,
    folder: Path,
    settings: ExecutorSettings,
    batch_size: int = 256,
    batches_per_shard: int = 8,
    show_progress: bool = True,
) -> np.ndarray:
    """Normalised embeddings of ``texts`` by the encoder called ``encoder``, shape
    (n, dim), computed in shards of ``batches_per_shard`` batches of ``batch_size`` texts
    by the workers ``settings`` ask for (each loads the encoder once; on a GPU when
    ``worker_gpus`` > 0). The shards are written under ``folder`` (a rerun resumes from
    them) and deleted once the array is whole."""
    if batch_size < 1 or batches_per_shard < 1:
        raise ValueError(
            f"batch_size and batches_per_shard must be at least 1, got {batch_size} and "
            f"{batches_per_shard}"
        )
    starts = list(range(0, len(texts), batch_size))
    items = pa.table(
        {"start": starts, "texts": [texts[s : s + batch_size] for s in starts]},
        schema=pa.schema([("start", pa.int64()), ("texts", pa.list_(pa.string()))]),
    )
    load = functools.partial(load_encoder_worker, encoder, gpu=settings.worker_gpus > 0)
    key = ShardKey(
        settings={"encoder": encoder, "batch_size": batch_size}, fingerprint=_texts_sha256
    )
    with shard_executor(load, settings) as work:
        run = work.run(
            items,
            out=folder,
            outputs=(EMBEDDINGS,),
            shard_size=batches_per_shard,
            make_stage=functools.partial(_embedding_stage, batch_size=batch_size),
            split=_embeddings_only,
            description="mine: embed passages",
            show_progress=show_progress,
            key=key,
        )
    table = read_shards(folder / EMBEDDINGS)
    if table is None or run.shards_skipped + run.shards_written < run.shards_total:
        raise RuntimeError(f"{folder / EMBEDDINGS}: not every shard of embeddings was written")
    table = table.sort_by("row")
    if table["row"].to_pylist() != list(range(len(texts))):
        raise RuntimeError(f"{folder / EMBEDDINGS}: the shards do not hold one row per passage")
    emb = np.stack(table["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
    shutil.rmtree(folder / EMBEDDINGS, ignore_errors=True)
    return emb  # (n, dim)
