"""Embedding server under load: `geckokit serve` on loopback against in-process `encode`.

Setting: the first N SciFact claims (short single sentences). In-process, the same model
embeds them with one `SentenceTransformer.encode(texts)` call (its default batch size, 32),
and one at a time for a single-text latency reference. Over HTTP, C concurrent clients (a
minimal keep-alive HTTP/1.1 client on asyncio, asking for `encoding_format=base64` as the
`openai` client does) each post single-text requests to a `geckokit serve` subprocess on
127.0.0.1 until all N texts are embedded, after a short warm-up. The server's micro-batcher
groups concurrent requests into shared encode calls. Prints throughput and p50/p99 latency
side by side, the ratio of server to in-process throughput (target: at least 0.8x), the CPU
time each side used and the largest difference between the vectors. A third row runs the
server's own encode path (``ServedModel.encode``) in-process on batches of as many texts as
there are clients, the largest micro-batch the clients can form: what the server could reach
without HTTP. The two sides alternate
for a few rounds, so that other work on the machine weighs on both alike.

The last rows set torch against the int8 ONNX copy of the same model (``geckokit export
--model M --format onnx --quantize int8`` first; ``--onnx-file``, ``--no-onnx``): the same
in-process call and the same load against a second server run with ``--backend onnx``,
measured in the same rounds, and the SciFact nDCG@10 of each (all test queries against the
whole corpus; ``--gecko-format`` for a distilled model). Targets: ONNX int8 at 1.5x or more of
torch's in-process texts/s, nDCG@10 within 0.5 points, its server at 0.8x or more of its
in-process rate.

    python bench/serve_load.py --texts 1024 --clients 16
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from geckokit.encoder import Backend, EncoderRef, load_encoder
from geckokit.export import int8_file, quantization_target
from geckokit.serve.model import ServedModel

ROOT = Path(__file__).resolve().parents[1]


def load_texts(path: Path, n: int) -> list[str]:
    texts = [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]
    if len(texts) < n:
        raise ValueError(f"{path} has {len(texts)} texts, fewer than --texts {n}")
    return texts[:n]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    args: argparse.Namespace, port: int, log: Path, *, onnx_file: str | None = None
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "geckokit.cli.main", "serve", "--model", args.model]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    if onnx_file is not None:
        command += ["--backend", "onnx", "--onnx-file", onnx_file]
    command += ["--max-batch-size", str(args.max_batch_size)]
    command += ["--max-wait-ms", str(args.max_wait_ms)]
    if args.workers is not None:  # else the server's default
        command += ["--workers", str(args.workers)]
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=os.environ)
    deadline = time.monotonic() + 600  # minutes where other jobs share the cores
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise TimeoutError("the server did not start within 600 s")


class Connection:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams.

    The load generator shares the 2 cores with the server it measures; a full client
    (httpx, the openai client) spends more CPU per request than the server does, so the
    bench uses this one to leave the cores to the server, as remote clients would.
    """

    def __init__(self, port: int) -> None:
        self.address = ("127.0.0.1", port)
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    @classmethod
    async def open(cls, port: int) -> Connection:
        connection = cls(port)
        connection.reader, connection.writer = await asyncio.open_connection(*connection.address)
        return connection

    async def post_json(self, path: str, body: dict[str, object]) -> dict[str, object]:
        try:
            return await self._post_json(path, body)
        except (asyncio.IncompleteReadError, ConnectionError):
            # the server closed an idle keep-alive connection: reconnect and send again
            self.close()
            self.reader, self.writer = await asyncio.open_connection(*self.address)
            return await self._post_json(path, body)

    async def _post_json(self, path: str, body: dict[str, object]) -> dict[str, object]:
        data = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        await self.writer.drain()
        header = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status = int(header.split(" ", 2)[1])
        length = next(
            int(line.split(":", 1)[1])
            for line in header.split("\r\n")
            if line.lower().startswith("content-length:")
        )
        payload = await self.reader.readexactly(length)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {payload[:500]!r}")
        return json.loads(payload)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.writer.close()


async def load_test(
    port: int, model: str, texts: list[str], clients: int
) -> tuple[float, list[float], np.ndarray]:
    """Seconds for all texts, per-request latencies and the vectors, in text order."""
    vectors: list[np.ndarray | None] = [None] * len(texts)
    latencies: list[float] = []
    todo = iter(range(len(texts)))
    connections = [await Connection.open(port) for _ in range(clients)]

    async def post(connection: Connection, text: str) -> np.ndarray:
        body = {"input": text, "model": model, "encoding_format": "base64"}
        answer = await connection.post_json("/v1/embeddings", body)
        data = base64.b64decode(answer["data"][0]["embedding"])  # type: ignore[index]
        return np.frombuffer(data, dtype="<f4")

    async def worker(connection: Connection) -> None:
        for i in todo:
            t0 = time.perf_counter()
            vectors[i] = await post(connection, texts[i])
            latencies.append(time.perf_counter() - t0)

    for _ in range(2):  # warm-up
        await asyncio.gather(*(post(c, t) for c, t in zip(connections, texts, strict=False)))
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in connections))
    seconds = time.perf_counter() - t0
    for connection in connections:
        connection.close()
    return seconds, latencies, np.stack(vectors)  # type: ignore[arg-type]


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (this one by default; Linux /proc)."""
    stat = Path(f"/proc/{pid or os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def scifact_ndcg(model: object, folder: Path, *, gecko_format: bool) -> float:
    """nDCG@10 (x100) of ``model`` on SciFact's test queries over its whole corpus (not
    cached: the embeddings of each backend are its own)."""
    from geckokit.evaluate.retrieval import evaluate_retrieval
    from geckokit.tasks import task_string

    task = task_string("scifact", "retrieval")
    result = evaluate_retrieval(EncoderRef(model), folder, task=task, gecko_format=gecko_format)
    return float(result["ndcg@10"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scifact", type=Path, default=ROOT.parent / "shared/data/beir/scifact")
    parser.add_argument("--queries", default=None, help="default: SciFact's queries.jsonl")
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurements")
    parser.add_argument("--model", default="all-minilm-l6-v2")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=None, help="default: the server's")
    parser.add_argument("--single", type=int, default=128, help="texts for the latency reference")
    parser.add_argument(
        "--onnx-file",
        default=f"onnx/{int8_file(quantization_target())}",
        help="the ONNX copy set against torch (default: this CPU's int8 file)",
    )
    parser.add_argument("--no-onnx", action="store_true", help="leave out the ONNX rows")
    parser.add_argument(
        "--gecko-format", action="store_true", help="score SciFact in the unified format"
    )
    args = parser.parse_args()
    # the same OpenMP setting on both sides: `geckokit serve` defaults to passive waiting
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch  # after the setting above, which OpenMP reads once

    texts = load_texts(Path(args.queries or args.scifact / "queries.jsonl"), args.texts)
    n = len(texts)
    onnx_file = None if args.no_onnx else args.onnx_file
    onnx = None
    if onnx_file is not None:  # fails now, naming the export command, if there is no copy
        onnx = load_encoder(args.model, backend=Backend.ONNX, onnx_file=onnx_file)
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="geckokit-serve-bench-", suffix=".log")[1])
    server = start_server(args, port, log)
    onnx_port = free_port()
    onnx_log = log.with_suffix(".onnx.log")
    onnx_server = None
    onnx_local: list[float] = []
    onnx_remote: list[float] = []
    local_seconds: list[float] = []
    batch_seconds: list[float] = []
    remote_seconds: list[float] = []
    latencies: list[float] = []
    cpu = {"in-process": 0.0, "server": 0.0, "load generator": 0.0}
    try:
        if onnx is not None:
            onnx_server = start_server(args, onnx_port, onnx_log, onnx_file=onnx_file)
            onnx.encode(texts[:64])  # warm-up
        model = load_encoder(args.model)
        model.encode(texts[:64])  # warm-up
        served = ServedModel(model, model_id=args.model)  # the server's encode path, no HTTP
        single: list[float] = []
        for text in texts[: args.single]:
            t1 = time.perf_counter()
            model.encode([text])
            single.append(time.perf_counter() - t1)
        url = f"http://127.0.0.1:{port}"
        before = httpx.get(f"{url}/health").json()
        # alternate the two sides, so that a change in the machine's load hits both
        for _ in range(args.rounds):
            c0, t0 = cpu_seconds(), time.perf_counter()
            local = model.encode(texts, normalize_embeddings=True)
            local_seconds.append(time.perf_counter() - t0)
            cpu["in-process"] += cpu_seconds() - c0
            t0 = time.perf_counter()
            for i in range(0, n, args.clients):
                served.encode(texts[i : i + args.clients])
            batch_seconds.append(time.perf_counter() - t0)
            s0, c0 = cpu_seconds(server.pid), cpu_seconds()
            seconds, lat, remote = asyncio.run(load_test(port, args.model, texts, args.clients))
            cpu["server"] += cpu_seconds(server.pid) - s0
            cpu["load generator"] += cpu_seconds() - c0
            remote_seconds.append(seconds)
            latencies += lat
            if onnx is not None:
                t0 = time.perf_counter()
                onnx.encode(texts, normalize_embeddings=True)
                onnx_local.append(time.perf_counter() - t0)
                seconds, _, _ = asyncio.run(load_test(onnx_port, args.model, texts, args.clients))
                onnx_remote.append(seconds)
        after = httpx.get(f"{url}/health").json()
    finally:
        for proc in (server, onnx_server):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
        log.unlink(missing_ok=True)
        onnx_log.unlink(missing_ok=True)

    total = n * args.rounds
    batches = after["batches"] - before["batches"]
    ratios = [a / b for a, b in zip(local_seconds, remote_seconds, strict=True)]
    print(
        f"{n} SciFact claims x {args.rounds} rounds, model {args.model}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch threads, "
        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']} (both sides)"
    )
    print(f"{'':34} {'texts/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'in-process encode (batch 32)':34} {total / sum(local_seconds):9.1f}")
    print(
        f"{'in-process encode, one text a call':34} {len(single) / sum(single):9.1f} "
        f"{ms(single, 50):8.1f} {ms(single, 99):8.1f}"
    )
    print(
        f"{f'server encode path, {args.clients}-text batches':34} {total / sum(batch_seconds):9.1f}"
    )
    print(
        f"{f'server, {args.clients} clients x 1 text':34} {total / sum(remote_seconds):9.1f} "
        f"{ms(latencies, 50):8.1f} {ms(latencies, 99):8.1f}"
    )
    print(
        f"server / in-process throughput: {sum(local_seconds) / sum(remote_seconds):.2f}x "
        f"(target >= 0.8x; rounds {', '.join(f'{r:.2f}' for r in ratios)})"
    )
    print("CPU ms per text: " + ", ".join(f"{k} {v / total * 1000:.2f}" for k, v in cpu.items()))
    print(
        f"{batches} encode calls for {total} requests (mean batch {total / max(batches, 1):.1f}); "
        f"max |server - in-process| = {np.abs(remote - local).max():.1e}"
    )
    if onnx is None:
        return
    del served  # the nDCG runs want the memory
    ndcg = {
        "torch": scifact_ndcg(model, args.scifact, gecko_format=args.gecko_format),
        "onnx": scifact_ndcg(onnx, args.scifact, gecko_format=args.gecko_format),
    }
    rates = {
        "torch": (total / sum(local_seconds), total / sum(remote_seconds)),
        "onnx": (total / sum(onnx_local), total / sum(onnx_remote)),
    }
    print(f"\ntorch against ONNX ({onnx_file}), same rounds, {args.clients} clients x 1 text:")
    print(
        f"{'':34} {'in-process texts/s':>18} {'server texts/s':>15} {'server/in':>9} {'nDCG@10':>8}"
    )
    for name, (inside, served_rate) in rates.items():
        label = "torch" if name == "torch" else f"onnx {Path(onnx_file).stem}"
        print(
            f"{label:34} {inside:18.1f} {served_rate:15.1f} {served_rate / inside:8.2f}x "
            f"{ndcg[name]:8.2f}"
        )
    speed = rates["onnx"][0] / rates["torch"][0]
    print(
        f"ONNX / torch: in-process {speed:.2f}x (target >= 1.5x), server "
        f"{rates['onnx'][1] / rates['torch'][1]:.2f}x; nDCG@10 "
        f"{ndcg['onnx'] - ndcg['torch']:+.2f} points (target within 0.5); ONNX server keeps "
        f"{rates['onnx'][1] / rates['onnx'][0]:.2f}x of its in-process rate (target >= 0.8x)"
    )


if __name__ == "__main__":
    main()
