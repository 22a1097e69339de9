"""A loopback HTTP proxy that injects faults between an LLM client and its server.

:class:`FaultProxy` forwards each request to the upstream server, or answers it with one of
:data:`FAULTS` instead: a 500, a 429 with a good or a bad ``Retry-After``, a hang past the
client's time-out, malformed or truncated JSON, a 200 without ``choices`` or without the
answer's text, a connection reset before or after the server did the work; while the server
is down it answers 502, as a reverse proxy would. Which requests fail, and how, comes from a
:class:`FaultPlan`: a seeded choice per request that depends on the request itself (method,
path, body) and on how many times it was seen before, not on the order in which concurrent
requests arrive, so a run through the same plan meets the same faults again.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

#: The faults the proxy injects, by name.
FAULTS = (
    "500",
    "429",  # Retry-After: a small number of seconds
    "429-bad-retry-after",  # Retry-After: -1, nan, garbage, huge
    "hang",  # no answer until past the client's time-out
    "malformed-json",
    "truncated-json",  # the server's answer cut short (a complete HTTP message)
    "no-choices",  # the server's answer without "choices"
    "missing-field",  # the server's answer without its text or message
    "reset",  # the connection reset before the request is forwarded
    "reset-after",  # the connection reset after the server answered
)
GOOD_RETRY_AFTER = ("0", "1")
BAD_RETRY_AFTER = ("-1", "nan", "soon", "1e12", "inf", "-0.5")
MALFORMED = (
    b'{"id": "cmpl-1", "choices": [{"text": "Given a',
    b"<html><body>502 Bad Gateway</body></html>",
    b'{"choices": [{"text": "x"}]} trailing',
    b"",
    b"\xff\xfe not utf-8",
)


@dataclass
class FaultPlan:
    """Which requests fail and how: each request (method, path, body, and how many times the
    same request was seen before) draws from a generator seeded with ``seed``; with
    probability ``rate`` it gets one of ``kinds``. ``first_tries``: only a request's first
    that many sightings may fail (None: any), so that a plan can fault every request once
    and still let it through. ``in_turn``: the faults are ``kinds`` in order, starting at
    ``offset``, instead of drawn (replayable as long as the requests come one at a time)."""

    seed: int
    rate: float
    kinds: Sequence[str] = FAULTS
    first_tries: int | None = None
    in_turn: bool = False
    offset: int = 0
    _seen: Counter[str] = field(default_factory=Counter, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _turn: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {', '.join(FAULTS)}")

    def choose(self, method: str, path: str, body: bytes) -> tuple[str | None, random.Random]:
        """The fault for this sighting of the request (None: forward it), and the generator
        that picks its details."""
        digest = hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()
        with self._lock:
            n = self._seen[digest]
            self._seen[digest] += 1
        rng = random.Random(f"{self.seed}/{digest}/{n}")
        if self.first_tries is not None and n >= self.first_tries:
            return None, rng
        if rng.random() >= self.rate:
            return None, rng
        if self.in_turn:
            with self._lock:
                turn = self._turn
                self._turn += 1
            return self.kinds[(self.offset + turn) % len(self.kinds)], rng
        return rng.choice(list(self.kinds)), rng


class FaultProxy:
    """The proxy on a free loopback port, forwarding to ``upstream`` (``http://HOST:PORT``);
    ``hang_s``: how long a hang lasts (more than the client's time-out). Counts what it did
    in :attr:`injected` (faults by name), :attr:`forwarded` and :attr:`upstream_5xx` (5xx
    answers of the server itself), and keeps the longest the server took to answer
    (:attr:`slowest`). Use as a context manager."""

    def __init__(self, upstream: str, *, plan: FaultPlan | None = None, hang_s: float = 5.0):
        self.upstream = upstream.rstrip("/")
        self.plan = plan or FaultPlan(seed=0, rate=0.0)
        self.hang_s = hang_s
        self.injected: Counter[str] = Counter()
        self.forwarded = 0
        self.upstream_5xx = 0
        self.down = 0  # requests answered 502 because the server was down
        self.slowest = 0.0  # seconds: the longest the server took to answer
        self._count = threading.Lock()
        self._client = httpx.Client(base_url=self.upstream, timeout=httpx.Timeout(900.0))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def use(self, plan: FaultPlan) -> None:
        """Inject from ``plan`` from now on."""
        self.plan = plan

    def _note(self, counter: str, key: str | None = None) -> None:
        with self._count:
            if key is not None:
                self.injected[key] += 1
            elif counter == "forwarded":
                self.forwarded += 1
            elif counter == "upstream_5xx":
                self.upstream_5xx += 1
            elif counter == "down":
                self.down += 1

    def _forward(self, method: str, path: str, body: bytes) -> httpx.Response | None:
        """The server's answer, or None when it cannot be reached (down, killed mid-answer)."""
        start = time.monotonic()
        try:
            response = self._client.request(
                method, path, content=body or None, headers={"Content-Type": "application/json"}
            )
        except httpx.TransportError:
            return None
        with self._count:
            self.slowest = max(self.slowest, time.monotonic() - start)
        self._note("forwarded")
        if response.status_code >= 500:
            self._note("upstream_5xx")
        return response

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.handle_request()

            def do_POST(self) -> None:
                self.handle_request()

            def send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def reset(self) -> None:
                """Close the connection with a TCP reset (SO_LINGER 0), not a clean FIN."""
                with contextlib.suppress(OSError):
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                self.close_connection = True

            def handle_request(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                kind, rng = proxy.plan.choose(self.command, self.path, body)
                try:
                    self.answer(kind, rng, body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up
                    self.close_connection = True

            def answer(self, kind: str | None, rng: random.Random, body: bytes) -> None:
                if kind is not None:
                    proxy._note("injected", kind)
                if kind == "500":
                    return self.send(500, b'{"error": {"message": "injected"}}')
                if kind == "429":
                    after = rng.choice(GOOD_RETRY_AFTER)
                    return self.send(429, b'{"error": "slow down"}', {"Retry-After": after})
                if kind == "429-bad-retry-after":
                    after = rng.choice(BAD_RETRY_AFTER)
                    return self.send(429, b'{"error": "slow down"}', {"Retry-After": after})
                if kind == "hang":
                    time.sleep(proxy.hang_s)
                    return self.reset()
                if kind == "malformed-json":
                    return self.send(200, rng.choice(MALFORMED))
                if kind == "reset":
                    return self.reset()
                response = proxy._forward(self.command, self.path, body)
                if response is None:
                    proxy._note("down")
                    return self.send(502, b'{"error": "the LLM server is not answering"}')
                content = response.content
                if kind == "reset-after":
                    return self.reset()
                if kind == "truncated-json":
                    content = content[: rng.randrange(max(1, len(content) - 1))]
                elif kind in ("no-choices", "missing-field"):
                    content = _without(content, kind)
                self.send(response.status_code, content)

        return Handler


def _without(content: bytes, kind: str) -> bytes:
    """The server's JSON answer without ``choices`` (``no-choices``) or without the first
    choice's text or message (``missing-field``; an answer without choices loses its data)."""
    try:
        data: Any = json.loads(content)
    except ValueError:
        return content
    if not isinstance(data, dict):
        return content
    if kind == "no-choices" or not data.get("choices"):
        data.pop("choices", None)
        data.pop("data", None)  # /v1/models
    else:
        choice = data["choices"][0]
        choice.pop("message" if "message" in choice else "text", None)
    return json.dumps(data).encode()


@contextlib.contextmanager
def fault_proxy(upstream: str, *, hang_s: float) -> Iterator[FaultProxy]:
    with FaultProxy(upstream, hang_s=hang_s) as proxy:
        yield proxy
