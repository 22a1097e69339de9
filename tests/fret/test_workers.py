"""Where the FRet stages' LLM is loaded: here for the local executor, in each worker (from
its spec) for Ray."""

from __future__ import annotations

import pytest

from geckokit.fret.workers import llm_executor
from geckokit.runs.executor import Executor, ExecutorSettings


def test_ray_takes_the_llms_spec_not_a_loaded_model() -> None:
    class Loaded:
        model_id = "m"

    ray = ExecutorSettings(executor=Executor.RAY, workers=2)
    with pytest.raises(ValueError, match=r"pass the spec .* not a loaded Loaded"):
        llm_executor(Loaded(), ray)  # type: ignore[arg-type]


def test_the_local_executor_takes_a_loaded_llm_as_it_is() -> None:
    from geckokit.llm.base import UsageStats

    class Model:
        model_id = "m"
        usage = UsageStats()

    model = Model()
    with llm_executor(model) as work:  # type: ignore[arg-type]
        assert work.info == {"model": {"id": "m", "backend": "Model"}}
        assert work.loaded.model is model  # type: ignore[attr-defined]


def test_a_worker_loads_a_file_of_servers_as_a_pool(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A file listing servers is a path, like a GGUF file, but gets no thread count: each
    Ray worker builds its pool of clients from it."""
    from geckokit.fret.workers import load_worker
    from geckokit.llm.pool import ServerPool

    servers = tmp_path / "servers.txt"
    servers.write_text("http://127.0.0.1:9/v1#m 2\nhttp://127.0.0.1:10/v1#m\n")
    loaded = load_worker(str(servers), threads=1, timeout=5.0)
    try:
        assert isinstance(loaded.model, ServerPool)
        assert loaded.info["model"]["id"] == "m"
    finally:
        loaded.model.close()
