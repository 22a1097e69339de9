"""The app's answers to bad requests, in-process with a stub model: texts that are not
Unicode, a value that cannot be sent back, a method not allowed, a body that arrives slowly.
The same requests against the real encoder over HTTP: tests/reliability/test_serve.py."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from geckokit.serve.app import ServeOptions, create_app
from geckokit.serve.guard import Guard
from geckokit.serve.model import Encoded
from geckokit.serve.protocol import TEXT_PATTERN

WIDTH = 8


class StubModel:
    """What create_app uses of a ServedModel. Its encode, like a real tokenizer, cannot take
    a text that does not encode as UTF-8."""

    model_id = "stub"
    width = WIDTH
    dims = (WIDTH,)
    max_seq_length = 16
    plain = False

    def __init__(self) -> None:
        self.seen: list[str] = []

    def check_dimensions(self, dimensions: int | None) -> int:
        if dimensions not in (None, WIDTH):
            raise ValueError(f"dimensions={dimensions} is not supported")
        return WIDTH

    def encode(self, texts: list[str]) -> list[Encoded]:
        out = []
        for text in texts:
            data = text.encode("utf-8")  # raises on a lone surrogate
            self.seen.append(text)
            vector = np.ones(WIDTH, dtype=np.float32) * (1 + len(data))  # (width,)
            out.append(Encoded(embedding=vector, tokens=len(data), truncated=False))
        return out


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = create_app(StubModel(), options=ServeOptions(api_key="k", workers=1))  # type: ignore[arg-type]
    with TestClient(app, headers={"Authorization": "Bearer k"}) as c:
        yield c


def post(client: TestClient, body: str | bytes) -> Any:
    return client.post("/v1/embeddings", content=body, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(
    ("body", "where", "what"),
    [
        (r'{"input": "\ud800"}', "'input'", "lone UTF-16 surrogate (U+D800) at character 0"),
        (r'{"input": ["ok", "ab\udfff"]}', "input[1]", "(U+DFFF) at character 2"),
        (r'{"input": ["a\u0000b"]}', "input[0]", "a NUL character (U+0000) at character 1"),
    ],
)
def test_a_text_that_is_not_unicode_gets_400(
    client: TestClient, body: str, where: str, what: str
) -> None:
    answer = post(client, body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["message"].startswith(f"{where} holds ")
    assert what in error["message"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "input",
        "invalid_text",
    )


def test_a_valid_surrogate_pair_is_one_character_and_embeds(client: TestClient) -> None:
    answer = post(client, r'{"input": ["\ud83d\ude00 bees"]}')
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["prompt_tokens"] == len("😀 bees".encode())


def test_a_task_that_is_not_unicode_gets_400(client: TestClient) -> None:
    answer = post(client, r'{"input": "x", "task": "find \ud800"}')
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == "task"
    assert error["message"].startswith("Invalid request: task: task holds a lone UTF-16")


def test_a_value_quoted_in_an_error_is_sent_escaped(client: TestClient) -> None:
    # the name of an unknown model and of an unknown field are quoted back: a lone surrogate
    # cannot be encoded as UTF-8, so it is spelt as an escape rather than crash the answer
    answer = post(client, r'{"input": "x", "model": "m\ud800"}')
    assert answer.status_code == 404, answer.text
    assert "The model `m\\ud800` does not exist" in answer.json()["error"]["message"]
    answer = post(client, r'{"input": "x", "\ud800": 1}')  # a key pydantic cannot read
    assert answer.status_code == 400, answer.text
    message = answer.json()["error"]["message"]
    assert message.startswith("Invalid request: a field name holds a lone UTF-16 surrogate")


def test_a_method_not_allowed_says_which_are(client: TestClient) -> None:
    answer = client.request("TRACE", "/v1/embeddings")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    assert answer.json()["error"]["code"] == "method_not_allowed"


def test_the_schema_states_what_a_text_may_hold(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    fields = schema["components"]["schemas"]["EmbeddingRequest"]["properties"]
    assert fields["input"]["anyOf"][0]["pattern"] == TEXT_PATTERN
    assert fields["input"]["anyOf"][1]["items"]["pattern"] == TEXT_PATTERN
    assert fields["task"]["anyOf"][0]["pattern"] == TEXT_PATTERN
    refused = schema["components"]["schemas"]["EmbeddingRequest"]["not"]  # task on a document
    assert refused["properties"]["input_type"] == {"const": "document"}
    assert "408" in schema["paths"]["/v1/embeddings"]["post"]["responses"]


async def read_body(scope: Any, receive: Any, send: Any) -> None:
    """An app that reads the whole body, then answers 200 with its length."""
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    payload = json.dumps({"bytes": len(body)}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": payload})


def call(guard: Guard, chunks: list[bytes], pause: float) -> tuple[int, dict[bytes, bytes], Any]:
    """Send ``chunks`` to ``guard`` with ``pause`` seconds before each; the status, headers
    and body of the answer."""
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        if not chunks:
            await asyncio.sleep(3600)  # a client that holds the connection
        await asyncio.sleep(pause)
        body = chunks.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/embeddings", "headers": []}
    asyncio.run(guard(scope, receive, send))
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), json.loads(body)


def test_a_body_sent_slowly_gets_408_and_the_connection_closed() -> None:
    guard = Guard(read_body, api_key=None, max_body_bytes=1024, body_timeout_s=0.3)
    status, headers, body = call(guard, [b"{"] * 20, pause=0.05)  # 1 s in all
    assert status == 408
    assert headers[b"connection"] == b"close"
    error = body["error"]
    assert error["code"] == "request_timeout"
    got = re.search(
        r"within this server's limit of 0.3 s \((\d+) bytes received\)", error["message"]
    )
    assert got is not None and int(got.group(1)) < 20, error["message"]
    # in time, the same body goes through
    guard = Guard(read_body, api_key=None, max_body_bytes=1024, body_timeout_s=5)
    assert call(guard, [b"{"] * 20, pause=0.01)[::2] == (200, {"bytes": 20})


def test_a_body_past_the_size_limit_gets_413_and_the_connection_closed() -> None:
    guard = Guard(read_body, api_key=None, max_body_bytes=1024, body_timeout_s=5)
    status, headers, body = call(guard, [b"x" * 600] * 3, pause=0)
    assert (status, headers[b"connection"]) == (413, b"close")
    assert body["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("dimensions", ['"8"', "8.0", "true"])
def test_dimensions_must_be_a_json_integer(client: TestClient, dimensions: str) -> None:
    answer = post(client, f'{{"input": "x", "dimensions": {dimensions}}}')
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == "dimensions"
    assert post(client, '{"input": "x", "dimensions": 8}').status_code == 200
