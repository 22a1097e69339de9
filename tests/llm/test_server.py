"""``geckokit llm-serve`` answers a request the same whatever it served before: a real
server on localhost with the real default model. Before prompts were evaluated in blocks
aligned at their start, a prompt that shared a prefix with the previous request continued
from it, and llama.cpp's numbers depend on how a prompt is split into batches: the same
chat at temperature 0 came back with other log-probabilities."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import start_server

pytestmark = pytest.mark.slow

#: A few-shot prefix of some 330 tokens that every prompt below shares, as FRet step 1's do.
SYSTEM = "You write one search query for a passage. " + " ".join(
    f"Example {i}: the passage tells how topic {i} works; the query asks about topic {i}."
    for i in range(16)
)
PASSAGES = [
    "Vitamin D deficiency is associated with a higher risk of hip fractures in the elderly.",
    "Mitochondria produce most of the cell's ATP through oxidative phosphorylation.",
    # shares a few more tokens with the first: before the fix, the first's query continued
    # from this one's cached prompt and its log-probabilities moved by up to 0.08 (on this machine)
    "Vitamin",
]


def chat(passage: str, last: str = "Write the query.") -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Passage: {passage}\n{last}"},
    ]


@pytest.fixture(scope="module")
def server(llm_path: str) -> Iterator[str]:
    """A server of its own: the first request of the test is the server's first."""
    yield from start_server(
        ["-m", "geckokit.cli.main", "llm-serve", "--model", llm_path, "--n-ctx", "1024"],
        "/health",
    )


def ask(url: str, passage: str) -> dict[str, Any]:
    """A query at temperature 0 and a yes/no judgement, as generate and mine ask them:
    their texts, log-probabilities and top alternatives, and the cached prompt tokens."""
    out: dict[str, Any] = {}
    body = {"model": "m", "temperature": 0.0, "logprobs": True, "top_logprobs": 5}
    query = httpx.post(
        f"{url}/chat/completions",
        json={**body, "messages": chat(passage), "max_tokens": 10},
        timeout=600,
    ).json()
    label = httpx.post(
        f"{url}/chat/completions",
        json={**body, "messages": chat(passage, "Relevant? Answer Yes or No."), "max_tokens": 1},
        timeout=600,
    ).json()
    for name, answer in (("query", query), ("label", label)):
        choice = answer["choices"][0]
        out[name] = (choice["message"]["content"], choice["logprobs"]["content"])
        out[f"{name}_cached"] = answer["usage"]["prompt_tokens_details"]["cached_tokens"]
    return out


def test_an_answer_does_not_depend_on_what_the_server_served_before(server: str) -> None:
    first = ask(server, PASSAGES[0])  # the server's first requests: nothing cached
    assert first["query_cached"] == 0
    for passage in PASSAGES[1:]:  # other prompts that share the prefix
        ask(server, passage)
    again = ask(server, PASSAGES[0])
    assert again["query"] == first["query"]  # texts, log-probabilities and alternatives
    assert again["label"] == first["label"]
    # the shared prefix is still served from the cache, in whole blocks of 256 tokens
    assert again["query_cached"] == 256 and again["label_cached"] == 256


def test_echoed_log_probabilities_do_not_depend_on_history(server: str) -> None:
    def echo() -> list[float | None]:
        body = {"model": "m", "prompt": SYSTEM + PASSAGES[1], "max_tokens": 1, "temperature": 0}
        answer = httpx.post(
            f"{server}/completions", json={**body, "echo": True, "logprobs": 1}, timeout=600
        )
        return list(answer.json()["choices"][0]["logprobs"]["token_logprobs"])

    before = echo()
    ask(server, PASSAGES[2])
    assert echo() == before
