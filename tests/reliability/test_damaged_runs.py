"""Damaged run folders: a shard cut short, emptied or garbled, a run resumed with another
corpus of the same size or with other settings after its manifest was deleted, a shard
copied from another run, the run manifest lost or garbled, a disk that fills during a shard
write. Each is repaired (the output then equals an undamaged run's) or refused with an error
that says how to repair it, leaving the folder as it was; never read as finished, never
mixed. The cases live in damage_cases.py, which ``bench/reliability.py --area damage`` runs
at a larger count.

The plumbing runs with the scripted LLM and the tiny encoder of :mod:`geckokit.testing`
(seconds); the cases that hold for the LLM's own output run again with the real 0.5B LLM and
the real initial encoder on four SciFact passages (slow)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from geckokit.encoder import EncoderRef
from geckokit.fret import cost
from geckokit.testing import ScriptedLLM, tiny_encoder
from tests.reliability.damage_cases import KINDS, RunTally, Setup, full_disk, run_case

#: seeds per kind in the fast run: each picks its own file, cut, disk size
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def scripted(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cost, "probe_rates", lambda llm, **_: None)  # the estimate: counts, not speed
        yield Setup(
            tmp_path_factory.mktemp("damage"),
            shared_data / "beir" / "scifact",
            ScriptedLLM(),
            tiny_encoder(),
            passages=6,
        )


def _clean(tally: RunTally) -> str:
    return "\n".join(tally.problems)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_run_folder_is_repaired_or_refused_clearly(
    scripted: Setup, tmp_path: Path, kind: str, seed: int
) -> None:
    tally = run_case(scripted, kind, seed, tmp_path / "run")
    assert tally.tried == 1 and not tally.problems, _clean(tally)
    assert tally.survived == 1 and tally.rows_lost == tally.rows_duplicated == 0
    refusals = ("other corpus", "other seed, no manifest", "other top-n, no manifest")
    if kind in (*refusals, "copied shard", "full disk"):
        assert tally.clear_errors == 1  # these are never quietly repaired


def test_the_full_disk_is_a_real_one_where_it_can_be(tmp_path: Path) -> None:
    """As root (the test machines) the disk-full cases fill a real tmpfs; elsewhere they
    raise ENOSPC from the Parquet writer, and say so in their name."""
    with full_disk(tmp_path / "disk", 1) as room:
        mode = full_disk.mode  # type: ignore[attr-defined]
        if mode == "tmpfs":
            with pytest.raises(OSError, match="No space left on device"):
                (tmp_path / "disk" / "big").write_bytes(b"x" * 8192)
            room()
            (tmp_path / "disk" / "big").write_bytes(b"x" * 8192)
    assert mode in ("tmpfs", "simulated")
    if mode == "tmpfs":
        assert not (tmp_path / "disk" / "big").exists()  # unmounted: the tmpfs is gone


# -- with the real models


@pytest.fixture(scope="module")
def real(
    llm: object, shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cost, "probe_rates", lambda llm, **_: None)
        yield Setup(
            tmp_path_factory.mktemp("damage-real"),
            shared_data / "beir" / "scifact",
            llm,
            EncoderRef.load("all-minilm-l6-v2"),
            passages=4,
            atol=None,  # llama.cpp's numbers depend on its KV cache's history: rows by id
        )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "seed"),
    [
        ("cut short", 2),  # cuts mine's scores/part-00000: the LLM scores its pairs again
        ("byte flipped", 0),  # in generate's queries/part-00000: written again if it matters
        ("other corpus", 0),
        ("other seed, no manifest", 0),
        ("other top-n, no manifest", 0),
        ("copied shard", 0),
    ],
)
def test_with_the_real_llm_a_damaged_run_is_repaired_or_refused_clearly(
    real: Setup, tmp_path: Path, kind: str, seed: int
) -> None:
    """The repaired shard is made again by the LLM, and the run ends with the undamaged
    run's rows, none lost or twice. (Their values are not compared: llama.cpp's scores move
    by a few hundredths with what its KV cache held before, which is not a run folder's
    doing.)"""
    tally = run_case(real, kind, seed, tmp_path / "run")
    assert not tally.problems, _clean(tally)
    assert tally.survived == tally.tried == 1
    assert tally.rows_lost == tally.rows_duplicated == 0
