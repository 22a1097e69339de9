"""``geckokit llm-serve``: one GGUF model behind an OpenAI-compatible completions API."""

from __future__ import annotations

import click

from geckokit.llm.server import DEFAULT_CACHE_BLOCK


@click.command("llm-serve")
@click.option(
    "--model", default=None, help="Registry name or GGUF path (default: the default LLM)."
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8081, show_default=True, type=int)
@click.option(
    "--n-ctx", default=4096, show_default=True, type=int, help="Context length in tokens."
)
@click.option(
    "--cache-block",
    default=DEFAULT_CACHE_BLOCK,
    show_default=True,
    type=click.IntRange(1, 512),
    help="Prompts are evaluated in blocks of this many tokens from their start, and the "
    "prefix cache serves only whole blocks, so that an answer does not depend on what the "
    "server served before. Smaller: more of a shared prefix served from the cache; larger: "
    "new prompts evaluated faster.",
)
def llm_serve(model: str | None, host: str, port: int, n_ctx: int, cache_block: int) -> None:
    """Serve an LLM at /v1/completions and /v1/chat/completions.

    Echoed prompt log-probabilities (echo + logprobs) are reported from the correct position,
    so other geckokit processes can score query likelihood through it (--llm http://HOST:PORT/v1).
    At temperature 0 a request gets the same answer whatever the server served before.
    """
    from geckokit._deps import require
    from geckokit.llm.llamacpp import LlamaCppLLM
    from geckokit.llm.server import create_app
    from geckokit.registry import DEFAULT_LLM

    uvicorn = require("uvicorn", extra="serve", purpose="the LLM server")
    llm = LlamaCppLLM(model or DEFAULT_LLM, n_ctx=n_ctx)
    uvicorn.run(create_app(llm, cache_block=cache_block), host=host, port=port, log_level="info")
