"""The FRet stages on a real local Ray cluster with the real 0.5B LLM (llama.cpp in each
worker, or `geckokit llm-serve` processes behind a server pool): the local loop's shards,
ids and counts; a driver killed with kill -9 and started again; two servers with one
killed midway. Kept small: a handful of passages, one attempt each."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from geckokit.fret.generate import GenerateConfig
from geckokit.fret.generate_run import generate_queries
from geckokit.runs.executor import Executor, ExecutorSettings
from tests.conftest import ROOT, free_port, wait_http

pytestmark = pytest.mark.slow

DEMO = ROOT / "src" / "geckokit" / "data" / "demo" / "corpus.jsonl"
#: one attempt per passage: every passage ends as one query or one reject, however the
#: LLM answers, so the counts per shard are known in advance
CONFIG = GenerateConfig(max_attempts=1, temperature=0.0, max_tokens=64)


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled FRet step 1 prompt with one few-shot example instead of six: a third of
    the prefix each fresh LLM evaluates (every worker and server here is one)."""
    text = (ROOT / "src" / "geckokit" / "prompts" / "generate_v1.toml").read_text()
    first = text.index("[[examples]]")
    path = tmp_path_factory.mktemp("prompt") / "generate_short.toml"
    path.write_text(text[: text.index("[[examples]]", first + 1)])
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 6 passages of the demo corpus (the Tor manual's options)."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("\n".join(DEMO.read_text().splitlines()[:6]) + "\n")
    return path


def ray(workers: int, address: str | None = None) -> ExecutorSettings:
    return ExecutorSettings(
        executor=Executor.RAY, workers=workers, worker_cpus=0.5, ray_address=address
    )


def shards(out: Path) -> dict[str, list[dict[str, Any]]]:
    """Each shard file's rows: ids, and the query or the reject reason."""
    keep = {
        "queries": ["query_id", "passage_id", "query"],
        "rejects": ["query_id", "reject_reason"],
    }
    return {
        f"{f.parent.name}/{f.name}": pq.read_table(f, columns=keep[f.parent.name]).to_pylist()
        for f in sorted(out.glob("*/part-*.parquet"))
    }


def test_generate_on_ray_writes_the_local_loops_shards(
    ray_cluster: str, llm, llm_path: str, corpus: Path, prompt_file: Path, tmp_path: Path
) -> None:
    from geckokit.fret.prompts import load_generate_prompt

    def run(out: str, llm: Any, **options: Any) -> dict[str, Any]:
        return generate_queries(
            corpus,
            tmp_path / out,
            llm=llm,
            config=CONFIG,
            prompt=load_generate_prompt(prompt_file),
            shard_size=1,
            limit=3,
            show_progress=False,
            **options,
        )

    llm.reset_cache()
    local = run("local", llm)
    # the same run started locally (one shard) and finished on two Ray workers, each
    # loading the model from its path
    run("mixed", llm, max_shards=1)
    mixed = run("mixed", llm_path, executor=ray(2))

    assert shards(tmp_path / "mixed") == shards(tmp_path / "local")
    assert len(shards(tmp_path / "local")) == 6  # 3 shards, queries and rejects
    for key in ("status", "shards", "counts", "model", "config", "prompt"):
        assert mixed[key] == local[key], key
    # the Ray sitting counted its own tokens: those of 2 passages of the 3
    spent = mixed["llm_this_run"]
    assert (spent["executor"], spent["workers"]) == ("ray", 2)
    answers = [r for rows in shards(tmp_path / "mixed").values() for r in rows]
    assert len(answers) == 3
    assert 0 < spent["completion_tokens"] < local["llm_this_run"]["completion_tokens"]
    assert spent["prompt_tokens_evaluated"] > 0


def test_a_driver_killed_with_kill_9_resumes_only_its_unfinished_shards(
    ray_cluster: str, llm_path: str, corpus: Path, prompt_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = [
        sys.executable, "-m", "geckokit.cli.main", "generate",
        "--corpus", str(corpus), "--out", str(out), "--llm", llm_path, "--limit", "3",
        "--shard-size", "1", "--max-attempts", "1", "--temperature", "0",
        "--prompt", str(prompt_file),
        "--executor", "ray", "--ray-address", ray_cluster, "--workers", "1",
    ]  # fmt: skip
    driver = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    primary = out / "queries"
    deadline = time.monotonic() + 120
    while not list(primary.glob("part-*.parquet")):
        assert driver.poll() is None, "the driver ended before writing a shard"
        assert time.monotonic() < deadline, "no shard written in 120 s"
        time.sleep(0.1)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    time.sleep(1.0)  # Ray ends the dead driver's worker
    before = {f: f.stat().st_mtime_ns for f in out.glob("*/part-*.parquet")}
    finished = sorted(f.name for f in before if f.parent == primary)
    assert 1 <= len(finished) < 3, finished

    from geckokit.corpus import load_corpus
    from geckokit.fret.prompts import load_generate_prompt
    from geckokit.fret.validate import ValidationConfig

    config = GenerateConfig(  # what the command line made of its flags
        max_attempts=1, temperature=0.0, validation=ValidationConfig(max_word_overlap=1.0)
    )
    manifest = generate_queries(
        load_corpus(corpus, max_tokens=512, limit=3),
        out,
        llm=llm_path,
        config=config,
        prompt=load_generate_prompt(prompt_file),
        shard_size=1,
        show_progress=False,
        executor=ray(1, ray_cluster),
    )
    assert manifest["status"] == "finished"
    assert manifest["shards"] == {"total": 3, "finished": 3}
    for f, mtime in before.items():  # the shards finished before the kill were not redone
        assert f.stat().st_mtime_ns == mtime, f
    assert len(list(primary.glob("part-*.parquet"))) == 3
    answers = [r for rows in shards(out).values() for r in rows]
    assert len(answers) == 3  # one answer per passage: none lost, none twice


def _serve(llm_path: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "geckokit.cli.main", "llm-serve", "--model", llm_path,
             "--n-ctx", "2048", "--host", "127.0.0.1", "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def two_servers(llm_path: str) -> Iterator[list[tuple[subprocess.Popen[bytes], str, Path]]]:
    logs = [Path(tempfile.mkstemp(prefix="geckokit-llm-serve-", suffix=".log")[1]) for _ in "ab"]
    servers = [(*_serve(llm_path, log), log) for log in logs]
    try:
        for proc, url, log in servers:
            wait_http(url.removesuffix("/v1") + "/health", proc, log)
        yield servers
    finally:
        for proc, _, log in servers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.unlink(missing_ok=True)


def test_two_servers_with_one_killed_midway(
    ray_cluster: str, two_servers: list[tuple[subprocess.Popen[bytes], str, Path]], corpus: Path,
    prompt_file: Path, tmp_path: Path,
) -> None:  # fmt: skip
    from geckokit.fret.prompts import load_generate_prompt

    (_, first, _), (doomed, second, doomed_log) = two_servers
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["manifest"] = generate_queries(
                corpus,
                tmp_path / "run",
                llm=f"{first},{second}",
                config=CONFIG,
                prompt=load_generate_prompt(prompt_file),
                shard_size=1,
                limit=4,
                show_progress=False,
                executor=ray(2),
            )
        except BaseException as exc:  # raised again below, in the test's thread
            result["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 120
    while b"POST /v1/chat/completions" not in doomed_log.read_bytes():
        assert worker.is_alive(), result
        assert time.monotonic() < deadline, "the second server got no request in 120 s"
        time.sleep(0.05)
    doomed.kill()  # while it answers a request
    doomed.wait()
    worker.join(timeout=300)
    assert not worker.is_alive()
    if "error" in result:
        raise result["error"]
    manifest = result["manifest"]
    assert manifest["status"] == "finished"
    assert manifest["shards"] == {"total": 4, "finished": 4}
    assert manifest["model"]["url"] == f"{first},{second}"
    answers = [r for rows in shards(tmp_path / "run").values() for r in rows]
    assert sorted({r["query_id"] for r in answers}) == sorted(r["query_id"] for r in answers)
    assert len(answers) == 4  # every passage answered, the killed server's too
    assert manifest["llm_this_run"]["completion_tokens"] > 0


def test_mine_scores_on_ray_the_pairs_the_local_loop_scores(
    ray_cluster: str, llm, llm_path: str, corpus: Path, tmp_path: Path
) -> None:
    from geckokit.encoder import EncoderRef
    from geckokit.fret.mine_run import MineConfig, mine

    queries = tmp_path / "queries.txt"
    queries.write_text(
        "how do I read the configuration from standard input\n"
        "where does tor keep its state\n"
        "ignore a missing torrc\n"
    )
    encoder = EncoderRef.load("all-minilm-l6-v2")

    def run(out: str, llm: Any, **options: Any) -> dict[str, Any]:
        return mine(
            None,
            corpus,
            tmp_path / out,
            llm=llm,
            encoder=encoder,
            config=MineConfig(top_n=2, passage_max_tokens=64),
            queries_file=queries,
            shard_size=2,
            **options,
        )

    local = run("local", llm)
    remote = run("ray", llm_path, executor=ray(1))
    for key in ("status", "counts", "shards", "model"):
        assert remote[key] == local[key], key
    names = sorted(f.name for f in (tmp_path / "local" / "scores").glob("part-*.parquet"))
    assert names and names == sorted(
        f.name for f in (tmp_path / "ray" / "scores").glob("part-*.parquet")
    )
    for name in names:
        a = pq.read_table(tmp_path / "local" / "scores" / name)
        b = pq.read_table(tmp_path / "ray" / "scores" / name)
        for ids in ("query_id", "passage_id"):
            assert a[ids].equals(b[ids]), (name, ids)
        for score in ("ql", "rc"):
            assert b[score].to_pylist() == pytest.approx(a[score].to_pylist(), abs=1e-3)
    fret = [pq.read_table(tmp_path / r / "fret" / "part-00000.parquet") for r in ("local", "ray")]
    assert fret[0]["positive_id"].equals(fret[1]["positive_id"])
    assert remote["llm_this_run"]["workers"] == 1
