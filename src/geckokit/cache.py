"""Embeddings kept on disk: writing and reusing them, listing them, pruning them.

Embeddings of registry encoders are kept in one folder (:func:`geckokit.registry.embeddings_dir`:
``$GECKOKIT_EMBEDDINGS``, else ``$GECKOKIT_HOME/embeddings``) as ``{label}-{hash of the
texts}.npy`` with a JSON sidecar (the encoder, the number of texts and their hash), written
and read by :func:`load_or_compute` for mining's :func:`geckokit.retrieval.index.cached_encode`
and for the evaluation, so that every run over the same texts embeds them once. Only
:func:`prune_embeddings` removes them: each corpus an encoder has seen stays (384-d float32: 1.5 KB a passage, about
1.5 GB for a million). A file's modification time is its last use: ``load_or_compute``
touches it when it reuses it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_TMP = ".tmp."


def texts_sha256(texts: list[str]) -> str:
    """The hash that names and checks a cached array: sha256 of the texts joined by U+001F."""
    return hashlib.sha256("\x1f".join(texts).encode()).hexdigest()


def load_or_compute(
    texts: list[str],
    compute: Callable[[list[str]], Any],
    *,
    cache: Path | None = None,
    folder: Path | None = None,
    label: str = "",
    key: dict[str, Any],
) -> np.ndarray:
    """``compute(texts)`` as float32, shape (n, dim), loaded from ``cache`` (a ``.npy``
    path) when its sidecar JSON equals ``key`` plus the texts' count and hash, else computed
    and saved there. ``folder`` and ``label`` instead name the file ``{label}-{hash}.npy`` in
    ``folder``, so a folder shared by many runs keeps one file per set of texts. Neither:
    computed, not saved. A reused file is touched (its time is its last use); writes are
    atomic and safe for several processes sharing the folder."""
    fingerprint = texts_sha256(texts)
    if folder is not None:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
        cache = folder / f"{safe}-{fingerprint[:16]}.npy"
    meta = {**key, "count": len(texts), "texts_sha256": fingerprint}
    meta_path = cache.with_suffix(".json") if cache is not None else None
    if cache is not None and meta_path is not None and cache.exists() and meta_path.exists():
        if json.loads(meta_path.read_text()) == meta:
            log.info("embeddings: reusing %s", cache)
            emb: np.ndarray = np.load(cache)
            touch(cache)  # its last use, for `geckokit cache prune --older-than`
            return emb
    emb = np.ascontiguousarray(compute(texts), dtype=np.float32)  # (n, dim)
    if cache is not None and meta_path is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        # unique temporary names (runs may share the folder), and the old sidecar removed
        # before the array is replaced: a stop in between leaves no sidecar, so nothing
        # can pair these embeddings with another set of texts
        tmp = cache.with_name(f"{cache.stem}.{os.getpid()}{_TMP}npy")
        np.save(tmp, emb)
        meta_path.unlink(missing_ok=True)
        tmp.replace(cache)
        tmp_meta = meta_path.with_name(f"{meta_path.stem}.{os.getpid()}{_TMP}json")
        tmp_meta.write_text(json.dumps(meta))
        tmp_meta.replace(meta_path)
    return emb


@dataclass(frozen=True)
class CachedEmbeddings:
    """One cached array: ``path`` (the ``.npy``), the ``encoder`` and text ``count`` its
    sidecar records (None when the sidecar is missing or unreadable: a write that stopped
    midway, never reused), its size with the sidecar, and when it was last written or reused
    (seconds since the epoch)."""

    path: Path
    encoder: str | None
    count: int | None
    size_bytes: int
    last_used: float

    @property
    def complete(self) -> bool:
        return self.encoder is not None


def cached_embeddings(folder: str | Path) -> list[CachedEmbeddings]:
    """The arrays in ``folder``, most recently used first (an empty list when the folder does
    not exist). Temporary files of a write in progress are left out."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    for path in folder.glob("*.npy"):
        if not is_array(path):
            continue
        meta_path = path.with_suffix(".json")
        encoder, count, size = None, None, _size(path)
        try:
            meta = json.loads(meta_path.read_text())
            encoder, count = str(meta["encoder"]), int(meta["count"])
            size += _size(meta_path)
        except (OSError, ValueError, KeyError, TypeError):
            pass
        out.append(CachedEmbeddings(path, encoder, count, size, _mtime(path)))
    return sorted(out, key=lambda e: e.last_used, reverse=True)


def prune_embeddings(
    folder: str | Path, *, older_than_days: float | None, dry_run: bool = False
) -> dict[Path, int]:
    """Remove from ``folder`` the arrays (with their sidecars) last used more than
    ``older_than_days`` ago, every one when it is None; also, whatever their age, arrays
    without a sidecar (never reusable), sidecars without an array and temporary files left by
    a process that no longer runs. Returns the paths removed (that would be, with
    ``dry_run``), sorted, with their sizes in bytes."""
    if older_than_days is not None and older_than_days < 0:
        raise ValueError(f"older_than_days must be 0 or more, got {older_than_days}")
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    cutoff = None if older_than_days is None else time.time() - older_than_days * 86400
    doomed: list[Path] = []
    for entry in cached_embeddings(folder):
        if not entry.complete or cutoff is None or entry.last_used < cutoff:
            doomed += [entry.path, entry.path.with_suffix(".json")]
    for meta_path in folder.glob("*.json"):
        if _TMP not in meta_path.name and not meta_path.with_suffix(".npy").exists():
            doomed.append(meta_path)
    for tmp in folder.glob(f"*{_TMP}*"):
        if not _writer_alive(tmp):
            doomed.append(tmp)
    removed = {p: _size(p) for p in sorted(set(doomed)) if p.exists()}
    if not dry_run:
        for path in removed:
            path.unlink(missing_ok=True)
    return removed


def is_array(path: Path) -> bool:
    """Whether ``path`` is a cached array (not a sidecar, not a write's temporary file)."""
    return path.suffix == ".npy" and _TMP not in path.name


def touch(path: Path) -> None:
    """Mark a cached array as used now (its modification time), where the folder allows."""
    try:
        os.utime(path)
    except OSError:
        pass


def _writer_alive(tmp: Path) -> bool:
    """Whether the process named in a temporary file (``{stem}.{pid}.tmp.npy``) still runs."""
    parts = tmp.name.split(".")
    try:
        pid = int(parts[parts.index("tmp") - 1])
    except (ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive but not ours to signal
        return True
    return True


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
