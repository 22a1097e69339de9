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

Requests run concurrently up to ``max_concurrency``; 429, 5xx and connection failures are
retried ``max_retries`` times with exponential backoff (honouring ``Retry-After``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx

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

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
#: Text whose tokens a correct scorer finds easy after the first few; a server that reports
#: each token's log-probability from the following position finds them very unlikely.
_PROBE_TEXT = "one two three four five six seven eight nine ten eleven twelve"


class LLMServerError(RuntimeError):
    """The server failed, refused, or cannot do what was asked."""


class OpenAICompatibleLLM(ServedLLM):
    """An LLM behind an OpenAI-compatible HTTP API.

    ``base_url`` is the API root, e.g. ``http://127.0.0.1:8000/v1``; ``model`` the name the
    server knows the model by (default: the first one ``/models`` lists).
    ``chat_template`` renders chat prompts client-side where the server needs raw text
    (scoring): ``"chatml"`` or a ``str.format``-free callable; ``None`` refuses chat prompts there.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_concurrency: int = 8,
        top_logprobs: int = 20,
        chat_template: str | Callable[[Sequence[dict[str, str]]], str] | None = "chatml",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
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
        self.max_concurrency = max_concurrency
        self.top_logprobs = top_logprobs
        self.chat_template = chat_template
        self.usage = UsageStats()
        self._usage_lock = threading.Lock()
        self._echo_checked = False
        self.model_id = model or self._first_model()

    # ----------------------------------------------------------------- HTTP
    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", path, payload)

    def _request(
        self, method: str, path: str, payload: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        last: str = ""
        retry_after: str | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, retry_after))
            retry_after = None
            try:
                response = self._client.request(method, path, json=payload)
            except httpx.TransportError as exc:  # connection refused, reset, timeout
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in RETRY_STATUS:
                last = f"HTTP {response.status_code}: {response.text[:300]}"
                retry_after = response.headers.get("retry-after")
                continue
            if response.status_code >= 400:
                raise LLMServerError(
                    f"{method} {url} failed with HTTP {response.status_code}: {response.text[:500]}"
                )
            try:
                return dict(response.json())
            except ValueError as exc:
                raise LLMServerError(
                    f"{method} {url} returned non-JSON: {response.text[:300]}"
                ) from exc
        raise LLMServerError(
            f"{method} {url} failed after {self.max_retries + 1} attempts; last error: {last}"
        )

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), 60.0)
            except ValueError:
                pass
        return float(self.backoff * 2 ** (attempt - 1) * (1 + 0.25 * random.random()))

    def _map(self, fn: Callable[[int], T], n: int) -> list[T]:
        if n <= 1 or self.max_concurrency == 1:
            return [fn(i) for i in range(n)]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, n)) as pool:
            return list(pool.map(fn, range(n)))

    def _count(self, usage: dict[str, Any] | None) -> None:
        with self._usage_lock:
            self.usage.requests += 1
            if usage:
                self.usage.prompt_tokens_evaluated += int(usage.get("prompt_tokens") or 0)
                self.usage.completion_tokens += int(usage.get("completion_tokens") or 0)

    def _first_model(self) -> str:
        data = self._request("GET", "/models").get("data") or []
        if not data:
            raise LLMServerError(f"{self.base_url}/models lists no model; pass model=...")
        return str(data[0]["id"])

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
                body = self._post("/completions", {**payload, "prompt": prompt})
                choice = body["choices"][0]
                text = choice.get("text") or ""
            else:
                body = self._post("/chat/completions", {**payload, "messages": list(prompt)})
                choice = body["choices"][0]
                text = (choice.get("message") or {}).get("content") or ""
            usage = body.get("usage") or {}
            self._count(usage)
            return Generation(
                text=text,
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                finish_reason=choice.get("finish_reason") or "stop",
            )

        return self._map(one, len(prompts))

    # -------------------------------------------------------------- scoring
    def _echo(self, text: str) -> dict[str, Any]:
        body = self._post(
            "/completions",
            {
                "model": self.model_id,
                "prompt": text,
                "max_tokens": 1,
                "temperature": 0.0,
                "echo": True,
                "logprobs": 1,
            },
        )
        self._count(body.get("usage"))
        logprobs = body["choices"][0].get("logprobs")
        if not logprobs or not logprobs.get("token_logprobs"):
            raise LLMServerError(
                f"{self.base_url} returned no prompt log-probabilities for echo=True; query-likelihood "
                "scoring needs a server that supports echo with logprobs (vLLM, `geckokit llm-serve`). "
                "llama.cpp's C++ server does not."
            )
        return dict(logprobs)

    def check_echo(self) -> None:
        """Verify once that echoed prompt log-probabilities come from the right position."""
        if self._echo_checked:
            return
        logprobs = self._echo(_PROBE_TEXT)
        values = [
            v
            for v, off in zip(logprobs["token_logprobs"], logprobs["text_offset"], strict=False)
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
            lp = self._echo(text)
            tokens, values = [], []
            for tok, value, offset in zip(
                lp["tokens"], lp["token_logprobs"], lp["text_offset"], strict=False
            ):
                if offset >= len(text):
                    break  # the generated token
                if offset + len(tok) > len(prefix):  # a token that reaches into the continuation
                    if value is None:
                        raise LLMServerError(
                            "the server gave no log-probability for a continuation token"
                        )
                    tokens.append(tok)
                    values.append(float(value))
            return ContinuationScore(tokens=tuple(tokens), token_logprobs=tuple(values))

        return self._map(one, len(prompts))

    def label_logprobs(self, prompts: Sequence[Prompt], labels: Labels) -> list[dict[str, float]]:
        check_labels(labels)

        def one(i: int) -> dict[str, float]:
            prompt = prompts[i]
            base = {"model": self.model_id, "max_tokens": 1, "temperature": 0.0}
            if isinstance(prompt, str):
                body = self._post(
                    "/completions", {**base, "prompt": prompt, "logprobs": self.top_logprobs}
                )
                lp = body["choices"][0].get("logprobs") or {}
                tops = (lp.get("top_logprobs") or [None])[0]
                top = dict(tops or {})
            else:
                body = self._post(
                    "/chat/completions",
                    {
                        **base,
                        "messages": list(prompt),
                        "logprobs": True,
                        "top_logprobs": self.top_logprobs,
                    },
                )
                content = ((body["choices"][0].get("logprobs") or {}).get("content") or [None])[0]
                top = {
                    t["token"]: float(t["logprob"]) for t in (content or {}).get("top_logprobs", [])
                }
            self._count(body.get("usage"))
            if not top:
                raise LLMServerError(
                    f"{self.base_url} returned no top log-probabilities; it cannot score labels"
                )
            floor = min(top.values())
            result = {}
            for label, spellings in labels.items():
                seen = [top[s] for s in spellings if s in top]
                result[label] = logsumexp(seen) if seen else floor
            return result

        return self._map(one, len(prompts))

    def close(self) -> None:
        self._client.close()
