"""The embeddings cache's listing and pruning, on files laid out as ``cached_encode`` writes
them (its own writing and reuse, with a stand-in encoder, are tested in
tests/fret/test_embedding_cache.py; the real MiniLM's in tests/fret/test_mine.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from geckokit.cache import cached_embeddings, prune_embeddings
from geckokit.cli.main import cli

DAY = 86400.0


def _array(folder: Path, stem: str, *, count: int, age_days: float, sidecar: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.npy"
    np.save(path, np.ones((count, 4), dtype=np.float32))
    if sidecar:
        meta = {"encoder": "all-minilm-l6-v2", "count": count, "texts_sha256": "ab" * 32}
        path.with_suffix(".json").write_text(json.dumps(meta))
    stamp = time.time() - age_days * DAY
    os.utime(path, (stamp, stamp))
    return path


def _size(folder: Path) -> str:
    total = sum(p.stat().st_size for p in folder.iterdir())
    return f"{total / 1000:,.1f} KB"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_listing_newest_first_with_sidecar_fields(tmp_path: Path) -> None:
    old = _array(tmp_path, "enc-passages-1111", count=3, age_days=10)
    new = _array(tmp_path, "enc-passages-2222", count=5, age_days=0)
    broken = _array(tmp_path, "enc-passages-3333", count=2, age_days=1, sidecar=False)
    (tmp_path / f"enc-passages-4444.{os.getpid()}.tmp.npy").write_bytes(b"partial")

    entries = cached_embeddings(tmp_path)

    assert [e.path for e in entries] == [new, broken, old]  # the temporary file is left out
    assert (entries[0].encoder, entries[0].count, entries[0].complete) == (
        "all-minilm-l6-v2",
        5,
        True,
    )
    assert entries[0].size_bytes == new.stat().st_size + new.with_suffix(".json").stat().st_size
    assert (entries[1].encoder, entries[1].count, entries[1].complete) == (None, None, False)
    assert cached_embeddings(tmp_path / "missing") == []


def test_prune_by_age_keeps_recent_and_removes_leftovers(tmp_path: Path) -> None:
    old = _array(tmp_path, "enc-passages-1111", count=3, age_days=10)
    new = _array(tmp_path, "enc-passages-2222", count=5, age_days=0)
    broken = _array(tmp_path, "enc-passages-3333", count=2, age_days=0, sidecar=False)
    orphan = tmp_path / "enc-passages-5555.json"
    orphan.write_text("{}")
    dead = tmp_path / f"enc-passages-6666.{_dead_pid()}.tmp.npy"
    dead.write_bytes(b"partial")
    live = tmp_path / f"enc-passages-7777.{os.getpid()}.tmp.npy"  # a write in progress
    live.write_bytes(b"partial")

    planned = prune_embeddings(tmp_path, older_than_days=7, dry_run=True)
    expected = sorted([old, old.with_suffix(".json"), broken, orphan, dead])
    assert list(planned) == expected
    assert planned == {p: p.stat().st_size for p in expected}  # sizes before removal
    assert all(p.exists() for p in planned)  # a dry run removes nothing

    assert list(prune_embeddings(tmp_path, older_than_days=7)) == expected
    assert sorted(tmp_path.iterdir()) == sorted([new, new.with_suffix(".json"), live])

    assert list(prune_embeddings(tmp_path, older_than_days=None)) == sorted(
        [new, new.with_suffix(".json")]
    )
    assert sorted(tmp_path.iterdir()) == [live]


def test_prune_rejects_a_negative_age(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="older_than_days must be 0 or more, got -1"):
        prune_embeddings(tmp_path, older_than_days=-1)


def test_cli_lists_and_prunes_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GECKOKIT_HOME", str(tmp_path))
    monkeypatch.delenv("GECKOKIT_EMBEDDINGS", raising=False)  # the home's own folder
    folder = tmp_path / "embeddings"
    old = _array(folder, "all-minilm-l6-v2-passages-1111", count=3, age_days=30)
    new = _array(folder, "all-minilm-l6-v2-passages-2222", count=1234, age_days=0)
    runner = CliRunner()

    listed = runner.invoke(cli, ["cache", "list"])
    assert listed.exit_code == 0, listed.output
    assert f"2 cached arrays, {_size(folder)}, in {folder}" in listed.output
    assert "1,234" in listed.output
    assert listed.output.index(new.name) < listed.output.index(old.name)

    refused = runner.invoke(cli, ["cache", "prune"])
    assert refused.exit_code == 2
    assert "give one of --older-than DAYS and --all" in refused.output

    pruned = runner.invoke(cli, ["cache", "prune", "--older-than", "7"])
    assert pruned.exit_code == 0, pruned.output
    assert f"removed {old}" in pruned.output
    assert "removed 2 files (1 array," in pruned.output
    assert not old.exists() and new.exists()

    dry = runner.invoke(cli, ["cache", "prune", "--all", "--dry-run"])
    assert "would remove 2 files (1 array," in dry.output and new.exists()
    assert runner.invoke(cli, ["cache", "prune", "--all"]).exit_code == 0
    assert list(folder.iterdir()) == []
    emptied = runner.invoke(cli, ["cache", "list"])
    assert emptied.exit_code == 0 and f"0 cached arrays, 0 B, in {folder}" in emptied.output


def test_the_folder_is_the_homes_unless_geckokit_embeddings_names_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geckokit.registry import embeddings_dir

    monkeypatch.setenv("GECKOKIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GECKOKIT_EMBEDDINGS", raising=False)
    assert embeddings_dir() == tmp_path / "home" / "embeddings"
    monkeypatch.setenv("GECKOKIT_EMBEDDINGS", str(tmp_path / "big-disk"))
    assert embeddings_dir() == tmp_path / "big-disk"
