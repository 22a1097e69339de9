"""``geckokit serve``: an encoder behind an OpenAI-compatible /v1/embeddings."""

from __future__ import annotations

from typing import Any

import click

from geckokit.cli.settings import setting_option, setting_overrides
from geckokit.encoder import Backend
from geckokit.registry import DEFAULT_ENCODER
from geckokit.serve.app import ServeOptions


@click.command()
@click.option(
    "--model",
    default=None,
    help="Registry name, sentence-transformers folder (e.g. a `geckokit train` OUT/model) or "
    f"hub id (default: {DEFAULT_ENCODER}).",
)
@click.option(
    "--model-name",
    default=None,
    help="The id clients send as `model` and /v1/models lists (default: --model as given).",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@setting_option(
    ServeOptions,
    "api_key",
    envvar="GECKOKIT_API_KEY",
    help="Require `Authorization: Bearer KEY` on /v1/ routes (or set GECKOKIT_API_KEY).",
)
@setting_option(ServeOptions, "max_inputs", help="Texts per request.")
@setting_option(
    ServeOptions,
    "max_chars",
    help="Characters per text; longer texts are refused (400). Texts within this limit but "
    "past the model's token window are truncated and listed in the response's `truncated`.",
)
@setting_option(ServeOptions, "max_body_bytes", help="Request body size; larger bodies get 413.")
@setting_option(
    ServeOptions,
    "body_timeout_s",
    help="Seconds a request's body may take to arrive after its headers; a slower body gets "
    "408 and its connection is closed.",
)
@setting_option(
    ServeOptions,
    "header_timeout_s",
    help="Seconds a client has to send a request's headers, from connecting (or from the "
    "first bytes of a further request on the connection); a slower client gets 408 and "
    "its connection is closed.",
)
@setting_option(
    ServeOptions, "max_batch_size", help="Most texts in one micro-batch of concurrent requests."
)
@setting_option(
    ServeOptions,
    "max_wait_ms",
    help="How long a batch waits for more requests before it is encoded.",
)
@setting_option(
    ServeOptions,
    "workers",
    inherit=True,
    default_text="2 where there are at least 2 CPUs, else 1",
    help="Batches encoded at the same time, each on its own thread; torch's (or ONNX "
    "Runtime's) threads are shared out among them, and concurrent requests are split evenly across idle workers "
    "(1 gives a lone request all threads).",
)
@click.option("--device", default=None, help="torch device, e.g. cpu or cuda (default: auto).")
@click.option(
    "--backend",
    type=click.Choice([b.value for b in Backend]),
    default=Backend.TORCH.value,
    show_default=True,
    help="What runs the model: torch, or ONNX Runtime on the CPU with the ONNX copy that "
    "`geckokit export --format onnx` writes into the model folder.",
)
@click.option(
    "--onnx-file",
    default=None,
    help="With --backend onnx: which ONNX file of the folder, e.g. "
    "onnx/model_qint8_avx512_vnni.onnx for the int8 copy (default: onnx/model.onnx).",
)
@click.pass_context
def serve(
    ctx: click.Context,
    model: str | None,
    model_name: str | None,
    host: str,
    port: int,
    device: str | None,
    backend: str,
    onnx_file: str | None,
    **settings: Any,  # the ServeOptions flags, read by setting_overrides
) -> None:
    """Serve an encoder at /v1/embeddings (OpenAI's shape), /v1/models and /health.

    Requests may add `task` and `input_type` ("query" or "document") to embed texts in
    the unified format; `dimensions` picks a Matryoshka size the model was trained for.
    """
    import os

    from geckokit._deps import require
    from geckokit.serve.app import create_app
    from geckokit.serve.connection import header_deadline_protocol
    from geckokit.serve.model import ServedModel

    # The event loop shares the cores with torch's OpenMP threads; threads that spin while
    # they wait for work take CPU the loop needs. Set before torch loads; the caller's
    # setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    uvicorn = require("uvicorn", extra="serve", purpose="the embedding server")
    given = setting_overrides(ctx, ServeOptions)
    options = ServeOptions(**{k: v for k, v in given.items() if v is not None})
    chosen = Backend.parse(backend)
    if onnx_file is not None and chosen is not Backend.ONNX:
        raise click.UsageError("--onnx-file applies to --backend onnx")
    threads = None  # each worker's share of the cores, for torch and ONNX Runtime alike
    if options.workers > 1:
        torch = require("torch", extra="train", purpose="encoders")
        threads = max(1, torch.get_num_threads() // options.workers)
        torch.set_num_threads(threads)
    served = ServedModel.load(
        model,
        model_id=model_name,
        device=device,
        backend=chosen,
        onnx_file=onnx_file,
        threads=threads,
    )
    uvicorn.run(
        create_app(served, options=options),
        host=host,
        port=port,
        log_level="info",
        http=header_deadline_protocol(options.header_timeout_s),
    )
