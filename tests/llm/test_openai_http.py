"""The OpenAI-compatible HTTP backend against real servers on localhost serving the real model."""

from __future__ import annotations

import contextlib
import http.server
import json
import math
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import ClassVar

import numpy as np
import pytest

from geckokit.llm import yes_no_labels
from geckokit.llm.answers import retry_after_seconds
from geckokit.llm.openai_http import LLMServerError, LLMUnavailableError, OpenAICompatibleLLM
from tests.conftest import free_port, start_server

PREFIX = "Passage: Honey bees tell each other where flowers are by dancing.\nQuery:"
QUERY = " how do bees communicate"


@pytest.fixture(scope="module")
def geckokit_server(llm_path: str) -> Iterator[str]:
    yield from start_server(
        ["-m", "geckokit.cli.main", "llm-serve", "--model", llm_path, "--n-ctx", "2048"], "/health"
    )


@pytest.fixture(scope="module")
def remote(geckokit_server: str) -> Iterator[OpenAICompatibleLLM]:
    client = OpenAICompatibleLLM(geckokit_server, max_concurrency=2)
    yield client
    client.close()


@pytest.mark.slow
def test_generation_matches_in_process(remote: OpenAICompatibleLLM, llm) -> None:
    chat = [{"role": "user", "content": "Name the capital of France in one word."}]
    here = llm.generate([chat, "The capital of Italy is"], max_tokens=8, temperature=0.0)
    there = remote.generate([chat, "The capital of Italy is"], max_tokens=8, temperature=0.0)
    assert [g.text for g in there] == [g.text for g in here]
    assert there[0].prompt_tokens == here[0].prompt_tokens
    assert remote.usage.requests >= 2


@pytest.mark.slow
def test_scores_agree_with_in_process(remote: OpenAICompatibleLLM, llm) -> None:
    here = llm.score([PREFIX], [QUERY])[0]
    there = remote.score([PREFIX], [QUERY])[0]
    assert "".join(there.tokens) == QUERY
    assert np.allclose(there.token_logprobs, here.token_logprobs, atol=0.05)
    assert there.mean == pytest.approx(here.mean, abs=0.02)


@pytest.mark.slow
def test_label_logprobs_agree_with_in_process(remote: OpenAICompatibleLLM, llm) -> None:
    prompt = "Question: Is Paris in France? Answer Yes or No.\nAnswer:"
    chat = [{"role": "user", "content": "Is Paris in France? Answer Yes or No."}]
    here = llm.label_logprobs([prompt, chat], yes_no_labels())
    there = remote.label_logprobs([prompt, chat], yes_no_labels())
    for h, t in zip(here, there, strict=True):
        assert t["yes"] == pytest.approx(h["yes"], abs=0.05)
        assert t["yes"] > t["no"]


@pytest.fixture(scope="module")
def llama_cpp_server(llm_path: str) -> Iterator[str]:
    pytest.importorskip("sse_starlette", reason="llama-cpp-python[server] is not installed")
    yield from start_server(
        ["-m", "llama_cpp.server", "--model", llm_path, "--n_ctx", "2048"], "/v1/models"
    )


@pytest.mark.slow
def test_llama_cpp_python_server(llama_cpp_server: str, llm) -> None:
    """llama-cpp-python's own server: generation and labels agree, shifted echo log-probabilities are caught."""
    client = OpenAICompatibleLLM(llama_cpp_server)
    try:
        there = client.generate(["The capital of Italy is"], max_tokens=6, temperature=0.0)[0]
        here = llm.generate(["The capital of Italy is"], max_tokens=6, temperature=0.0)[0]
        assert there.text == here.text
        prompt = "Question: Is Paris in France? Answer Yes or No.\nAnswer:"
        chat = [{"role": "user", "content": "Is Paris in France? Answer Yes or No."}]
        for t, h in zip(
            client.label_logprobs([prompt, chat], yes_no_labels()),
            llm.label_logprobs([prompt, chat], yes_no_labels()),
            strict=True,
        ):
            assert t["yes"] == pytest.approx(h["yes"], abs=0.05) and t["no"] == pytest.approx(
                h["no"], abs=0.05
            )
        with pytest.raises(LLMServerError, match="shifted by one position"):
            client.score([PREFIX], [QUERY])
    finally:
        client.close()


def test_unreachable_server_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(LLMServerError, match=rf"{url}/models failed after 3 attempts"):
        OpenAICompatibleLLM(url, max_retries=2, backoff=0.01)
    client = OpenAICompatibleLLM(url, model="m", max_retries=1, backoff=0.01)
    with pytest.raises(LLMServerError, match=rf"{url}/completions failed after 2 attempts"):
        client.generate(["hi"])


class _Fake(http.server.BaseHTTPRequestHandler):
    """A canned OpenAI-style endpoint: subclasses define ``do_POST`` with :meth:`reply`."""

    def reply(
        self, status: int, payload: object = None, headers: dict[str, str] | None = None
    ) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def _serving(handler: type[_Fake]) -> Iterator[str]:
    """Run ``handler`` on a free loopback port; yields its /v1 base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()


class _Flaky(_Fake):
    """Answers 503, then 429 with Retry-After, then a valid completion."""

    calls: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        n = len(self.calls)
        self.calls.append(self.path)
        if n == 0:
            self.reply(503)
        elif n == 1:
            self.reply(429, headers={"Retry-After": "0"})
        else:
            self.reply(
                200,
                {
                    "choices": [{"text": "ok", "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
                },
            )


def test_retries_429_and_5xx_then_succeeds() -> None:
    with _serving(_Flaky) as url:
        client = OpenAICompatibleLLM(url, model="m", backoff=0.01)
        out = client.generate(["hi"], max_tokens=2)
        assert out[0].text == "ok" and len(_Flaky.calls) == 3
        assert client.usage.prompt_tokens_evaluated == 3


class _TopLogprobs(_Fake):
    """A chat completion whose first token's alternatives include "Yes" and " Yes" only."""

    def do_POST(self) -> None:
        top = [
            {"token": "Yes", "logprob": -0.5},
            {"token": " Yes", "logprob": -1.5},
            {"token": "Maybe", "logprob": -3.0},
        ]
        choice = {
            "message": {"content": "Yes"},
            "finish_reason": "length",
            "logprobs": {"content": [{"token": "Yes", "logprob": -0.5, "top_logprobs": top}]},
        }
        self.reply(200, {"choices": [choice], "usage": {}})


def test_labels_sum_visible_spellings_and_floor_the_rest() -> None:
    with _serving(_TopLogprobs) as url:
        client = OpenAICompatibleLLM(url, model="m")
        got = client.label_logprobs([[{"role": "user", "content": "?"}]], yes_no_labels())[0]
        assert got["yes"] == pytest.approx(math.log(math.exp(-0.5) + math.exp(-1.5)))
        assert got["no"] == -3.0  # no spelling visible: the lowest visible value bounds it


def test_base_url_is_validated() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        OpenAICompatibleLLM("localhost:8000")


class _NoEcho(_Fake):
    """A completions endpoint that ignores echo/logprobs, like llama.cpp's C++ server."""

    def do_POST(self) -> None:
        self.reply(
            200,
            {"choices": [{"text": "x", "finish_reason": "length", "logprobs": None}], "usage": {}},
        )


def test_a_server_without_echo_logprobs_is_refused_for_scoring() -> None:
    with _serving(_NoEcho) as url:
        client = OpenAICompatibleLLM(url, model="m", backoff=0.01)
        with pytest.raises(LLMServerError, match="no prompt log-probabilities for echo=True") as e:
            client.score(["prefix"], [" continuation"])
        assert not isinstance(e.value, LLMUnavailableError)  # a refusal: no other server helps


# ---------------------------------------------------------------------------------------
# answers that are not the JSON asked for, bad Retry-After values, time-outs

_COMPLETION = {
    "choices": [{"text": "ok", "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
}


class _Scripted(_Fake):
    """Answers POSTs from ``script`` in turn (its last entry again once it runs out): a
    status with a JSON payload, or raw bytes with status 200."""

    script: ClassVar[list[tuple[int, object, dict[str, str]]]] = []
    calls: ClassVar[list[float]] = []

    def do_POST(self) -> None:
        n = len(self.calls)
        self.calls.append(time.monotonic())
        status, payload, headers = self.script[min(n, len(self.script) - 1)]
        if isinstance(payload, bytes):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        else:
            self.reply(status, payload, headers)


@contextlib.contextmanager
def _script(*steps: tuple[int, object, dict[str, str]]) -> Iterator[str]:
    _Scripted.script = list(steps)
    _Scripted.calls = []
    with _serving(_Scripted) as url:
        yield url


TRUNCATED = json.dumps(_COMPLETION).encode()[:25]


@pytest.mark.parametrize(
    "bad",
    [
        (200, b"<html>502 Bad Gateway</html>", {}),
        (200, TRUNCATED, {}),
        (200, {"usage": {}}, {}),
        (200, {"choices": []}, {}),
        (200, {"choices": [{"finish_reason": "stop"}]}, {}),
        (200, {"choices": [{"text": None}]}, {}),
        (200, [1, 2], {}),
    ],
    ids=["html", "truncated", "no-choices", "empty-choices", "no-text", "null-text", "a-list"],
)
def test_a_malformed_answer_is_retried_like_a_5xx(bad: tuple[int, object, dict[str, str]]) -> None:
    with _script(bad, (200, _COMPLETION, {})) as url:
        client = OpenAICompatibleLLM(url, model="m", backoff=0.01)
        assert client.generate(["hi"])[0].text == "ok"
        assert len(_Scripted.calls) == 2


@pytest.mark.parametrize(
    ("bad", "fault"),
    [
        ((200, TRUNCATED, {}), r"malformed JSON \(25 bytes"),
        ((200, {"id": "x"}, {}), r"malformed answer: no 'choices'"),
        (
            (200, {"choices": [{"message": {}}]}, {}),
            r"'choices\[0\]\.message\.content' is NoneType",
        ),
    ],
    ids=["truncated", "no-choices", "no-content"],
)
def test_a_server_that_keeps_answering_badly_gets_an_error_naming_it_and_the_fault(
    bad: tuple[int, object, dict[str, str]], fault: str
) -> None:
    with _script(bad) as url:
        client = OpenAICompatibleLLM(url, model="m", backoff=0.01, max_retries=2)
        with pytest.raises(
            LLMUnavailableError, match=rf"{url}/chat/completions failed after 3 attempts.*{fault}"
        ):
            client.generate([[{"role": "user", "content": "hi"}]])
        assert len(_Scripted.calls) == 3


def test_a_score_answer_with_garbled_logprobs_is_retried_not_read() -> None:
    """Once the server has shown it gives echoed log-probabilities, an answer without them
    (or with lists that do not match) is a fault, retried; the first one is a refusal."""
    probe = _echo_answer(_PROBE_WORDS)
    good = _echo_answer(["Passage", ":", " x", " q"])
    garbled = {
        "choices": [{"logprobs": {"tokens": ["a"], "token_logprobs": [], "text_offset": [0]}}]
    }
    with _script(
        (200, probe, {}),
        (200, garbled, {}),
        (200, {"choices": [{"text": "x", "logprobs": None}]}, {}),
        (200, good, {}),
    ) as url:
        client = OpenAICompatibleLLM(url, model="m", backoff=0.01)
        got = client.score(["Passage: x"], [" q"])[0]
        assert got.tokens == (" q",) and len(_Scripted.calls) == 4


_PROBE_WORDS = [
    "one",
    *[f" {w}" for w in "two three four five six seven eight nine ten eleven twelve".split()],
]


def _echo_answer(tokens: list[str]) -> dict[str, object]:
    offsets = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    values = [None, *[-0.5] * (len(tokens) - 1)]
    lp = {"tokens": tokens, "token_logprobs": values, "text_offset": offsets}
    return {"choices": [{"text": "".join(tokens), "logprobs": lp}], "usage": {}}


@pytest.mark.parametrize(
    "value", ["-1", "nan", "inf", "soon", "1e12", "", "Wed, 99 Foo 2015 07:28"]
)
def test_a_bad_retry_after_falls_back_to_the_backoff(value: str) -> None:
    with _script(
        (429, {"error": "slow down"}, {"Retry-After": value}), (200, _COMPLETION, {})
    ) as url:
        client = OpenAICompatibleLLM(url, model="m", backoff=0.05)
        assert client.generate(["hi"])[0].text == "ok"
        waited = _Scripted.calls[1] - _Scripted.calls[0]
        assert 0.05 <= waited < 1.0, waited


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2", 2.0),
        ("0", 0.0),
        ("0.25", 0.25),
        (" 60 ", 60.0),
        ("60.5", None),
        ("-1", None),
        ("nan", None),
        ("-inf", None),
        ("1e400", None),
        ("garbage", None),
        (None, None),
        ("Sat, 05 Dec 2026 10:00:30 GMT", 30.0),
        ("Sat, 05 Dec 2026 09:59:00 GMT", 0.0),  # already past
        ("Sat, 05 Dec 2026 11:00:00 GMT", None),  # an hour: not trusted
    ],
)
def test_retry_after_seconds(value: str | None, seconds: float | None) -> None:
    now = datetime(2026, 12, 5, 10, 0, 0, tzinfo=UTC)
    assert retry_after_seconds(value, now=now) == seconds


class _Hanging(_Fake):
    """Holds the first request past the client's time-out, then answers."""

    calls: ClassVar[int] = 0

    def do_POST(self) -> None:
        type(self).calls += 1
        if type(self).calls == 1:
            time.sleep(1.5)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client left
            self.reply(200, _COMPLETION)


def test_a_request_past_the_timeout_is_retried() -> None:
    _Hanging.calls = 0
    with _serving(_Hanging) as url:
        client = OpenAICompatibleLLM(url, model="m", timeout=0.5, backoff=0.01)
        assert client.generate(["hi"])[0].text == "ok" and _Hanging.calls == 2
        client = OpenAICompatibleLLM(url, model="m", timeout=0.5, backoff=0.01, max_retries=0)
        _Hanging.calls = 0
        with pytest.raises(LLMUnavailableError, match=rf"{url}/completions .*ReadTimeout"):
            client.generate(["hi"])


@pytest.mark.parametrize("timeout", [0, -1, float("nan")])
def test_the_timeout_is_validated(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        OpenAICompatibleLLM("http://127.0.0.1:1/v1", model="m", timeout=timeout)


def test_a_first_answer_without_log_probabilities_is_tried_again() -> None:
    """Before a server has given log-probabilities once, an answer without them may be a
    fault (a proxy dropped them) or the server's limit: another try tells them apart."""
    lost = {"choices": [{"text": "x", "logprobs": None}], "usage": {}}
    good = _echo_answer(["Passage", ":", " x", " q"])
    with _script((200, lost, {}), (200, _echo_answer(_PROBE_WORDS), {}), (200, good, {})) as url:
        client = OpenAICompatibleLLM(url, model="m", backoff=0.01)
        assert client.score(["Passage: x"], [" q"])[0].tokens == (" q",)
        assert len(_Scripted.calls) == 3
