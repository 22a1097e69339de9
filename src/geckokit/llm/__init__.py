"""The LLM seam and its backends.

:func:`load_llm` turns what a user typed into a backend:

- a registry name (``qwen2.5-coder-0.5b-instruct``) or a ``.gguf`` path -> llama.cpp in process;
- an ``http://`` or ``https://`` URL (the API root, e.g. ``http://host:8000/v1``) -> any
  OpenAI-compatible server; ``URL#model-name`` picks a model the server lists;
- several such URLs, comma-separated, or a file of them (one per line) -> a pool of servers
  of one model (:mod:`geckokit.llm.pool`): requests spread over them, and a server that
  stops answering is taken out and tried again later;
- ``hf:ID_OR_PATH`` -> transformers (GPU users).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from geckokit.llm.base import (
    LLM,
    BranchingLLM,
    ContinuationScore,
    Generation,
    Labels,
    LocalFileLLM,
    LogitRowsLLM,
    Message,
    PrefixCachingLLM,
    Prompt,
    Seeds,
    ServedLLM,
    TokenizingLLM,
    UsageStats,
    yes_no_labels,
)
from geckokit.types import ClosedSet

__all__ = [
    "LLM",
    "Backend",
    "BranchingLLM",
    "ContinuationScore",
    "Generation",
    "Labels",
    "LocalFileLLM",
    "LogitRowsLLM",
    "Message",
    "PrefixCachingLLM",
    "Prompt",
    "Seeds",
    "ServedLLM",
    "TokenizingLLM",
    "UsageStats",
    "load_llm",
    "model_fingerprint",
    "yes_no_labels",
]


class Backend(ClosedSet):
    LLAMACPP = "llamacpp"
    OPENAI = "openai"
    TRANSFORMERS = "transformers"


def detect_backend(spec: str) -> Backend:
    if spec.startswith(("http://", "https://")):
        return Backend.OPENAI
    if spec.startswith("hf:"):
        return Backend.TRANSFORMERS
    return Backend.LLAMACPP


def load_llm(
    spec: str | None = None,
    *,
    backend: str | None = None,
    timeout: float | None = None,
    **options: Any,
) -> LLM:
    """Build an LLM from a name, path or URL (see the module docstring).

    ``spec=None`` gives the default model. ``backend`` forces a backend; ``options`` go to
    its constructor (e.g. ``n_ctx`` for llama.cpp, ``api_key`` for HTTP). For HTTP, the API
    key defaults to the ``OPENAI_API_KEY`` environment variable. ``timeout``: seconds a
    server has to answer one request (None: the client's default); an in-process model has
    none, and ignores it.
    """
    from geckokit.llm.pool import parse_servers
    from geckokit.registry import DEFAULT_LLM

    spec = spec or DEFAULT_LLM
    kind = Backend.parse(backend) if backend else detect_backend(spec)
    servers = parse_servers(spec) if kind is not Backend.TRANSFORMERS else None
    if timeout is not None and (servers is not None or kind is Backend.OPENAI):
        options["timeout"] = timeout
    if servers is not None:
        from geckokit.llm.pool import ServerPool

        named = {url.partition("#")[2] for url, _ in servers} - {""}
        if len(named) > 1:
            raise ValueError(
                f"the servers of one pool serve one model; the list names {sorted(named)}"
            )
        options.setdefault("api_key", os.environ.get("OPENAI_API_KEY"))
        pairs = [(url.partition("#")[0], limit) for url, limit in servers]
        return ServerPool(pairs, model=named.pop() if named else None, **options)
    if kind is Backend.OPENAI:
        from geckokit.llm.openai_http import OpenAICompatibleLLM

        url, _, model = spec.partition("#")
        options.setdefault("api_key", os.environ.get("OPENAI_API_KEY"))
        return OpenAICompatibleLLM(url, model=model or None, **options)
    if kind is Backend.TRANSFORMERS:
        from geckokit.llm.transformers_backend import TransformersLLM

        return TransformersLLM(spec.removeprefix("hf:"), **options)
    from geckokit.llm.llamacpp import LlamaCppLLM

    return LlamaCppLLM(spec, **options)


def model_fingerprint(llm: LLM) -> dict[str, Any]:
    """Identify the LLM for the manifest: id, and the pinned sha256 or URL where known."""
    info: dict[str, Any] = {"id": llm.model_id, "backend": type(llm).__name__}
    if isinstance(llm, LocalFileLLM) and llm.model_path:
        from geckokit.registry import REGISTRY, cache_dir

        info["path"] = str(llm.model_path)
        for entry in REGISTRY.values():
            if Path(llm.model_path) == cache_dir() / entry.filename:
                info["sha256"] = entry.sha256
                info["registry_name"] = entry.name
    if isinstance(llm, ServedLLM) and llm.base_url:
        info["url"] = llm.base_url
    return info
