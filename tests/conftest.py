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
from typing import Any

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
def ray_cluster() -> Iterator[str]:
    """A real local Ray cluster, started once per test session; yields its address. It
    offers 4 CPUs on this 2-core machine (the executor's workers take fractions of one),
    starts no dashboard, and its workers import this checkout and the tests (PYTHONPATH is
    inherited from here)."""
    ray = pytest.importorskip("ray")
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), str(ROOT), before) if p
    )
    context = ray.init(
        num_cpus=4, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False
    )
    try:
        yield str(context.address_info["address"])
    finally:
        ray.shutdown()
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


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


def fret_table(
    passages: dict[str, dict[str, str]],
    queries: list[tuple[str, str]],
    *,
    per_query: int,
    scored: bool = True,
) -> Any:
    """A fret/ table as FRet step 2 writes it (``build_fret``) for ``queries`` (task, query)
    over ``passages``, with made-up but deterministic LLM scores: query i's candidates are
    the next ``per_query`` passages (disjoint between queries), its seed the first of them,
    and the QL of its third candidate is missing (NaN). ``scored=False``: the ``seed``
    fusion, no LLM scores at all."""
    import random

    import pyarrow as pa

    from geckokit.fret.fusion import Fusion
    from geckokit.fret.mine_run import MineConfig, build_fret
    from geckokit.fret.retrieve import CANDIDATE_SCHEMA

    ids = list(passages)
    if len(ids) < per_query * len(queries):
        raise ValueError(f"{len(ids)} passages for {len(queries)} x {per_query} candidates")
    rng = random.Random(7)
    candidates: dict[str, list[Any]] = {
        k: [] for k in ("query_id", "task_type", "task", "query", "seed_id", "candidate_ids")
    }
    candidates["encoder_scores"] = []
    scores: dict[str, list[Any]] = {k: [] for k in ("query_id", "passage_id", "ql", "rc")}
    for i, (task, query) in enumerate(queries):
        cands = ids[i * per_query : (i + 1) * per_query]
        for key, value in zip(
            candidates,
            (
                f"q{i}",
                "retrieval",
                task,
                query,
                cands[0],
                cands,
                [0.9 - 0.05 * j for j in range(per_query)],
            ),
            strict=True,
        ):
            candidates[key].append(value)
        for j, pid in enumerate(cands):
            scores["query_id"].append(f"q{i}")
            scores["passage_id"].append(pid)
            scores["ql"].append(float("nan") if j == 2 else -rng.uniform(0.5, 3.0))
            scores["rc"].append(-rng.uniform(0.0, 4.0))
    # the encoder proposed them: its scores ordered them, its first is the seed
    candidates["bm25_scores"] = [None] * len(queries)
    candidates["retriever_scores"] = candidates["encoder_scores"]
    candidates["encoder_first_id"] = [c[0] for c in candidates["candidate_ids"]]
    candidates["seed_retrieved"] = [True] * len(queries)
    table = pa.table({n: candidates[n] for n in CANDIDATE_SCHEMA.names}, schema=CANDIDATE_SCHEMA)
    config = MineConfig(top_n=max(2, per_query), fusion=Fusion.RRF if scored else Fusion.SEED)
    return build_fret(table, pa.table(scores) if scored else None, passages, config)


@pytest.fixture(scope="session")
def distilled_onnx(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A distilled model folder, as `geckokit train` writes it (all-MiniLM-L6-v2 trained a
    few steps on NLI pairs: prompts, Matryoshka dims in geckokit.json), with its float32 and
    int8 ONNX copies written by `geckokit export`."""
    from click.testing import CliRunner

    from geckokit.cli.main import cli
    from geckokit.mixture.build import build_mixture
    from geckokit.train.trainer import TrainConfig, train

    nli = tmp_path_factory.mktemp("nli") / "snli" / "test.jsonl"
    nli.parent.mkdir()
    lines = (shared_data / "training_pairs/snli_esnli/test.jsonl").read_text().splitlines()
    nli.write_text("".join(line + "\n" for line in lines[:40]))
    mixture = tmp_path_factory.mktemp("mix")
    build_mixture(mixture, nli=[nli])
    out = tmp_path_factory.mktemp("distilled")
    config = TrainConfig(
        max_steps=2, batch_size=8, matryoshka_dims=[384, 256, 128, 64], text_format="unified"
    )
    train(mixture, out, config=config)
    folder = out / "model"
    result = CliRunner().invoke(
        cli.commands["export"], ["--model", str(folder), "--format", "onnx", "--quantize", "int8"]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    return folder
