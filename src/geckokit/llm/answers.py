"""Reading an OpenAI-compatible server's answers, for
:class:`~geckokit.llm.openai_http.OpenAICompatibleLLM`: each field that is read is checked
first, and an answer without it (or with the wrong type) raises :class:`BadAnswer`, which the
client retries like a 5xx, so that a malformed answer is never read as text or scores; the
token counts of ``usage``; the wait a ``Retry-After`` header asks for."""

from __future__ import annotations

import email.utils
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: The longest ``Retry-After`` trusted, in seconds; a longer (or unreadable) one gets the
#: normal backoff.
MAX_RETRY_AFTER = 60.0


class BadAnswer(ValueError):
    """A 200 whose body is not the answer asked for (a field missing or of the wrong type):
    retried like a 5xx, never read as text or scores."""


class Unsupported(BadAnswer):
    """An answer without what the request asked the server for (log-probabilities) from a
    server that has not yet given it: a fault if another try brings it, else the server
    cannot do it, and the error after the last try says so (:class:`LLMServerError`)."""


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """The wait a ``Retry-After`` header asks for: seconds (``"2"``, ``"0.5"``) or an HTTP
    date; None when absent or not trusted (negative, NaN, infinite, unreadable, or more than
    :data:`MAX_RETRY_AFTER`), so that the caller falls back to its backoff."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_RETRY_AFTER:
        return None
    return seconds


@dataclass(frozen=True)
class Usage:
    """An answer's token counts; what a server leaves out (or garbles) counts as 0."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of prompt_tokens, served from the server's prefix cache

    @classmethod
    def of(cls, body: dict[str, Any]) -> Usage:
        usage = body.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        details = usage.get("prompt_tokens_details")
        details = details if isinstance(details, dict) else {}
        prompt = _count_of(usage.get("prompt_tokens"))
        return cls(
            prompt_tokens=prompt,
            completion_tokens=_count_of(usage.get("completion_tokens")),
            cached_tokens=min(prompt, _count_of(details.get("cached_tokens"))),
        )


@dataclass(frozen=True)
class Echo:
    """Echoed prompt log-probabilities, checked: three lists of one length."""

    tokens: list[str]
    token_logprobs: list[float | None]
    text_offset: list[int]

    @classmethod
    def of(cls, logprobs: dict[str, Any]) -> Echo:
        tokens, values, offsets = (
            logprobs.get(k) for k in ("tokens", "token_logprobs", "text_offset")
        )
        if not (isinstance(tokens, list) and isinstance(values, list)):
            raise BadAnswer("'logprobs' without 'tokens' and 'token_logprobs' lists")
        if not isinstance(offsets, list) or not len(tokens) == len(values) == len(offsets):
            raise BadAnswer("'logprobs' lists of different lengths")
        where = "logprobs"
        return cls(
            tokens=[as_text(t, f"{where}.tokens") for t in tokens],
            token_logprobs=[
                None if v is None else as_number(v, f"{where}.token_logprobs") for v in values
            ],
            text_offset=[int(as_number(o, f"{where}.text_offset")) for o in offsets],
        )


def first_choice(body: dict[str, Any]) -> dict[str, Any]:
    """``body["choices"][0]``, or :class:`BadAnswer`."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise BadAnswer("no 'choices'")
    if not isinstance(choices[0], dict):
        raise BadAnswer("'choices[0]' is not an object")
    return choices[0]


def as_text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise BadAnswer(f"'{where}' is {type(value).__name__}, not text")
    return value


def as_number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise BadAnswer(f"'{where}' holds {value!r}, not a number")
    return float(value)


def _count_of(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def finish_reason(choice: dict[str, Any]) -> str:
    finish = choice.get("finish_reason")
    return finish if isinstance(finish, str) and finish else "stop"
