"""``kill -9`` of ``geckokit distill`` inside a stage, then the same command to the end: the
run ends with an uninterrupted run's rows (none lost or twice, the generated queries
identical), no lock left behind; and a second run started on a folder another is writing is
refused. The real command with the default LLM and encoder on eight SciFact passages; the
cases live in kill_cases.py, which ``bench/reliability.py --area kill`` runs at a larger
count (every stage, more kill points)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.kill_cases import KillSetup, kill_case, two_runs

#: each case runs the command about twice: minutes on two cores, more on busy ones
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

SEED = 7
#: a kill lands in the first WITHIN seconds of its stage (the bench spreads them over all of it)
WITHIN = 20.0


@pytest.fixture(scope="module")
def setup(
    llm_path: str, shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KillSetup]:
    """``llm_path``: the default LLM pulled into the cache before the command needs it."""
    yield KillSetup(tmp_path_factory.mktemp("kill"), shared_data / "beir" / "scifact")


@pytest.mark.parametrize("stage", ["generate", "mine", "train"])
def test_a_run_killed_inside_a_stage_resumes_to_the_uninterrupted_rows(
    setup: KillSetup, tmp_path: Path, stage: str
) -> None:
    rng = random.Random(f"{SEED}:{stage}")
    tally = kill_case(setup, stage, rng, tmp_path / "run", within=WITHIN)
    assert not tally.problems, "\n".join(tally.problems)
    assert tally.survived == tally.tried == 1
    assert tally.rows_lost == tally.rows_duplicated == 0


def test_a_second_run_on_the_folder_is_refused(setup: KillSetup, tmp_path: Path) -> None:
    tally = two_runs(setup, random.Random(SEED), tmp_path / "run")
    assert not tally.problems, "\n".join(tally.problems)
    assert tally.clear_errors == tally.survived == tally.tried == 1
