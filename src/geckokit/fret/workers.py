"""Where the FRet stages' LLM runs: the executor of their sharded work
(:mod:`geckokit.runs.executor`), with the LLM loaded where the work happens.

The local executor takes a loaded LLM, or loads one from its spec here; the Ray executor
takes the spec (a registry name, a GGUF path, one or several server URLs) and each of its
workers loads the LLM from it once, with :func:`load_worker`. An in-process llama.cpp model
in a Ray worker computes with as many threads as the CPUs Ray reserves for the worker (at
least one): with its default of one per core, workers sharing a machine would contend for
every core.
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager
from typing import Any

from geckokit.llm import Backend, detect_backend, load_llm, model_fingerprint
from geckokit.llm.base import LLM
from geckokit.llm.pool import parse_servers
from geckokit.runs.executor import (
    Executor,
    ExecutorSettings,
    Loaded,
    ShardExecutor,
    shard_executor,
)


def load_worker(spec: str, *, threads: int | None = None, timeout: float | None = None) -> Loaded:
    """The LLM of ``spec``, its token counter, and its fingerprint for the manifest;
    ``threads`` is an in-process llama.cpp model's thread count (None: one per core),
    ``timeout`` an LLM server's (None: the client's default)."""
    options: dict[str, Any] = {}
    # a file listing servers is a path too, but no model to give threads to
    if detect_backend(spec) is Backend.LLAMACPP and parse_servers(spec) is None:
        options["n_threads"] = threads
    llm = load_llm(spec, timeout=timeout, **options)
    return Loaded(llm, usage=llm.usage, info={"model": model_fingerprint(llm)})


def _loaded(llm: LLM) -> Loaded:
    return Loaded(llm, usage=llm.usage, info={"model": model_fingerprint(llm)})


def llm_executor(
    llm: LLM | str, settings: ExecutorSettings | None = None
) -> AbstractContextManager[ShardExecutor]:
    """The executor ``settings`` ask for (default: local) with ``llm`` loaded where it runs:
    ``llm`` is a loaded LLM or a spec for :func:`~geckokit.llm.load_llm`, and must be a spec
    for executor ``ray``, whose workers each load their own. A spec of LLM servers is loaded
    with the settings' ``llm_timeout``."""
    settings = settings or ExecutorSettings()
    if settings.executor is Executor.RAY:
        if not isinstance(llm, str):
            raise ValueError(
                "executor 'ray' loads the LLM in each of its workers from the LLM's spec: "
                f"pass the spec (a registry name, GGUF path or server URLs), not a loaded "
                f"{type(llm).__name__}"
            )
        threads = max(1, int(settings.worker_cpus))
        return shard_executor(
            functools.partial(load_worker, llm, threads=threads, timeout=settings.llm_timeout),
            settings,
        )
    model = load_llm(llm, timeout=settings.llm_timeout) if isinstance(llm, str) else llm
    return shard_executor(functools.partial(_loaded, model), settings)
