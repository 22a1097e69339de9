"""Several OpenAI-compatible servers of one model, used as one LLM.

``load_llm("http://a:8000/v1,http://b:8000/v1")``, or ``load_llm("servers.txt")`` for a file
with one URL per line (blank lines and lines starting with ``#`` are skipped; a number after
a URL is that server's concurrency limit), gives a :class:`ServerPool`.

Each prompt of a batch is one request, sent to the server with the fewest requests in flight
among those below their concurrency limit; ties go round the list from a random start, so
that Ray workers that each send one request at a time spread over the servers. A server that
stops answering (connection refused or reset, time-outs, 429 or 5xx through the client's own
retries) is taken out for ``cooldown`` seconds, doubling with each failure after it is back
up to ``max_cooldown``, and the request goes to another server; once the cooldown is over
the server gets requests again (the first one is its probe). When every server is out, a
request waits for the first to come back, and fails after ``max_wait`` seconds with the
last error of each. A request a server refuses (HTTP 400, no prompt log-probabilities) is
not a server failure: it raises at once, as with one server.

The concurrency limit is per process: under Ray each worker has its own pool, so a server
sees up to ``workers x limit`` requests at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from geckokit.llm.base import (
    ContinuationScore,
    Generation,
    Labels,
    Prompt,
    Seeds,
    ServedLLM,
    UsageStats,
    prompt_seeds,
)
from geckokit.llm.openai_http import LLMServerError, LLMUnavailableError, OpenAICompatibleLLM

log = logging.getLogger(__name__)
T = TypeVar("T")

_URL = ("http://", "https://")


def parse_servers(spec: str) -> list[tuple[str, int | None]] | None:
    """The servers a spec lists, as (URL, concurrency limit or None) pairs, or None when
    ``spec`` is not a list: a comma-separated list of URLs, or the path of a file that is not
    a ``.gguf`` with one URL per line (see the module docstring). Raises ``ValueError`` for
    a list with something other than a URL in it."""
    entries: list[tuple[str, int | None]]
    if "," in spec:
        where = "the list"
        entries = [(part.strip(), None) for part in spec.split(",") if part.strip()]
    elif not spec.startswith((*_URL, "hf:")) and _listing(Path(spec)):
        path = Path(spec)
        where = str(path)
        entries = []
        for line in path.read_text().splitlines():
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            if len(words) > 2 or (len(words) == 2 and not words[1].isdigit()):
                raise ValueError(
                    f"{path}: expected a URL, optionally followed by its concurrency limit "
                    f"(e.g. 'http://10.0.0.5:8000/v1 16'), got {line.strip()!r}"
                )
            entries.append((words[0], int(words[1]) if len(words) == 2 else None))
    else:
        return None
    bad = [url for url, _ in entries if not url.startswith(_URL)]
    if bad or not entries:
        raise ValueError(
            f"{where}: a list of LLM servers takes OpenAI-compatible URLs such as "
            f"http://HOST:8000/v1, got {bad[0] if bad else 'none'!r}"
        )
    return entries


def _listing(path: Path) -> bool:
    """Whether ``path`` names a file of server URLs (any file but a GGUF model); a ``.txt``
    that does not exist is an error rather than a model name."""
    if path.suffix == ".txt" and not path.exists():
        raise ValueError(f"{path}: no such file of LLM server URLs")
    return path.suffix != ".gguf" and path.is_file()


@dataclass
class _Server:
    url: str
    client: OpenAICompatibleLLM
    limit: int
    in_flight: int = 0
    down_until: float = 0.0  # time.monotonic() at which it gets requests again
    failures: int = 0  # in a row; sets the cooldown
    last_error: str = ""


class ServerPool(ServedLLM):
    """OpenAI-compatible servers of one model as one :class:`~geckokit.llm.base.LLM` (see
    the module docstring). ``servers``: URLs, or (URL, concurrency limit) pairs whose None
    limit is ``max_concurrency``; ``model`` the name the servers know the model by (default:
    the first one the first server to answer lists); ``client_options`` go to each
    :class:`~geckokit.llm.openai_http.OpenAICompatibleLLM` (``timeout``, ``api_key``, ...).
    A server gets ``max_retries`` quick retries before it is taken out."""

    def __init__(
        self,
        servers: Sequence[str | tuple[str, int | None]],
        *,
        model: str | None = None,
        max_concurrency: int = 8,
        max_retries: int = 1,
        cooldown: float = 5.0,
        max_cooldown: float = 120.0,
        max_wait: float = 600.0,
        **client_options: Any,
    ) -> None:
        if not servers:
            raise ValueError("a server pool needs at least one server URL")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        pairs = [(s, None) if isinstance(s, str) else s for s in servers]
        urls = [url.rstrip("/") for url, _ in pairs]
        if len(set(urls)) < len(urls):
            raise ValueError(f"a server is listed twice in {', '.join(urls)}")
        self.cooldown, self.max_cooldown, self.max_wait = cooldown, max_cooldown, max_wait
        self.usage = UsageStats()
        self.base_url = ",".join(urls)  # the manifest's record of where the model was
        self.model_id = model or _first_model(urls, client_options)
        self.servers = [
            _Server(
                url,
                OpenAICompatibleLLM(
                    url,
                    model=self.model_id,
                    max_concurrency=limit or max_concurrency,
                    max_retries=max_retries,
                    usage=self.usage,
                    **client_options,
                ),
                limit or max_concurrency,
            )
            for url, (_, limit) in zip(urls, pairs, strict=True)
        ]
        self._changed = threading.Condition()
        self._next = random.randrange(len(self.servers))

    # ------------------------------------------------------------ dispatch
    def _acquire(self, deadline: float) -> _Server:
        """A slot on the server to send the next request to; waits while every server is
        full or out, and raises once every one is out past ``deadline``."""
        with self._changed:
            while True:
                now = time.monotonic()
                up = [s for s in self.servers if s.down_until <= now]
                free = [s for s in up if s.in_flight < s.limit]
                if free:
                    n = len(self.servers)
                    order = {id(s): (i - self._next) % n for i, s in enumerate(self.servers)}
                    server = min(free, key=lambda s: (s.in_flight, order[id(s)]))
                    self._next = (self.servers.index(server) + 1) % n
                    server.in_flight += 1
                    return server
                if not up and now >= deadline:
                    errors = "; ".join(f"{s.url}: {s.last_error}" for s in self.servers)
                    raise LLMUnavailableError(
                        f"no LLM server answered for {self.max_wait:g} s; {errors}"
                    )
                back = [s.down_until for s in self.servers if s.down_until > now]
                if up:  # all full: until a request ends, or an out server is back
                    self._changed.wait(min(back) - now if back else None)
                else:  # all out: until the first is back, at most to the deadline
                    self._changed.wait(max(0.0, min(min(back), deadline) - now))

    def _release(self, server: _Server, error: str | None = None) -> None:
        with self._changed:
            server.in_flight -= 1
            now = time.monotonic()
            if error is None:
                if server.failures:
                    log.info("LLM server %s answers again", server.url)
                server.failures = 0
            elif server.down_until <= now:  # not already out (its other requests failing)
                server.failures += 1
                pause = min(self.max_cooldown, self.cooldown * 2 ** (server.failures - 1))
                server.down_until = now + pause
                server.last_error = error
                log.warning(
                    "LLM server %s stopped answering (%s); taken out for %g s",
                    server.url,
                    error,
                    pause,
                )
            self._changed.notify_all()

    def _call(self, request: Callable[[OpenAICompatibleLLM], T]) -> T:
        """``request`` on a server's client; on another server while servers fail."""
        deadline = time.monotonic() + self.max_wait
        while True:
            server = self._acquire(deadline)
            try:
                result = request(server.client)
            except LLMUnavailableError as exc:
                self._release(server, str(exc))
                continue
            except BaseException:
                self._release(server)
                raise
            self._release(server)
            return result

    @property
    def max_concurrency(self) -> int:
        """Requests in flight at most: the servers' limits added up."""
        return sum(s.limit for s in self.servers)

    def _map(self, request: Callable[[int], T], n: int) -> list[T]:
        width = min(n, self.max_concurrency)
        if width <= 1:
            return [request(i) for i in range(n)]
        with ThreadPoolExecutor(max_workers=width) as pool:
            return list(pool.map(request, range(n)))

    # ------------------------------------------------------------- the LLM
    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: Seeds = None,
        stop: Sequence[str] | None = None,
    ) -> list[Generation]:
        seeds = prompt_seeds(seed, len(prompts))  # as one server numbers them

        def one(i: int) -> Generation:
            return self._call(
                lambda c: c.generate(
                    [prompts[i]],
                    max_tokens=max_tokens,
                    temperature=temperature,
                    seed=seeds[i],
                    stop=stop,
                )[0]
            )

        return self._map(one, len(prompts))

    def score(
        self, prompts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[ContinuationScore]:
        if len(prompts) != len(continuations):
            raise ValueError(
                f"got {len(prompts)} prompts but {len(continuations)} continuations; pass one "
                "continuation per prompt"
            )
        return self._map(
            lambda i: self._call(lambda c: c.score([prompts[i]], [continuations[i]])[0]),
            len(prompts),
        )

    def label_logprobs(self, prompts: Sequence[Prompt], labels: Labels) -> list[dict[str, float]]:
        return self._map(
            lambda i: self._call(lambda c: c.label_logprobs([prompts[i]], labels)[0]),
            len(prompts),
        )

    def close(self) -> None:
        for server in self.servers:
            server.client.close()


def _first_model(urls: list[str], options: dict[str, Any]) -> str:
    """The model the first server to answer lists first."""
    errors = []
    for url in urls:
        try:
            return OpenAICompatibleLLM(url, max_retries=0, **options).model_id
        except LLMServerError as exc:
            errors.append(str(exc))
    raise LLMUnavailableError("no LLM server of the list answered /models; " + "; ".join(errors))
