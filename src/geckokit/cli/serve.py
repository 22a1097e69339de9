"""``geckokit serve``: an encoder behind an OpenAI-compatible /v1/embeddings."""

from __future__ import annotations

import click


@click.command()
@click.option(
    "--model",
    default=None,
    help="Registry name, sentence-transformers folder (e.g. a `geckokit train` OUT/model) or "
    "hub id (default: all-minilm-l6-v2).",
)
@click.option(
    "--model-name",
    default=None,
    help="The id clients send as `model` and /v1/models lists (default: --model as given).",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--api-key",
    default=None,
    envvar="GECKOKIT_API_KEY",
    help="Require `Authorization: Bearer KEY` on /v1/ routes (or set GECKOKIT_API_KEY).",
)
@click.option("--max-inputs", default=2048, show_default=True, type=int, help="Texts per request.")
@click.option(
    "--max-chars",
    default=16384,
    show_default=True,
    type=int,
    help="Characters per text; longer texts are refused (400). Texts within this limit but "
    "past the model's token window are truncated and listed in the response's `truncated`.",
)
@click.option(
    "--max-body-bytes",
    default=16 * 2**20,
    show_default=True,
    type=int,
    help="Request body size; larger bodies get 413.",
)
@click.option(
    "--max-batch-size",
    default=64,
    show_default=True,
    type=int,
    help="Most texts in one micro-batch of concurrent requests.",
)
@click.option(
    "--max-wait-ms",
    default=5.0,
    show_default=True,
    type=float,
    help="How long a batch waits for more requests before it is encoded.",
)
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(min=1),
    help="Batches encoded at the same time, each on its own thread; torch's threads are "
    "shared out among them, and concurrent requests are split evenly across idle workers "
    "(default: 2 where there are at least 2 CPUs, else 1; 1 gives a lone request all threads).",
)
@click.option("--device", default=None, help="torch device, e.g. cpu or cuda (default: auto).")
def serve(
    model: str | None,
    model_name: str | None,
    host: str,
    port: int,
    api_key: str | None,
    max_inputs: int,
    max_chars: int,
    max_body_bytes: int,
    max_batch_size: int,
    max_wait_ms: float,
    workers: int | None,
    device: str | None,
) -> None:
    """Serve an encoder at /v1/embeddings (OpenAI's shape), /v1/models and /health.

    Requests may add `task` and `input_type` ("query" or "document") to embed texts in
    the unified format; `dimensions` picks a Matryoshka size the model was trained for.
    """
    import os

    from geckokit._deps import require
    from geckokit.serve.app import ServeOptions, create_app
    from geckokit.serve.model import ServedModel

    # The event loop shares the cores with torch's OpenMP threads; threads that spin while
    # they wait for work take CPU the loop needs. Set before torch loads; the caller's
    # setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    uvicorn = require("uvicorn", extra="serve", purpose="the embedding server")
    if workers is None:
        workers = 2 if (os.cpu_count() or 1) >= 2 else 1
    options = ServeOptions(
        api_key=api_key,
        max_inputs=max_inputs,
        max_chars=max_chars,
        max_body_bytes=max_body_bytes,
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        workers=workers,
    )
    served = ServedModel.load(model, model_id=model_name, device=device)
    if workers > 1:
        torch = require("torch", extra="train", purpose="encoders")
        torch.set_num_threads(max(1, torch.get_num_threads() // workers))
    uvicorn.run(create_app(served, options=options), host=host, port=port, log_level="info")
