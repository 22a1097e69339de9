"""Where the FRet stages' LLM runs: the executor of their sharded work
(:mod:`geckokit.runs.executor`), with the LLM loaded where the work happens.

The local executor takes a loaded LLM, or loads one from its spec here; the Ray executor
takes the spec (a registry name, a GGUF path, one or several server URLs) and each of its
workers loads the LLM from it once, with :func:`load_worker`.
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager
from typing import Any

from geckokit.llm import load_llm, model_fingerprint
from geckokit.llm.base import LLM
from geckokit.runs.executor import (
    Executor,
    ExecutorSettings,
    Loaded,
    ShardExecutor,
    shard_executor,
)


def load_worker(spec: str) -> Loaded:
    """The LLM of ``spec``, its token counter, and its fingerprint for the manifest."""
    llm = load_llm(spec)
    return Loaded(llm, usage=llm.usage, info={"model": model_fingerprint(llm)})


def _loaded(llm: Any) -> Loaded:
    return Loaded(llm, usage=getattr(llm, "usage", None), info={"model": model_fingerprint(llm)})


def llm_executor(
    llm: LLM | str, settings: ExecutorSettings | None = None
) -> AbstractContextManager[ShardExecutor]:
    """The executor ``settings`` ask for (default: local) with ``llm`` loaded where it runs:
    ``llm`` is a loaded LLM or a spec for :func:`~geckokit.llm.load_llm`, and must be a spec
    for executor ``ray``, whose workers each load their own."""
    settings = settings or ExecutorSettings()
    if settings.executor is Executor.RAY:
        if not isinstance(llm, str):
            raise ValueError(
                "executor 'ray' loads the LLM in each of its workers from the LLM's spec: "
                f"pass the spec (a registry name, GGUF path or server URLs), not a loaded "
                f"{type(llm).__name__}"
            )
        return shard_executor(functools.partial(load_worker, llm), settings)
    model = load_llm(llm) if isinstance(llm, str) else llm
    return shard_executor(functools.partial(_loaded, model), settings)
