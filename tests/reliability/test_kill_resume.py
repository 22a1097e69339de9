"""``kill -9`` of ``geckokit distill`` inside each stage in turn (generate, mine, mix, train,
eval), each time followed by the same command: the run ends with an uninterrupted run's rows
(none lost or twice, the generated queries identical), no lock left behind; and a second run
started on a folder another is writing is refused. The real command with the default LLM
and encoder on eight SciFact passages; the cases live in kill_cases.py, which ``bench/
reliability.py --area kill`` runs at a larger count (a fresh run per kill, anywhere in its
stage)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.reliability.kill_cases import STAGES, KillSetup, kill_in_turn

#: about three runs of the command: minutes on two cores, more on busy ones
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

SEED = 7
#: a kill lands in the first WITHIN seconds of its stage (the bench spreads them over all of it)
WITHIN = 20.0


def test_a_run_killed_in_each_stage_resumes_to_the_uninterrupted_rows(
    llm_path: str, shared_data: Path, tmp_path: Path
) -> None:
    """``llm_path``: the default LLM pulled into the cache before the command needs it."""
    setup = KillSetup(tmp_path / "kill", shared_data / "beir" / "scifact")
    tally = kill_in_turn(setup, STAGES, random.Random(SEED), tmp_path / "run", within=WITHIN)
    assert not tally.problems, "\n".join(tally.problems)
    # a case per kill, and the second run on the folder (refused: a clear error)
    assert tally.survived == tally.tried == len(STAGES) + 1
    assert tally.clear_errors == 1
    assert tally.rows_lost == tally.rows_duplicated == 0
