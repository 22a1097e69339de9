"""The app's answers to bad requests, in-process with a stub model: texts that are not
Unicode, a value that cannot be sent back, a method not allowed.
The same requests against the real encoder over HTTP: tests/reliability/test_serve.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from geckokit.serve.app import ServeOptions, create_app
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
