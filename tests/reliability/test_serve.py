"""The embedding server as a hostile client meets it: schemathesis over its schema with and
without the key, hand-made bad requests, bodies sent slowly, and good and bad requests at
once. A real ``geckokit serve`` on localhost with the real default encoder; the cases live
in serve_cases.py, which ``bench/reliability.py`` runs at a larger count."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.serve_cases import (
    BAD_REQUESTS,
    KEY,
    BadRequest,
    Server,
    Tally,
    check_bad,
    mixed_load,
    reference_vectors,
    run_schemathesis,
    slow_bodies,
    slow_headers,
    start_server,
)

pytestmark = pytest.mark.slow

SEED = 7
#: schemathesis examples per operation and phase: some 300 test cases with the key (its
#: coverage phase adds boundary cases of its own), fewer without (every /v1/ answer is 401).
EXAMPLES = {"with-key": 20, "without-key": 5}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with start_server(tmp_path_factory.mktemp("serve")) as running:
        yield running


def clean(tally: Tally) -> str:
    """The assertion message: the cases that did not survive."""
    return "\n".join(tally.problems[:20])


@pytest.mark.parametrize("key", [KEY, None], ids=list(EXAMPLES))
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    server: Server, tmp_path: Path, key: str | None
) -> None:
    examples = EXAMPLES["with-key" if key else "without-key"]
    tally = run_schemathesis(server, tmp_path, key=key, max_examples=examples, seed=SEED)
    assert tally.tried > 50
    assert not tally.problems, clean(tally)
    assert tally.server_errors == 0 and tally.survived == tally.tried


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[c.name for c in BAD_REQUESTS])
def test_a_bad_request_gets_its_documented_4xx(server: Server, case: BadRequest) -> None:
    tally = check_bad(server.url, case)
    assert not tally.problems, clean(tally)
    assert tally.clear_errors == 1


def test_a_body_sent_slowly_gets_408_and_its_connection_closed(server: Server) -> None:
    tally = slow_bodies(server, connections=20)
    assert not tally.problems, clean(tally)
    assert tally.clear_errors == tally.tried == 20


def test_headers_sent_slowly_or_not_at_all_get_408_and_the_connection_closed(
    server: Server,
) -> None:
    tally = slow_headers(server, connections=20)
    assert not tally.problems, clean(tally)
    assert tally.clear_errors == tally.tried == 20


def test_under_good_and_bad_clients_every_good_request_succeeds(server: Server) -> None:
    """64 clients at once, a fifth of their requests bad (lone surrogates among them, which
    once failed every request that shared their batch): every good request gets the vectors
    its texts get alone, every bad one its 4xx, and /health answers throughout."""
    reference = reference_vectors(server.url)
    tally = mixed_load(server, clients=64, rounds=3, bad_share=0.2, seed=SEED, reference=reference)
    assert not tally.problems, clean(tally)
    assert tally.tried == 64 * 3 and tally.server_errors == 0


def test_the_server_logged_no_error(server: Server) -> None:
    """Last: nothing above made the server log a traceback (a 500, a failed batch)."""
    log = server.log_text()
    assert "Traceback" not in log and " 500 " not in log, log[-3000:]
    assert server.proc.poll() is None
