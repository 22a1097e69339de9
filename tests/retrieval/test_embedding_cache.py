"""The embeddings cache's plumbing: reuse on the same texts, recompute on others, and a stop
while writing never pairs one set of embeddings with another set of texts. The encoder here
is a stand-in that records its calls; the real MiniLM's use of the cache is tested in
test_mine.py and tests/evaluate/test_eval_minilm.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from geckokit.retrieval.index import cached_encode


class Recorder:
    """Embeds a text as (length, 1), normalised, and counts the texts it was asked for."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str], **_: Any) -> np.ndarray:
        self.calls.append(list(texts))
        v = np.array([[len(t), 1.0] for t in texts], dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_same_texts_reuse_other_texts_recompute(tmp_path: Path) -> None:
    enc, cache = Recorder(), tmp_path / "e" / "c.npy"
    a = cached_encode(enc, ["one", "three"], cache=cache, key={"encoder": "x"})
    again = cached_encode(enc, ["one", "three"], cache=cache, key={"encoder": "x"})
    assert np.array_equal(a, again) and len(enc.calls) == 1
    b = cached_encode(enc, ["four", "seventeen"], cache=cache, key={"encoder": "x"})
    assert len(enc.calls) == 2 and not np.array_equal(a, b)
    cached_encode(enc, ["four", "seventeen"], cache=cache, key={"encoder": "y"})
    assert len(enc.calls) == 3  # another encoder's name is another key
    assert sorted(p.name for p in cache.parent.iterdir()) == ["c.json", "c.npy"]  # no temp files


def test_a_stop_while_writing_leaves_nothing_to_mistake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    enc, cache = Recorder(), tmp_path / "c.npy"
    first = cached_encode(enc, ["one", "three"], cache=cache, key={"encoder": "x"})
    # the next write stops after the array is in place, before its sidecar is
    real_replace = Path.replace

    def stop_at_sidecar(self: Path, target: Any) -> Any:
        if str(target).endswith(".json"):
            raise KeyboardInterrupt
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", stop_at_sidecar)
    with pytest.raises(KeyboardInterrupt):
        cached_encode(enc, ["four", "seventeen"], cache=cache, key={"encoder": "x"})
    monkeypatch.setattr(Path, "replace", real_replace)
    assert not cache.with_suffix(".json").exists()  # the old sidecar went first
    # the first texts again: recomputed, not read from the other texts' array
    got = cached_encode(enc, ["one", "three"], cache=cache, key={"encoder": "x"})
    assert np.array_equal(got, first) and enc.calls[-1] == ["one", "three"]
    assert json.loads(cache.with_suffix(".json").read_text())["count"] == 2


def test_a_shared_folder_keeps_one_file_per_set_of_texts(tmp_path: Path) -> None:
    """``folder`` and ``label``: two corpora under one label keep a file each, and each is
    found again without encoding."""
    enc = Recorder()
    for texts in (["one", "three"], ["four", "seventeen"], ["one", "three"], ["four", "seventeen"]):
        cached_encode(enc, texts, folder=tmp_path, label="m/x-passages", key={"encoder": "m/x"})
    assert len(enc.calls) == 2
    names = sorted(p.name for p in tmp_path.glob("*.npy"))
    assert len(names) == 2 and all(n.startswith("m_x-passages-") for n in names), names


def test_reuse_marks_last_use_and_listing_reads_the_sidecar(tmp_path: Path) -> None:
    """A reused array's modification time moves to now (what ``geckokit cache prune
    --older-than`` reads), and ``cached_embeddings`` reads the sidecar cached_encode wrote."""
    import os
    import time

    from geckokit.cache import cached_embeddings

    enc = Recorder()
    cached_encode(enc, ["one", "three"], folder=tmp_path, label="m-passages", key={"encoder": "m"})
    (path,) = tmp_path.glob("*.npy")
    week_ago = time.time() - 7 * 86400
    os.utime(path, (week_ago, week_ago))
    cached_encode(enc, ["one", "three"], folder=tmp_path, label="m-passages", key={"encoder": "m"})
    assert len(enc.calls) == 1  # reused, not encoded again
    assert path.stat().st_mtime > time.time() - 60
    (entry,) = cached_embeddings(tmp_path)
    assert (entry.path, entry.encoder, entry.count, entry.complete) == (path, "m", 2, True)
