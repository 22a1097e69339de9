"""Hostile clients of ``geckokit serve``, shared by tests/reliability/test_serve.py and, at a
larger count, by ``bench/reliability.py``.

- :func:`start_server`: ``geckokit serve`` as a subprocess on localhost, with the real default
  encoder, an API key and small limits (:data:`LIMITS`), so that the cases below stay cheap.
- :data:`BAD_REQUESTS`: hand-made bad requests, each with the status and error code that
  docs/serving.md gives for it; :func:`check_bad` sends one.
- :func:`slow_bodies`: connections that send their body a byte at a time; each must get 408
  and be closed by the server within its body timeout, while ``/health`` keeps answering.
- :func:`slow_headers`: connections that send their headers a byte at a time, or nothing;
  each must get 408 and be closed within the header timeout, while ``/health`` answers.
- :func:`mixed_load`: concurrent clients mixing good and bad requests; every good request
  must get the same vectors as when sent alone, every bad one its 4xx, and ``/health`` must
  answer throughout.
- :func:`run_schemathesis`: the schemathesis CLI over ``/openapi.json`` (every operation, all
  its checks), with or without the key.

Each returns a :class:`Tally`: cases tried, survived (answered as documented), clear errors
(a 4xx in OpenAI's error shape), 5xx seen, and a line per case that did not survive.
Random choices come from seeded generators, so a failure replays with the same seed.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.conftest import free_port, stop_process, wait_http

KEY = "reliability-key"
#: The test server's limits: small, so that schemathesis's largest valid requests stay cheap
#: to embed on a CPU (its schema states them).
LIMITS = {
    "max_inputs": 32,
    "max_chars": 2000,
    "max_body_bytes": 2**20,
    "body_timeout_s": 2.0,
    "header_timeout_s": 2.0,
}
#: Texts the good requests pick from.
TEXTS = [
    "How do honey bees tell each other where the flowers are?",
    "Honey bees communicate the direction and distance of food sources by dancing.",
    "Paris",
    "The mitochondrion produces most of the cell's ATP.",
    "Vitamin D deficiency is associated with a higher risk of fractures.",
    "What causes the seasons on Earth?",
    "naïve café résumé — 東京 😀",
    "A long sentence " + "about proteins folding into their native structure " * 12,
]
ATOL = 1e-5  # batches of other sizes pad differently; the floats agree to ~1e-7


@dataclass
class Tally:
    """One area's row: cases tried, survived, clear errors (4xx in the error shape), 5xx."""

    tried: int = 0
    survived: int = 0
    clear_errors: int = 0
    server_errors: int = 0
    problems: list[str] = field(default_factory=list)

    def record(self, status: int | None, problem: str | None, *, clear: bool = False) -> None:
        """One case: its status (None: no answer), what went wrong (None: nothing), and
        whether it was answered with a clear error."""
        self.tried += 1
        self.survived += problem is None
        self.clear_errors += clear
        self.server_errors += status is not None and status >= 500
        if problem is not None:
            self.problems.append(problem)

    def __iadd__(self, other: Tally) -> Tally:
        self.tried += other.tried
        self.survived += other.survived
        self.clear_errors += other.clear_errors
        self.server_errors += other.server_errors
        self.problems += other.problems
        return self


# ---------------------------------------------------------------------------------------
# the server


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def start_server(folder: Path, *extra: str) -> Iterator[Server]:
    """``geckokit serve`` with the default encoder, :data:`KEY` and :data:`LIMITS`, logging to
    ``folder/server.log``; stopped on exit."""
    port = free_port()
    log = folder / "server.log"
    command = [sys.executable, "-m", "geckokit.cli.main", "serve", "--api-key", KEY]
    for name, value in LIMITS.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    command += ["--host", "127.0.0.1", "--port", str(port), *extra]
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=os.environ)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, log, timeout=600)
        yield Server(f"http://127.0.0.1:{port}", proc, log)
    finally:
        stop_process(proc)


# ---------------------------------------------------------------------------------------
# hand-made bad requests


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()  # ensure_ascii: a lone surrogate travels as \ud800


@dataclass(frozen=True)
class BadRequest:
    """A request and the answer docs/serving.md gives for it: ``status``, and the error's
    ``code`` and ``param`` where they are not None."""

    name: str
    status: int
    code: str | None = None
    param: str | None = None
    body: bytes | None = None
    method: str = "POST"
    path: str = "/v1/embeddings"
    key: str | None = KEY  # None: no Authorization header
    scheme: str = "Bearer"
    content_type: str = "application/json"
    chunked: bool = False  # stream the body without a Content-Length

    def request(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        headers = {"Content-Type": self.content_type} if self.body is not None else {}
        if self.key is not None:
            headers["Authorization"] = f"{self.scheme} {self.key}"
        content: Any = self.body
        if self.chunked and self.body is not None:
            body = self.body
            content = iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
            if isinstance(client, httpx.AsyncClient):
                content = _aiter(body)
        return client.build_request(self.method, self.path, content=content, headers=headers)


async def _aiter(body: bytes) -> Any:
    for i in range(0, len(body), 65536):
        yield body[i : i + 65536]


def _bad_requests() -> list[BadRequest]:
    limit = LIMITS["max_body_bytes"]
    big = _json({"input": "x", "user": "u" * int(limit)})
    dims = [0, -1, 10**30, 1.5, "384", True, 100]
    return [
        BadRequest("invalid JSON", 400, body=b'{"input": '),
        BadRequest("raw NUL byte in the body", 400, body=b'{"input": "a\x00b"}'),
        BadRequest("body not UTF-8", 400, body=b'{"input": "\xff\xfe"}'),
        BadRequest("a JSON array", 400, body=b'["a", "b"]'),
        BadRequest("plain text body", 400, body=b"embed me", content_type="text/plain"),
        BadRequest("body over the limit", 413, "request_too_large", body=big),
        BadRequest("body over the limit, chunked", 413, "request_too_large", body=big, chunked=True),
        BadRequest("10,000 inputs", 400, "too_many_inputs", "input", _json({"input": ["a"] * 10_000})),
        BadRequest("a text over max_chars", 400, "input_too_long", "input", _json({"input": "a" * (int(LIMITS["max_chars"]) + 1)})),
        BadRequest("no input", 400, param="input", body=b"{}"),
        BadRequest("empty list", 400, param="input", body=_json({"input": []})),
        BadRequest("empty text", 400, param="input", body=_json({"input": ["a", ""]})),
        *(
            BadRequest(f"input {what}", 400, param="input", body=_json({"input": value}))
            for what, value in [
                ("a number", 3),
                ("a list of numbers", [1.5, 2.5]),
                ("an object", {"text": "a"}),
                ("true", True),
                ("null", None),
                ("a list holding null", ["a", None]),
                ("a list holding an object", ["a", {"text": "b"}]),
                ("nested lists", [["a", "b"]]),
                ("deeply nested lists", [[["a"]]]),
                ("token ids", [101, 2054, 102]),
                ("token arrays", [[101, 2054, 102]]),
            ]
        ),
        BadRequest("NUL in a text", 400, "invalid_text", "input", _json({"input": ["ok", "a\x00"]})),
        BadRequest("NUL alone", 400, "invalid_text", "input", _json({"input": "\x00"})),
        BadRequest("lone high surrogate", 400, "invalid_text", "input", _json({"input": "\ud800"})),
        BadRequest("lone low surrogate", 400, "invalid_text", "input", _json({"input": ["x\udfff"]})),
        BadRequest(
            "surrogate pair reversed", 400, "invalid_text", "input", _json({"input": "\ude00\ud83d"})
        ),
        BadRequest(
            "lone surrogate in the 5th of 6 texts",
            400,
            "invalid_text",
            "input",
            _json({"input": ["a", "b", "c", "d", "e\ud800", "f"]}),
        ),
        BadRequest("lone surrogate in task", 400, param="task", body=_json({"input": "a", "task": "\ud800"})),
        BadRequest("NUL in task", 400, param="task", body=_json({"input": "a", "task": "a\x00"})),
        BadRequest("lone surrogate as a key", 400, body=_json({"input": "a", "\ud800": 1})),
        *(
            BadRequest(f"dimensions={d!r}", 400, param="dimensions", body=_json({"input": "a", "dimensions": d}))
            for d in dims
        ),
        BadRequest("encoding_format binary", 400, param="encoding_format", body=_json({"input": "a", "encoding_format": "binary"})),
        BadRequest("input_type passage", 400, param="input_type", body=_json({"input": "a", "input_type": "passage"})),
        BadRequest("task with input_type document", 400, param="task", body=_json({"input": "a", "task": "t", "input_type": "document"})),
        BadRequest("a misspelt field", 400, param="taks", body=_json({"input": "a", "taks": "t"})),
        BadRequest("wrong model", 404, "model_not_found", "model", _json({"input": "a", "model": "text-embedding-3-small"})),
        BadRequest("model holding a lone surrogate", 404, "model_not_found", "model", _json({"input": "a", "model": "\ud800"})),
        BadRequest("missing key", 401, "missing_api_key", body=_json({"input": "a"}), key=None),
        BadRequest("wrong key", 401, "invalid_api_key", body=_json({"input": "a"}), key="wrong"),
        BadRequest("the key as Basic auth", 401, "invalid_api_key", body=_json({"input": "a"}), scheme="Basic"),
        BadRequest("models without a key", 401, "missing_api_key", method="GET", path="/v1/models", key=None),
        BadRequest("unknown model card", 404, "model_not_found", "model", method="GET", path="/v1/models/nope"),
        BadRequest("model card, bad percent-encoding", 404, "model_not_found", method="GET", path="/v1/models/%ED%A0%80%FF"),
        BadRequest("unknown URL", 404, "unknown_url", method="GET", path="/v1/nothing"),
        BadRequest("GET on embeddings", 405, "method_not_allowed", method="GET"),
    ]  # fmt: skip


BAD_REQUESTS = _bad_requests()


def judge_bad(case: BadRequest, response: httpx.Response) -> tuple[str | None, bool]:
    """What is wrong with ``response`` to ``case`` (None: it is as documented), and whether
    it is a clear error (a 4xx with OpenAI's error body and a message)."""
    try:
        error = response.json()["error"]
        clear = 400 <= response.status_code < 500 and bool(error["message"]) and bool(error["type"])
    except (ValueError, KeyError, TypeError):
        error, clear = None, False
    want = (case.status, case.code, case.param)
    fields = (error.get("code"), error.get("param")) if isinstance(error, dict) else (None, None)
    got = (response.status_code, *fields)
    matches = got[0] == want[0] and all(w is None or w == g for w, g in zip(want, got, strict=True))
    if response.status_code == 405 and "allow" not in response.headers:
        matches = False
    if matches and clear:
        return None, True
    return f"{case.name}: expected {want}, got {got}: {response.text[:300]}", clear


def check_bad(base_url: str, case: BadRequest) -> Tally:
    """Send ``case`` once; its tally."""
    tally = Tally()
    with httpx.Client(base_url=base_url, timeout=120) as client:
        response = client.send(case.request(client))
    problem, clear = judge_bad(case, response)
    tally.record(response.status_code, problem, clear=clear)
    return tally


# ---------------------------------------------------------------------------------------
# bodies sent slowly


def _request_head(length: int) -> bytes:
    return (
        "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def _trickle(
    host: str, port: int, *, at_once: bytes, drip: bytes, deadline_s: float, pause_s: float
) -> tuple[int | None, str | None]:
    """Send ``at_once``, then ``drip`` a byte every ``pause_s``; the status of the answer
    and what went wrong (the server must answer 408 request_timeout and close the connection
    within ``deadline_s``; a reset once the whole answer has come counts as closed)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(at_once)

    async def trickle() -> None:
        with suppress(OSError):
            for byte in drip:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(pause_s)

    sender = asyncio.create_task(trickle())
    start = time.monotonic()
    data = b""
    try:
        async with asyncio.timeout(deadline_s):
            while chunk := await reader.read(65536):  # b"": the server closed it
                data += chunk
    except TimeoutError:
        return _status(data), f"connection still open after {deadline_s:g} s ({data[:80]!r})"
    except OSError as exc:  # a reset after the whole answer: the server closed while the
        # trickle still sent, which TCP reports as a reset; the 408 had arrived before it
        if not (_status(data) == 408 and data.rstrip().endswith(b"}")):
            return _status(data), f"connection broken before an answer: {exc!r}"
    finally:
        sender.cancel()
        with suppress(asyncio.CancelledError, OSError):
            await sender
        writer.close()
    status = _status(data)
    if status != 408 or b'"request_timeout"' not in data:
        return status, f"expected 408 request_timeout, got {data[:300]!r}"
    return status, None if time.monotonic() - start < deadline_s else "too late"


def _status(data: bytes) -> int | None:
    parts = data.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


async def _watch_health(url: str, stop: asyncio.Event, *, every_s: float = 0.2) -> list[str]:
    """Poll ``/health`` until ``stop``; a line per poll that failed or took over 10 s."""
    failures: list[str] = []
    async with httpx.AsyncClient(timeout=10) as client:
        while not stop.is_set():
            try:
                answer = await client.get(f"{url}/health")
                if answer.status_code != 200:
                    failures.append(f"/health answered {answer.status_code}")
            except httpx.HTTPError as exc:
                failures.append(f"/health failed: {exc!r}")
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
    return failures


def _slow_clients(
    server: Server, sends: list[dict[str, bytes]], *, limit: str, pause_s: float
) -> Tally:
    """Each of ``sends`` (what :func:`_trickle` sends) on its own connection at once; each
    must be answered 408 and closed within ``LIMITS[limit]`` plus 5 s, while ``/health``
    keeps answering."""

    async def main() -> Tally:
        stop = asyncio.Event()
        watch = asyncio.create_task(_watch_health(server.url, stop))
        deadline = float(LIMITS[limit]) + 5
        outcomes = await asyncio.gather(
            *(
                _trickle("127.0.0.1", server.port, **send, deadline_s=deadline, pause_s=pause_s)
                for send in sends
            )
        )
        stop.set()
        tally = Tally()
        for status, problem in outcomes:
            tally.record(status, problem, clear=status == 408)
        for failure in await watch:
            tally.record(None, failure)
        return tally

    return asyncio.run(main())


def slow_bodies(server: Server, *, connections: int, pause_s: float = 0.25) -> Tally:
    """``connections`` clients at once that announce a 1,000-byte body and send it a byte
    every ``pause_s``: each must get 408 within the body timeout (:func:`_slow_clients`)."""
    send = {"at_once": _request_head(1000), "drip": b" " * 1000}
    return _slow_clients(server, [send] * connections, limit="body_timeout_s", pause_s=pause_s)


def slow_headers(server: Server, *, connections: int, pause_s: float = 0.25) -> Tally:
    """``connections`` clients at once that send their request line and headers a byte every
    ``pause_s`` (every other one: nothing at all): each must get 408 within the header
    timeout (:func:`_slow_clients`)."""
    sends = [
        {"at_once": b"", "drip": b"" if i % 2 else _request_head(2)} for i in range(connections)
    ]
    return _slow_clients(server, sends, limit="header_timeout_s", pause_s=pause_s)


# ---------------------------------------------------------------------------------------
# good and bad requests at once


def reference_vectors(base_url: str) -> dict[str, np.ndarray]:
    """Each of :data:`TEXTS` embedded alone: what it must get in any batch."""
    out: dict[str, np.ndarray] = {}
    with httpx.Client(base_url=base_url, timeout=120) as client:
        for text in TEXTS:
            answer = client.post(
                "/v1/embeddings",
                json={"input": text},
                headers={"Authorization": f"Bearer {KEY}"},
            )
            answer.raise_for_status()
            out[text] = np.array(answer.json()["data"][0]["embedding"], dtype=np.float32)
    return out


def mixed_load(
    server: Server,
    *,
    clients: int,
    rounds: int,
    bad_share: float,
    seed: int,
    reference: dict[str, np.ndarray],
) -> Tally:
    """``clients`` concurrent clients each send ``rounds`` requests, a ``bad_share`` of them
    drawn from :data:`BAD_REQUESTS` (the others 1 to 4 of :data:`TEXTS`), all chosen by a
    generator seeded with ``seed``."""
    rng = random.Random(seed)
    bad = [c for c in BAD_REQUESTS if c.status != 405]  # a GET among POSTs: any is fine
    plans = [
        [
            rng.choice(bad) if rng.random() < bad_share else rng.sample(TEXTS, rng.randint(1, 4))
            for _ in range(rounds)
        ]
        for _ in range(clients)
    ]

    headers = {"Authorization": f"Bearer {KEY}"}  # per request: some bad ones go without

    async def client_run(client: httpx.AsyncClient, plan: list[Any], tally: Tally) -> None:
        for step in plan:
            try:
                if isinstance(step, BadRequest):
                    response = await client.send(step.request(client))
                    problem, clear = judge_bad(step, response)
                    tally.record(response.status_code, problem, clear=clear)
                    continue
                response = await client.post(
                    "/v1/embeddings", json={"input": step}, headers=headers
                )
            except httpx.HTTPError as exc:
                tally.record(None, f"{step!r:.80}: no answer: {exc!r}")
                continue
            tally.record(response.status_code, _judge_good(step, response, reference))

    async def main() -> Tally:
        tally = Tally()
        stop = asyncio.Event()
        watch = asyncio.create_task(_watch_health(server.url, stop))
        # idle connections are dropped before the server's keep-alive timeout (5 s) could
        # close one just as a request goes out on it (a client-side race, not a fault)
        limits = httpx.Limits(
            max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=1.0
        )
        async with httpx.AsyncClient(base_url=server.url, timeout=300, limits=limits) as client:
            await asyncio.gather(*(client_run(client, plan, tally) for plan in plans))
        stop.set()
        for failure in await watch:
            tally.record(None, failure)
        return tally

    return asyncio.run(main())


def _judge_good(
    texts: list[str], response: httpx.Response, reference: dict[str, np.ndarray]
) -> str | None:
    if response.status_code != 200:
        return f"good request {texts!r:.80} got {response.status_code}: {response.text[:300]}"
    data = response.json()["data"]
    if [d["index"] for d in data] != list(range(len(texts))):
        return f"good request {texts!r:.80}: {len(data)} vectors for {len(texts)} texts"
    got = np.array([d["embedding"] for d in data], dtype=np.float32)  # (n, width)
    want = np.stack([reference[t] for t in texts])  # (n, width)
    gap = float(np.abs(got - want).max())
    return None if gap <= ATOL else f"good request {texts!r:.80}: vectors differ by {gap:.2e}"


# ---------------------------------------------------------------------------------------
# schemathesis


#: Every schemathesis check: no 5xx; status codes, content types, headers and bodies as
#: the schema declares them; invalid data refused; the key enforced; 405 with Allow...
CHECKS = "all"


def run_schemathesis(
    server: Server, folder: Path, *, key: str | None, max_examples: int, seed: int
) -> Tally:
    """The schemathesis CLI over ``/openapi.json``: every operation, ``max_examples`` per
    operation and phase, with ``key`` sent or no Authorization header at all. Cases tried:
    the test cases it generated; survived: those without a failed check; clear errors and
    5xx: the 4xx (with OpenAI's error body) and 5xx among all the responses it recorded."""
    folder.mkdir(parents=True, exist_ok=True)
    cli = Path(sys.executable).with_name("schemathesis")
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "schemathesis.cli"]
    command += ["run", f"{server.url}/openapi.json", "--checks", CHECKS]
    command += ["--max-examples", str(max_examples), "--seed", str(seed), "--workers", "1"]
    command += ["--generation-database", "none", "--no-color", "--request-timeout", "120"]
    report_path, har_path = folder / "report.json", folder / "requests.har.json"
    command += ["--report", "json,har", "--report-json-path", str(report_path)]
    command += ["--report-har-path", str(har_path)]
    if key is not None:
        command += ["--header", f"Authorization: Bearer {key}"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=folder, timeout=3600)
    (folder / "schemathesis.out").write_text(result.stdout + result.stderr)
    report = json.loads(report_path.read_text())
    cases = report["test_cases"]
    tally = Tally(tried=cases["generated"])
    tally.survived = cases["generated"] - cases["with_failures"] - cases["errored"]
    for entry in json.loads(har_path.read_text())["log"]["entries"]:
        status = entry["response"]["status"]
        tally.server_errors += status >= 500
        text = entry["response"].get("content", {}).get("text") or ""
        tally.clear_errors += 400 <= status < 500 and '"error"' in text and '"message"' in text
    for failure in report["failures"]:
        tally.problems.append(
            f"{failure['code']} {failure['title']} ({failure['count']}): "
            + ", ".join(failure["operations"])
        )
    tally.problems += [f"error: {e}" for e in report["errors"]]
    if result.returncode != 0 and not tally.problems:
        tally.problems.append(f"schemathesis exited {result.returncode}: {result.stdout[-2000:]}")
    return tally
