"""Any OpenAI-compatible HTTP server as the LLM: vLLM, llama.cpp's server, Ollama, hosted APIs.

- generation: ``/v1/chat/completions`` for chats, ``/v1/completions`` for raw text;
- query likelihood: ``/v1/completions`` with ``echo`` and ``logprobs`` (vLLM and geckokit's
  own ``geckokit llm-serve`` support it). Before the first use the backend checks with a
  probe that the server reports prompt log-probabilities from the right position, because
  llama-cpp-python's bundled server shifts them by one (its issue #1983) and llama.cpp's C++
  server returns none; either way the error says so instead of returning wrong numbers;
- label log-probabilities: ``top_logprobs`` of the first generated token, which all of them
  support. Only the server's top-k alternatives are visible, so a label none of whose
  spellings is among them gets the lowest visible log-probability as an upper bound.

Requests run concurrently up to ``max_concurrency``. A request that fails in a way another
try may not (429, 5xx, connection failures and resets, no answer within ``timeout``, an
answer that is not the JSON asked for: malformed or truncated, or without ``choices`` or the
fields read from them) is retried ``max_retries`` times with exponential backoff; a
``Retry-After`` of 0 to 60 seconds (or an HTTP date that near) sets the wait instead, and
any other value (negative, not a number, larger) is not trusted. After the last try the
error names the URL and the faults seen. A malformed answer is never read as text or scores.
An answer without the log-probabilities asked for is retried too until the server has given
them once; if the last try still lacks them, the error says the server cannot give them.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx

from geckokit.llm.answers import (
    BadAnswer,
    Echo,
    Unsupported,
    Usage,
    as_number,
    as_text,
    finish_reason,
    first_choice,
    retry_after_seconds,
)
from geckokit.llm.base import (
    ContinuationScore,
    Generation,
    Labels,
    Prompt,
    Seeds,
    ServedLLM,
    UsageStats,
    check_labels,
    check_pairs,
    logsumexp,
    prompt_seeds,
)
from geckokit.registry import DEFAULT_LLM_TIMEOUT

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
#: The longest backoff between two tries, in seconds.
MAX_BACKOFF = 30.0
#: Text whose tokens a correct scorer finds easy after the first few; a server that reports
#: each token's log-probability from the following position finds them very unlikely.
_PROBE_TEXT = "one two three four five six seven eight nine ten eleven twelve"


class LLMServerError(RuntimeError):
    """The server failed, refused, or cannot do what was asked."""


class LLMUnavailableError(LLMServerError):
    """The server did not answer (connection failures, time-outs, 429 or 5xx, malformed
    answers) through every retry: it may answer again later, unlike a request it refused."""


#: One lock for the token counters of every client: clients of a server pool share one
#: :class:`UsageStats`.
_USAGE_LOCK = threading.Lock()


class OpenAICompatibleLLM(ServedLLM):
    """An LLM behind an OpenAI-compatible HTTP API.

    ``base_url`` is the API root, e.g. ``http://127.0.0.1:8000/v1``; ``model`` the name the
    server knows the model by (default: the first one ``/models`` lists).
    ``chat_template`` renders chat prompts client-side where the server needs raw text
    (scoring): ``"chatml"`` or a ``str.format``-free callable; ``None`` refuses chat prompts there.
    ``usage``: the token counter to count into (default: its own; the clients of a
    :class:`~geckokit.llm.pool.ServerPool` share the pool's).
    ``timeout``: seconds to wait for an answer (connecting: at most 10 s) before trying
    again; ``max_retries``: tries after the first (see the module docstring).
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_LLM_TIMEOUT,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_concurrency: int = 8,
        top_logprobs: int = 20,
        chat_template: str | Callable[[Sequence[dict[str, str]]], str] | None = "chatml",
        transport: httpx.BaseTransport | None = None,
        usage: UsageStats | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if not timeout > 0:  # NaN too
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            limits=httpx.Limits(max_connections=max_concurrency),
        )
        self.max_retries = max_retries
        self.backoff = backoff
        self._max_concurrency = max_concurrency
        self.top_logprobs = top_logprobs
        self.chat_template = chat_template
        self.usage = usage if usage is not None else UsageStats()  # a pool passes its own
        self._echo_checked = False  # the probe of echoed log-probabilities passed
        self._top_checked = False  # a label answer had top log-probabilities
        self.model_id = model or self._first_model()

    # ----------------------------------------------------------------- HTTP
    def _post(self, path: str, payload: dict[str, Any], parse: Callable[[dict[str, Any]], T]) -> T:
        return self._request("POST", path, payload, parse)

    def _request(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None,
        parse: Callable[[dict[str, Any]], T],
    ) -> T:
        """Send a request and ``parse`` its JSON object, trying again on every fault another
        try may not repeat (see the module docstring). ``parse`` raises :class:`BadAnswer`
        for a body without what it reads, and :class:`LLMServerError` for what the server
        cannot do (that is not retried)."""
        url = f"{self.base_url}{path}"
        faults: Counter[str] = Counter()
        last = ""
        unsupported: Unsupported | None = None  # what the last answer lacked, if that
        retry_after: str | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, retry_after))
            retry_after = None
            unsupported = None
            try:
                response = self._client.request(method, path, json=payload)
            except httpx.TransportError as exc:  # connection refused, reset, timeout
                kind = type(exc).__name__
                last = f"{kind}: {exc}" if str(exc) else kind
                faults[kind] += 1
                continue
            if response.status_code in RETRY_STATUS:
                last = f"HTTP {response.status_code}: {response.text[:300]}"
                faults[f"HTTP {response.status_code}"] += 1
                retry_after = response.headers.get("retry-after")
                continue
            if response.status_code >= 400:
                raise LLMServerError(
                    f"{method} {url} failed with HTTP {response.status_code}: {response.text[:500]}"
                )
            try:
                body = response.json()
            except ValueError:  # malformed or cut short
                last = (
                    f"malformed JSON ({len(response.content)} bytes, "
                    f"ending {response.text[-60:]!r})"
                )
                faults["malformed JSON"] += 1
                continue
            try:
                if not isinstance(body, dict):
                    raise BadAnswer(f"a JSON {type(body).__name__}, not an object")
                return parse(body)
            except Unsupported as exc:
                unsupported = exc
                last = str(exc)
                faults["answer without log-probabilities"] += 1
                continue
            except BadAnswer as exc:
                last = f"malformed answer: {exc}"
                faults["malformed answer"] += 1
                continue
        if unsupported is not None:  # the last try too: the server cannot do it
            raise LLMServerError(str(unsupported))
        seen = ", ".join(f"{kind} x{n}" for kind, n in faults.most_common())
        raise LLMUnavailableError(
            f"{method} {url} failed after {self.max_retries + 1} attempts ({seen}); "
            f"last error: {last}"
        )

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before try ``attempt`` (1 for the first retry): the server's
        ``Retry-After`` when it is trusted, else exponential backoff with jitter."""
        asked = retry_after_seconds(retry_after)
        if asked is not None:
            return asked
        if retry_after is not None:
            log.debug("ignoring Retry-After %r from %s; backing off", retry_after, self.base_url)
        base = min(MAX_BACKOFF, self.backoff * 2 ** (attempt - 1))
        return float(base * (1 + 0.25 * random.random()))

    @property
    def max_concurrency(self) -> int:
        """Requests this client sends at once at most."""
        return self._max_concurrency

    def _map(self, fn: Callable[[int], T], n: int) -> list[T]:
        if n <= 1 or self.max_concurrency == 1:
            return [fn(i) for i in range(n)]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, n)) as pool:
            return list(pool.map(fn, range(n)))

    def _count(self, usage: Usage) -> None:
        with _USAGE_LOCK:
            self.usage.requests += 1
            self.usage.prompt_tokens_evaluated += usage.prompt_tokens - usage.cached_tokens
            self.usage.prompt_tokens_cached += usage.cached_tokens
            self.usage.completion_tokens += usage.completion_tokens

    def _first_model(self) -> str:
        def parse(body: dict[str, Any]) -> str:
            data = body.get("data")
            if not isinstance(data, list):
                raise BadAnswer("no 'data' list of models")
            if not data:
                raise LLMServerError(f"{self.base_url}/models lists no model; pass model=...")
            if not isinstance(data[0], dict):
                raise BadAnswer("'data[0]' is not an object")
            return as_text(data[0].get("id"), "data[0].id")

        return self._request("GET", "/models", None, parse)

    def render(self, prompt: Prompt) -> str:
        if isinstance(prompt, str):
            return prompt
        if self.chat_template is None:
            raise ValueError(
                "this operation needs raw text over HTTP; pass a string prompt or set chat_template"
            )
        if callable(self.chat_template):
            return self.chat_template(list(prompt))  # type: ignore[arg-type]
        if self.chat_template == "chatml":
            parts = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in prompt]
            return "".join(parts) + "<|im_start|>assistant\n"
        raise ValueError(
            f"unknown chat_template {self.chat_template!r}; use 'chatml' or a callable"
        )

    # ----------------------------------------------------------- generation
    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: Seeds = None,
        stop: Sequence[str] | None = None,
    ) -> list[Generation]:
        def parse_text(body: dict[str, Any]) -> tuple[str, str, Usage]:
            choice = first_choice(body)
            return (
                as_text(choice.get("text"), "choices[0].text"),
                finish_reason(choice),
                Usage.of(body),
            )

        def parse_chat(body: dict[str, Any]) -> tuple[str, str, Usage]:
            choice = first_choice(body)
            message = choice.get("message")
            if not isinstance(message, dict):
                raise BadAnswer("no 'choices[0].message'")
            text = as_text(message.get("content"), "choices[0].message.content")
            return text, finish_reason(choice), Usage.of(body)

        seeds = prompt_seeds(seed, len(prompts))

        def one(i: int) -> Generation:
            prompt = prompts[i]
            payload: dict[str, Any] = {
                "model": self.model_id,
                "max_tokens": max_tokens,
                "temperature": temperature,
            }
            if seeds[i] is not None:
                payload["seed"] = seeds[i]
            if stop:
                payload["stop"] = list(stop)
            if isinstance(prompt, str):
                text, finish, usage = self._post(
                    "/completions", {**payload, "prompt": prompt}, parse_text
                )
            else:
                text, finish, usage = self._post(
                    "/chat/completions", {**payload, "messages": list(prompt)}, parse_chat
                )
            self._count(usage)
            return Generation(
                text=text,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                finish_reason=finish,
            )

        return self._map(one, len(prompts))

    # -------------------------------------------------------------- scoring
    def _echo(self, text: str) -> Echo:
        def parse(body: dict[str, Any]) -> tuple[Echo, Usage]:
            logprobs = first_choice(body).get("logprobs")
            if not isinstance(logprobs, dict) or not logprobs.get("token_logprobs"):
                if self._echo_checked:  # it gave them before: this answer lost them
                    raise BadAnswer("no 'choices[0].logprobs.token_logprobs'")
                raise Unsupported(
                    f"{self.base_url} returned no prompt log-probabilities for echo=True; "
                    "query-likelihood scoring needs a server that supports echo with logprobs "
                    "(vLLM, `geckokit llm-serve`). llama.cpp's C++ server does not."
                )
            return Echo.of(logprobs), Usage.of(body)

        echo, usage = self._post(
            "/completions",
            {
                "model": self.model_id,
                "prompt": text,
                "max_tokens": 1,
                "temperature": 0.0,
                "echo": True,
                "logprobs": 1,
            },
            parse,
        )
        self._count(usage)
        return echo

    def check_echo(self) -> None:
        """Verify once that echoed prompt log-probabilities come from the right position."""
        if self._echo_checked:
            return
        echo = self._echo(_PROBE_TEXT)
        values = [
            v
            for v, off in zip(echo.token_logprobs, echo.text_offset, strict=True)
            if v is not None and off < len(_PROBE_TEXT)
        ]
        tail = values[-6:]
        mean = sum(tail) / max(1, len(tail))
        if mean < -4.0:
            raise LLMServerError(
                f"{self.base_url} reports prompt log-probabilities that look shifted by one position "
                f"(mean {mean:.1f} nats on the easy tail of {_PROBE_TEXT!r}). llama-cpp-python's bundled "
                "server does this (its issue #1983). Use vLLM, `geckokit llm-serve`, or the in-process "
                "llama.cpp backend for scoring."
            )
        self._echo_checked = True

    def score(
        self, prompts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[ContinuationScore]:
        check_pairs(prompts, continuations, "continuations")
        self.check_echo()

        def one(i: int) -> ContinuationScore:
            prefix = self.render(prompts[i])
            if not continuations[i]:
                raise ValueError("cannot score an empty continuation")
            text = prefix + continuations[i]
            echo = self._echo(text)
            tokens, values = [], []
            for tok, value, offset in zip(
                echo.tokens, echo.token_logprobs, echo.text_offset, strict=True
            ):
                if offset >= len(text):
                    break  # the generated token
                if offset + len(tok) > len(prefix):  # a token that reaches into the continuation
                    if value is None:
                        raise LLMServerError(
                            f"{self.base_url} gave no log-probability for a continuation token"
                        )
                    tokens.append(tok)
                    values.append(value)
            return ContinuationScore(tokens=tuple(tokens), token_logprobs=tuple(values))

        return self._map(one, len(prompts))

    def label_logprobs(self, prompts: Sequence[Prompt], labels: Labels) -> list[dict[str, float]]:
        check_labels(labels)

        def no_top() -> None:
            if self._top_checked:  # it gave them before: this answer lost them
                raise BadAnswer("no top log-probabilities")
            raise Unsupported(
                f"{self.base_url} returned no top log-probabilities; it cannot score labels"
            )

        def parse_text(body: dict[str, Any]) -> tuple[dict[str, float], Usage]:
            logprobs = first_choice(body).get("logprobs")
            tops = logprobs.get("top_logprobs") if isinstance(logprobs, dict) else None
            first = tops[0] if isinstance(tops, list) and tops else None
            if not first:
                no_top()
            if not isinstance(first, dict):
                raise BadAnswer("'logprobs.top_logprobs[0]' is not an object")
            where = "logprobs.top_logprobs[0]"
            return {as_text(t, where): as_number(v, where) for t, v in first.items()}, Usage.of(
                body
            )

        def parse_chat(body: dict[str, Any]) -> tuple[dict[str, float], Usage]:
            logprobs = first_choice(body).get("logprobs")
            content = logprobs.get("content") if isinstance(logprobs, dict) else None
            first = content[0] if isinstance(content, list) and content else None
            tops = first.get("top_logprobs") if isinstance(first, dict) else None
            if not tops:
                no_top()
            where = "logprobs.content[0].top_logprobs"
            if not isinstance(tops, list) or not all(isinstance(t, dict) for t in tops):
                raise BadAnswer(f"'{where}' is not a list of objects")
            top = {as_text(t.get("token"), where): as_number(t.get("logprob"), where) for t in tops}
            return top, Usage.of(body)

        def one(i: int) -> dict[str, float]:
            prompt = prompts[i]
            base = {"model": self.model_id, "max_tokens": 1, "temperature": 0.0}
            if isinstance(prompt, str):
                top, usage = self._post(
                    "/completions",
                    {**base, "prompt": prompt, "logprobs": self.top_logprobs},
                    parse_text,
                )
            else:
                top, usage = self._post(
                    "/chat/completions",
                    {
                        **base,
                        "messages": list(prompt),
                        "logprobs": True,
                        "top_logprobs": self.top_logprobs,
                    },
                    parse_chat,
                )
            self._count(usage)
            self._top_checked = True
            floor = min(top.values())
            result = {}
            for label, spellings in labels.items():
                seen = [top[s] for s in spellings if s in top]
                result[label] = logsumexp(seen) if seen else floor
            return result

        return self._map(one, len(prompts))

    def close(self) -> None:
        self._client.close()
