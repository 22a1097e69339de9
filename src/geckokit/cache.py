"""What the embeddings cache holds, and pruning it.

Corpus embeddings of registry encoders are kept in ``$GECKOKIT_HOME/embeddings``
(:func:`geckokit.registry.embeddings_dir`) as ``{label}-{hash of the texts}.npy`` with a JSON
sidecar (the encoder, the number of texts and their hash; written by
:func:`geckokit.fret.retrieve.cached_encode`), so that every run over the same passages embeds
them once. Nothing else removes them: each corpus an encoder has seen stays (384-d float32:
1.5 KiB a passage, about 1.5 GB for a million). A file's modification time is its last use:
``cached_encode`` touches it when it reuses it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

_TMP = ".tmp."


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
        if _TMP in path.name:
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
) -> list[Path]:
    """Remove from ``folder`` the arrays (with their sidecars) last used more than
    ``older_than_days`` ago, every one when it is None; also, whatever their age, arrays
    without a sidecar (never reusable), sidecars without an array and temporary files left by
    a process that no longer runs. Returns the paths removed (that would be, with
    ``dry_run``), sorted."""
    if older_than_days is not None and older_than_days < 0:
        raise ValueError(f"older_than_days must be 0 or more, got {older_than_days}")
    folder = Path(folder)
    if not folder.is_dir():
        return []
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
    removed = sorted({p for p in doomed if p.exists()})
    if not dry_run:
        for path in removed:
            path.unlink(missing_ok=True)
    return removed


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
