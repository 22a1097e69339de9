"""A latency-bound LLM server on loopback: real HTTP, OpenAI-compatible, a fixed delay per token.

It stands in for a GPU server that 2 CPU cores cannot run, so that ``bench/scale.py`` can
measure how geckokit's LLM stages spread over several servers and workers. Each server
serves ``slots`` requests at a time (1: one after the other, like ``geckokit llm-serve``)
and holds each for ``prompt tokens x prompt_s + written tokens x written_s`` seconds, a
token being a whitespace-separated word. Its answers follow :mod:`geckokit.testing`'s
script: a FRet step-1 answer naming the passage's longest words, query log-probabilities
that favour words the prompt holds, and a relevance label fixed by the prompt's text.

Endpoints: ``GET /v1/models``; ``POST /v1/completions`` (text generation; ``echo`` with
``logprobs`` for query likelihood; ``logprobs`` alone for the first token's labels) and
``POST /v1/chat/completions`` (generation; ``logprobs`` with ``top_logprobs`` for labels).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import math
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from geckokit.testing import fret_answer, hashed_relevance, prompt_text

MODEL = "sim-llm"
_TOKEN = re.compile(r"\s*\S+")


@dataclass
class Latency:
    """Seconds a server spends per prompt token and per written token."""

    prompt_s: float = 0.0001
    written_s: float = 0.01


@dataclass
class ServerStats:
    """What one server served: requests and tokens, and its busy seconds."""

    requests: int = 0
    prompt_tokens: int = 0
    written_tokens: int = 0
    busy_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def _echo(text: str) -> dict[str, Any]:
    """Each word of ``text`` with its offset: log 0.5 where an earlier word is the same, else
    log 0.2 (the first has none), then one written token."""
    tokens, values, offsets, seen = [], [], [], set()
    for match in _TOKEN.finditer(text):
        word = match.group().strip().lower()
        tokens.append(match.group())
        offsets.append(match.start())
        values.append(None if not tokens[:-1] else math.log(0.5 if word in seen else 0.2))
        seen.add(word)
    tokens.append(".")
    offsets.append(len(text))
    values.append(math.log(0.5))
    return {"tokens": tokens, "token_logprobs": values, "text_offset": offsets}


def _labels(text: str) -> list[dict[str, Any]]:
    yes = hashed_relevance(text)
    return [
        {"token": "Yes", "logprob": math.log(yes)},
        {"token": "No", "logprob": math.log(1 - yes)},
    ]


def answer(path: str, body: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
    """The answer to one request, its prompt tokens and its written tokens."""
    chat = path.endswith("/chat/completions")
    text = prompt_text(body["messages"]) if chat else str(body["prompt"])
    prompt_tokens = len(text.split())
    if not chat and body.get("echo"):
        choice: dict[str, Any] = {"text": text + ".", "logprobs": _echo(text)}
        written = 1
    elif body.get("logprobs") and int(body.get("max_tokens") or 1) == 1:
        tops = _labels(text)
        if chat:
            first = {"token": "Yes", "logprob": tops[0]["logprob"], "top_logprobs": tops}
            choice = {"message": {"content": "Yes"}, "logprobs": {"content": [first]}}
        else:
            top = {t["token"]: t["logprob"] for t in tops}
            choice = {"text": "Yes", "logprobs": {"tokens": ["Yes"], "top_logprobs": [top]}}
        written = 1
    else:
        content = fret_answer(text)
        choice = {"message": {"content": content}} if chat else {"text": content}
        written = len(content.split())
    choice.update(index=0, finish_reason="stop" if written > 1 else "length")
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": written}
    return {"model": MODEL, "choices": [choice], "usage": usage}, prompt_tokens, written


def _handler(latency: Latency, slots: threading.Semaphore, stats: ServerStats) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body go out in two writes: with Nagle's algorithm the body would wait
        # for the client's delayed ACK of the headers (40 ms a request)
        disable_nagle_algorithm = True

        def _send(self, payload: dict[str, Any], status: int = 200) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._send({"object": "list", "data": [{"id": MODEL, "object": "model"}]})
            else:
                self._send({"error": {"message": "not found"}}, 404)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            payload, prompt_tokens, written = answer(self.path, body)
            hold = prompt_tokens * latency.prompt_s + written * latency.written_s
            with slots:
                time.sleep(hold)
            with stats.lock:
                stats.requests += 1
                stats.prompt_tokens += prompt_tokens
                stats.written_tokens += written
                stats.busy_s += hold
            self._send(payload)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextlib.contextmanager
def serving(
    n: int, *, latency: Latency | None = None, slots: int = 1
) -> Iterator[tuple[list[str], list[ServerStats]]]:
    """``n`` servers on free loopback ports; yields their /v1 base URLs and their stats."""
    latency = latency or Latency()
    servers, stats = [], []
    for _ in range(n):
        own = ServerStats()
        handler = _handler(latency, threading.Semaphore(slots), own)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        stats.append(own)
    try:
        yield [f"http://127.0.0.1:{s.server_port}/v1" for s in servers], stats
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def main() -> None:
    """Start ``--servers`` servers, print their URLs as one JSON line, serve until standard
    input closes, then print each server's stats as one JSON line."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=1)
    parser.add_argument("--slots", type=int, default=1, help="requests a server serves at once")
    parser.add_argument("--prompt-ms", type=float, default=0.1, help="per prompt token")
    parser.add_argument("--written-ms", type=float, default=10.0, help="per written token")
    args = parser.parse_args()
    latency = Latency(prompt_s=args.prompt_ms / 1000, written_s=args.written_ms / 1000)
    with serving(args.servers, latency=latency, slots=args.slots) as (urls, stats):
        print(json.dumps(urls), flush=True)
        sys.stdin.read()
        rows = [
            {k: getattr(s, k) for k in ("requests", "prompt_tokens", "written_tokens", "busy_s")}
            for s in stats
        ]
        print(json.dumps(rows), flush=True)


if __name__ == "__main__":
    main()
