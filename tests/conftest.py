"""Shared fixtures. Real models are session-scoped: each loads once per test run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _embeddings_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Embeddings cached by tests go to a temporary folder, not the user's
    $GECKOKIT_HOME/embeddings (models still come from the user's cache)."""
    before = os.environ.get("GECKOKIT_EMBEDDINGS")
    os.environ["GECKOKIT_EMBEDDINGS"] = str(tmp_path_factory.mktemp("embeddings"))
    yield
    if before is None:
        os.environ.pop("GECKOKIT_EMBEDDINGS", None)
    else:
        os.environ["GECKOKIT_EMBEDDINGS"] = before


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def llm_path() -> str:
    from geckokit.registry import DEFAULT_LLM, pull

    return str(pull(DEFAULT_LLM))


@pytest.fixture(scope="session")
def llm(llm_path: str):  # type: ignore[no-untyped-def]
    from geckokit.llm.llamacpp import LlamaCppLLM

    model = LlamaCppLLM(llm_path, n_ctx=2048)
    yield model
    model.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = log.read_text(errors="replace")
            raise RuntimeError(f"server exited with {proc.returncode}:\n{out[-3000:]}")
        try:
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a server process, killing it when it does not stop within 20 s."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def start_server(args: list[str], probe_path: str) -> Iterator[str]:
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="geckokit-server-", suffix=".log")[1])
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, *args, "--host", "127.0.0.1", "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "2"},
        )
    try:
        wait_http(f"http://127.0.0.1:{port}{probe_path}", proc, log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_process(proc)
        log.unlink(missing_ok=True)
