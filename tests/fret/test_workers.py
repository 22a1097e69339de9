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
