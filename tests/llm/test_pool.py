"""A pool of OpenAI-compatible servers: the list a spec names, and where requests go when a
server stops answering. The dispatch is driven through an HTTP transport that answers for
the servers (two real llm-serve processes, one killed midway: tests/fret/test_ray_fret.py)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import httpx
import pytest

from geckokit.llm import load_llm
from geckokit.llm.openai_http import LLMServerError, LLMUnavailableError
from geckokit.llm.pool import ServerPool, parse_servers


def test_a_spec_lists_servers_by_commas_or_in_a_file(tmp_path: Path) -> None:
    assert parse_servers("http://a:8000/v1, http://b:8000/v1") == [
        ("http://a:8000/v1", None),
        ("http://b:8000/v1", None),
    ]
    listing = tmp_path / "servers.txt"
    listing.write_text("# two vLLM nodes\nhttp://a:8000/v1 16\n\nhttps://b/v1#qwen\n")
    assert parse_servers(str(listing)) == [("http://a:8000/v1", 16), ("https://b/v1#qwen", None)]
    for one in ("http://a:8000/v1", "qwen2.5-coder-0.5b-instruct", "hf:Qwen/Qwen2.5-0.5B"):
        assert parse_servers(one) is None  # not a list
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    assert parse_servers(str(model)) is None
    with pytest.raises(ValueError, match=r"takes OpenAI-compatible URLs .* got 'b:8000'"):
        parse_servers("http://a:8000/v1,b:8000")
    listing.write_text("http://a:8000/v1 many\n")
    with pytest.raises(ValueError, match="optionally followed by its concurrency limit"):
        parse_servers(str(listing))
    with pytest.raises(ValueError, match="no such file of LLM server URLs"):
        parse_servers(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="serve one model; the list names"):
        load_llm("http://a/v1#one,http://b/v1#two")
    with pytest.raises(ValueError, match="listed twice"):
        ServerPool(["http://a/v1", "http://a/v1/"], model="m")


def _servers(down: set[str], seen: Counter[str]) -> httpx.MockTransport:
    """Answers completions for every host but those in ``down`` (connection refused)."""

    def answer(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host in down:
            raise httpx.ConnectError("connection refused", request=request)
        body = json.loads(request.content)
        seen[host] += 1
        if body["max_tokens"] > 100:
            return httpx.Response(400, text="max_tokens too large")
        text = f"{host}:{body.get('seed')}"
        return httpx.Response(
            200,
            json={
                "choices": [{"text": text, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2},
            },
        )

    return httpx.MockTransport(answer)


def test_requests_spread_and_a_server_that_stops_answering_is_taken_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down: set[str] = set()
    seen: Counter[str] = Counter()
    pool = ServerPool(
        ["http://a/v1", "http://b/v1"],
        model="m",
        max_concurrency=1,
        backoff=0.0,
        cooldown=60.0,
        transport=_servers(down, seen),
    )
    out = pool.generate(["p"] * 4, max_tokens=8, seed=10)
    assert seen == {"a": 2, "b": 2}  # spread evenly
    assert sorted(int(g.text.split(":")[1]) for g in out) == [10, 11, 12, 13]  # seed + i
    assert pool.usage.prompt_tokens_evaluated == 12 and pool.usage.completion_tokens == 8

    down.add("b")
    seen.clear()
    with caplog.at_level(logging.WARNING):
        out = pool.generate(["p"] * 4, max_tokens=8)
    assert [g.text.split(":")[0] for g in out] == ["a"] * 4  # no request lost
    assert seen == {"a": 4}
    assert "LLM server http://b/v1 stopped answering" in caplog.text
    assert "taken out for 60 s" in caplog.text
    # a request the server refuses is the caller's error, not the server's failure
    with pytest.raises(LLMServerError, match="HTTP 400"):
        pool.generate(["p"], max_tokens=500)
    assert pool.servers[0].down_until == 0.0


def test_with_every_server_out_a_request_fails_naming_each() -> None:
    pool = ServerPool(
        ["http://a/v1", "http://b/v1"],
        model="m",
        backoff=0.0,
        cooldown=0.05,
        max_wait=0.3,
        transport=_servers({"a", "b"}, Counter()),
    )
    with pytest.raises(
        LLMUnavailableError, match=r"no LLM server answered for 0.3 s; http://a/v1: "
    ):
        pool.generate(["p"], max_tokens=8)
