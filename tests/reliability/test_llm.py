"""FRet's LLM stages through a failing LLM server: a loopback proxy (seeded, so a failure
replays) in front of a real ``geckokit llm-serve`` with the real default model injects
HTTP 500, 429 with good and bad ``Retry-After``, hangs past the client's time-out,
malformed and truncated JSON, answers without ``choices`` or their text, and connection
resets; the server is also killed and started again mid-run. ``geckokit generate`` and
``geckokit mine`` on a few SciFact passages either finish with a clean run's output or stop
with an error naming the URL and the fault, keeping every finished shard, and the same
command finishes the run. The cases live in llm_cases.py, which ``bench/reliability.py
--area llm`` runs at a larger count."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.fault_proxy import FAULTS, FaultProxy
from tests.reliability.llm_cases import (
    ASK_ALL_REQUESTS,
    LLMServer,
    RunTally,
    Stage,
    ask_all,
    clean_run,
    faults_in_turn,
    fit_timeout,
    log_problems,
    plans,
    small_corpus,
    start_llm_server,
    through_faults,
    with_server_killed,
)

pytestmark = pytest.mark.slow

SEED = 11
PASSAGES = 2
#: The client's time-out through faults, at least (:func:`fit_timeout` raises it on a slow
#: machine): each injected hang costs it.
TIMEOUT = 20.0
RATE = 0.5
#: The faults of the runs below: all but hangs, which cost a whole time-out each (a run's
#: requests wait in the server's queue, so its time-out is long); the first test meets them.
RUN_FAULTS = tuple(kind for kind in FAULTS if kind != "hang")


@dataclass
class Setup:
    server: LLMServer
    proxy: FaultProxy
    folder: Path
    corpus: Path
    timeout: float = TIMEOUT

    def stage(self, name: str) -> Stage:
        """``name`` with the time-out fitted to the machine."""
        queries = self.folder / "clean-generate" if name == "mine" else None
        return Stage(name, self.corpus, queries=queries, llm_timeout=self.timeout)


@pytest.fixture(scope="module")
def setup(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    folder = tmp_path_factory.mktemp("llm-faults")
    corpus = small_corpus(folder / "corpus.jsonl", PASSAGES)
    with start_llm_server(folder) as server, FaultProxy(server.url, hang_s=TIMEOUT + 2) as proxy:
        yield Setup(server, proxy, folder, corpus)


@pytest.fixture(scope="module")
def clean(setup: Setup) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Each stage's output with no fault (mine reads the clean generate run's queries): the
    reference; then the time-out is fitted to how long the server took."""
    folder = setup.folder
    generate = Stage("generate", setup.corpus)
    out = {"generate": clean_run(generate, setup.proxy, folder / "clean-generate")}
    mine = Stage("mine", setup.corpus, queries=folder / "clean-generate")
    out["mine"] = clean_run(mine, setup.proxy, folder / "clean-mine")
    setup.timeout = fit_timeout(setup.proxy, TIMEOUT)
    return out


def problems(tally: RunTally) -> str:
    return "\n".join(tally.problems[:20])


def test_each_fault_met_once_is_survived(setup: Setup) -> None:
    """The requests of a fresh client (the model list, a chat, the echo probe, an echo, a
    label), twice over, meet each fault in turn on their first try: the client tries again
    and gets the server's own answers."""
    reference = ask_all(setup.proxy.url)  # nothing injected: the server's own answers
    timeout = fit_timeout(setup.proxy, setup.timeout)
    tally = RunTally()
    for offset in range(0, len(FAULTS), ASK_ALL_REQUESTS):
        tally += faults_in_turn(setup.proxy, reference, offset=offset, timeout=timeout)
    assert not tally.problems, problems(tally)
    assert set(tally.injected) == set(FAULTS) and tally.server_errors == 0


@pytest.mark.parametrize("stage", ["generate", "mine"])
def test_a_stage_through_faults_ends_as_a_clean_run(
    setup: Setup, clean: dict[str, Any], stage: str
) -> None:
    """A fault on half the requests, of every kind but hangs: the run stops only with a
    clear error, keeps its finished shards, and its end equals the clean run's."""
    tally = through_faults(
        setup.stage(stage),
        setup.proxy,
        setup.folder / f"faults-{stage}",
        clean[stage],
        plans(SEED, RATE, kinds=RUN_FAULTS),
    )
    assert not tally.problems, problems(tally)
    assert tally.survived == 1 and tally.rows_lost_or_duplicated == 0
    assert sum(tally.injected.values()) > 0 and tally.server_errors == 0


def test_generate_survives_the_server_killed_and_restarted(
    setup: Setup, clean: dict[str, Any]
) -> None:
    tally = with_server_killed(
        setup.stage("generate"),
        setup.server,
        setup.proxy,
        setup.folder / "killed-generate",
        clean["generate"],
        seed=SEED,
    )
    # the sitting the kill hit either waited for the server through its retries or stopped
    # with a clear error, and the next one finished the run
    assert not tally.problems, problems(tally)
    assert tally.survived == 1 and tally.rows_lost_or_duplicated == 0
    assert tally.injected["server killed"] == 1


def test_the_server_logged_no_error(setup: Setup) -> None:
    """Last: nothing above made the server fail inside (a traceback, a 500)."""
    assert not log_problems(setup.server.log_text()), setup.server.log_text()[-3000:]
