"""Search at scale: an inverted-file index with 8-bit scalar quantisation (FAISS
``IVF{nlist},SQ8``, inner product), built once into a folder and read back memory-mapped by
whoever searches it, and its recall against exact search.

The index keeps a quarter of the flat index's bytes (one byte per dimension) and searches
``nprobe`` of its ``nlist`` lists instead of every vector; what that costs is measured, not
assumed: :func:`recall_against_exact` compares its top k with an exact (flat) search's on a
seeded sample of the queries.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geckokit._deps import require
from geckokit.io import DamagedFileError, read_json, write_json

log = logging.getLogger(__name__)

#: the index file and its stamp in the folder :func:`stored_ivf` writes
IVF_FILE = "ivf-sq8.faiss"
IVF_STAMP = "ivf-sq8.json"
#: FAISS's k-means wants at least this many training points per list (it warns below)
MIN_POINTS_PER_LIST = 39
#: k-means is trained on at most this many points per list (FAISS subsamples above it)
MAX_POINTS_PER_LIST = 256
_FORMAT = 1


def _faiss() -> Any:
    return require("faiss", extra="train", purpose="neighbour retrieval")


def ivf_nlist(n: int) -> int:
    """The number of inverted lists for ``n`` vectors: about 4 sqrt(n) (FAISS's guideline
    for up to a million vectors), at most n / 39 so that k-means has the training points
    per list it needs, and at least 1."""
    if n < 1:
        raise ValueError(f"an IVF index needs at least one vector, got n={n}")
    return max(1, min(round(4 * math.sqrt(n)), n // MIN_POINTS_PER_LIST))


def build_ivf(embeddings: np.ndarray, *, nlist: int | None = None, seed: int = 0) -> Any:
    """An ``IVF{nlist},SQ8`` inner-product index over ``embeddings`` (n, dim), float32,
    normalised. Its lists and quantiser ranges are trained on a sample of at most 256
    vectors per list drawn with ``seed``; ``nlist`` None: :func:`ivf_nlist`."""
    faiss = _faiss()
    n, dim = embeddings.shape
    nlist = ivf_nlist(n) if nlist is None else nlist
    if not 1 <= nlist <= n:
        raise ValueError(f"nlist must be between 1 and the {n} vectors, got {nlist}")
    vectors = np.ascontiguousarray(embeddings, dtype=np.float32)  # (n, dim)
    rng = np.random.default_rng(seed)
    size = min(n, MAX_POINTS_PER_LIST * nlist)
    sample = vectors[np.sort(rng.choice(n, size=size, replace=False))]  # (size, dim)
    index = faiss.index_factory(dim, f"IVF{nlist},SQ8", faiss.METRIC_INNER_PRODUCT)
    faiss.extract_index_ivf(index).cp.seed = seed
    index.train(sample)
    index.add(vectors)
    return index


def load_ivf(path: Path, *, nprobe: int) -> Any:
    """The IVF index at ``path``, memory-mapped (``IO_FLAG_MMAP``: its lists stay on disk,
    paged in as searched and shared between the processes that map them), searching
    ``nprobe`` lists per query (at most its ``nlist``)."""
    faiss = _faiss()
    if nprobe < 1:
        raise ValueError(f"nprobe must be at least 1, got {nprobe}")
    index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP)
    index.nprobe = min(nprobe, faiss.extract_index_ivf(index).nlist)
    return index


def embeddings_sha256(embeddings: np.ndarray) -> str:
    """A digest of ``embeddings``' shape and float32 bytes."""
    vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
    digest = hashlib.sha256(str(vectors.shape).encode())
    digest.update(vectors.tobytes())
    return digest.hexdigest()


@dataclass
class StoredIVF:
    """An IVF index read from its folder: the index, its file, its lists, whether this call
    built it (False: reused) and the seconds the build took (None: reused)."""

    index: Any
    path: Path
    nlist: int
    built: bool
    build_seconds: float | None


def stored_ivf(
    embeddings: np.ndarray,
    folder: Path,
    *,
    stamp: dict[str, Any],
    nprobe: int,
    seed: int = 0,
) -> StoredIVF:
    """The IVF index of ``embeddings`` in ``folder`` (:data:`IVF_FILE`), memory-mapped
    (:func:`load_ivf`). It is reused when its stamp (:data:`IVF_STAMP`) records ``stamp``
    (what the caller says the vectors are, e.g. a corpus digest and the encoder), the
    embeddings' digest and the build settings; otherwise it is built (:func:`build_ivf`)
    and written, index first, so that a build cut short leaves no stamp to trust."""
    nlist = ivf_nlist(len(embeddings))
    expected = {
        "format": _FORMAT,
        "factory": f"IVF{nlist},SQ8",
        "metric": "inner_product",
        "seed": seed,
        "embeddings_sha256": embeddings_sha256(embeddings),
        **stamp,
    }
    path, stamp_path = folder / IVF_FILE, folder / IVF_STAMP
    if path.exists() and _read_stamp(stamp_path) == expected:
        return StoredIVF(load_ivf(path, nprobe=nprobe), path, nlist, False, None)
    if path.exists():
        log.info("%s was built from other vectors or settings; it is built again", path)
    t0 = time.perf_counter()
    index = build_ivf(embeddings, nlist=nlist, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    stamp_path.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    _faiss().write_index(index, str(tmp))
    os.replace(tmp, path)
    write_json(expected, stamp_path)
    seconds = round(time.perf_counter() - t0, 2)
    return StoredIVF(load_ivf(path, nprobe=nprobe), path, nlist, True, seconds)


def _read_stamp(path: Path) -> dict[str, Any] | None:
    try:
        return read_json(path)
    except DamagedFileError:
        return None  # a damaged stamp vouches for nothing: the index is built again


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each query's exact top k (``exact``, rows (q, k)) that ``found``
    (rows (q, k), -1 for a missing one) also holds; 1.0 for no query."""
    if found.shape != exact.shape:
        raise ValueError(f"found {found.shape} and exact {exact.shape} must have one shape")
    q, k = exact.shape
    if q == 0 or k == 0:
        return 1.0
    hits = sum(
        len(set(f[f >= 0].tolist()) & set(e[e >= 0].tolist()))
        for f, e in zip(found, exact, strict=True)
    )
    return float(hits / (q * k))


@dataclass
class IndexRecord:
    """How the candidates were searched (a mine manifest's ``index``): ``kind`` flat, hnsw
    or ivf-sq8; for IVF its lists, ``nprobe``, the file, whether this run built it and
    how long that took, and ``recall`` of its top ``recall_k`` against exact search over
    ``recall_queries`` sampled queries."""

    kind: str
    passages: int
    nlist: int | None = None
    nprobe: int | None = None
    path: str | None = None
    built: bool | None = None
    build_seconds: float | None = None
    recall: float | None = None
    recall_k: int | None = None
    recall_queries: int | None = None

    def dump(self) -> dict[str, Any]:
        return asdict(self)


def recall_against_exact(
    index: Any,
    embeddings: np.ndarray,
    queries: np.ndarray,
    *,
    k: int,
    sample: int = 200,
    seed: int = 0,
) -> tuple[float, int]:
    """Recall@``k`` of ``index``'s search against an exact (flat inner-product) search of
    ``embeddings`` (n, dim) on a sample of at most ``sample`` of ``queries`` (q, dim)
    drawn with ``seed``; returns the recall and the number of queries sampled."""
    if sample < 1:
        raise ValueError(f"sample must be at least 1 query, got {sample}")
    faiss = _faiss()
    k = min(k, len(embeddings))
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(queries), size=min(sample, len(queries)), replace=False))
    chosen = np.ascontiguousarray(queries[rows], dtype=np.float32)  # (s, dim)
    flat = faiss.IndexFlatIP(embeddings.shape[1])
    flat.add(np.ascontiguousarray(embeddings, dtype=np.float32))
    _, exact = flat.search(chosen, k)  # (s, k)
    _, found = index.search(chosen, k)  # (s, k)
    return recall_at_k(found, exact), len(rows)
