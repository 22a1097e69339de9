"""The model registry: real part packages, pinned hashes, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from geckokit import registry
from geckokit.registry import ModelError, ModelKind, UnknownModelError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GECKOKIT_HOME", str(tmp_path))
    return tmp_path / "models"


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(
        UnknownModelError, match="Known models: all-minilm-l6-v2, all-mpnet-base-v2"
    ):
        registry.get_entry("gpt-17")
    with pytest.raises(UnknownModelError, match=r"qwen2\.5-coder-0\.5b-instruct"):
        registry.resolve("no-such-model", kind=ModelKind.LLM)


def test_aliases_and_kinds() -> None:
    assert registry.get_entry("Qwen-0.5B").name == registry.DEFAULT_LLM
    assert registry.get_entry("sentence-transformers/all-MiniLM-L6-v2").kind is ModelKind.ENCODER
    with pytest.raises(ValueError, match="is an encoder, not an llm"):
        registry.resolve("all-minilm-l6-v2", kind=ModelKind.LLM)


def test_every_entry_is_complete() -> None:
    for entry in registry.REGISTRY.values():
        assert entry.parts and entry.license and entry.source.startswith("PyPI: ")
        assert len(entry.sha256) == 64, entry.name


def test_local_path_passes_through(tmp_path: Path) -> None:
    f = tmp_path / "my.gguf"
    f.write_bytes(b"x")
    assert registry.resolve(str(f), kind=ModelKind.LLM) == str(f)


def test_cache_dir_follows_environment(home: Path) -> None:
    assert registry.cache_dir() == home


@pytest.mark.slow
def test_pull_joins_verifies_and_detects_corruption(home: Path) -> None:
    path = registry.pull(registry.DEFAULT_LLM)
    assert path == home / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    assert path.stat().st_size == 491_400_064
    assert registry.sha256_file(path) == registry.get_entry(registry.DEFAULT_LLM).sha256
    assert not [p for p in home.iterdir() if "partial" in p.name]
    assert registry.resolve(registry.DEFAULT_LLM, kind=ModelKind.LLM) == str(path)

    # a flipped byte (same size, new mtime) is caught by the hash, and the copy is removed
    with path.open("r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(1, 1))
    with pytest.raises(ModelError, match=r"corrupt.*pull qwen2\.5-coder-0\.5b-instruct"):
        registry.installed_path(registry.get_entry(registry.DEFAULT_LLM))
    assert not path.exists()

    # a truncated file is caught by its size
    path = registry.pull(registry.DEFAULT_LLM)
    with path.open("r+b") as f:
        f.truncate(1_000_000)
    with pytest.raises(ModelError, match="truncated"):
        registry.resolve(registry.DEFAULT_LLM, kind=ModelKind.LLM)
    assert not path.exists()


def test_interrupted_pull_leaves_nothing(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def half_then_die(files: list[Path], out: Path, progress: object) -> None:
        out.write_bytes(files[0].read_bytes()[:1000])
        raise KeyboardInterrupt

    monkeypatch.setattr(registry, "_join", half_then_die)
    with pytest.raises(KeyboardInterrupt):
        registry.pull(registry.DEFAULT_LLM)
    assert not home.exists() or list(home.iterdir()) == []


@pytest.mark.slow
def test_wrong_hash_is_never_moved_into_place(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = registry.get_entry(registry.DEFAULT_LLM)
    bad = registry.ModelEntry(**{**entry.__dict__, "name": "bad", "sha256": "0" * 64})
    monkeypatch.setitem(registry.REGISTRY, "bad", bad)
    with pytest.raises(ModelError, match=r"sha256 .* expected 0000"):
        registry.pull("bad")
    assert not home.exists() or list(home.iterdir()) == []


def test_encoder_is_used_in_place_and_verified() -> None:
    path = Path(registry.resolve("all-minilm-l6-v2", kind=ModelKind.ENCODER))
    assert (path / "modules.json").exists()
    assert registry.verify("minilm") == path


def test_hub_ids_are_recognised() -> None:
    assert (
        registry.resolve("BAAI/bge-small-en-v1.5", kind=ModelKind.ENCODER)
        == "BAAI/bge-small-en-v1.5"
    )
    with pytest.raises(ValueError, match=r"org/repo:file\.gguf"):
        registry.resolve("Qwen/Qwen2.5-0.5B-Instruct-GGUF", kind=ModelKind.LLM)


def test_hash_checks_are_recorded_in_the_cache_not_the_package(home: Path) -> None:
    path = Path(registry.resolve("all-minilm-l6-v2", kind=ModelKind.ENCODER))
    assert (home / ".all-minilm-l6-v2.verified.json").exists()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".verified.json")]
