"""The FastAPI app of ``geckokit serve``: OpenAI-compatible ``/v1/embeddings``.

Routes: ``POST /v1/embeddings``, ``GET /v1/models``, ``GET /v1/models/{model}``, ``GET
/health``. Concurrent requests share encode calls through :class:`MicroBatcher`. Every error
is answered with OpenAI's error body, so client libraries raise their usual exceptions
(``BadRequestError``, ``AuthenticationError``, ``NotFoundError``...).
"""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from geckokit._deps import require
from geckokit.serve.batching import MicroBatcher
from geckokit.serve.guard import Guard, error_response
from geckokit.serve.model import Encoded, ServedModel, format_input, project
from geckokit.serve.protocol import (
    TEXT_PATTERN,
    APIError,
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    EncodingFormat,
    ErrorResponse,
    Health,
    ModelCard,
    ModelList,
    Usage,
    text_problem,
)

log = logging.getLogger(__name__)


def default_workers() -> int:
    """Batches encoded at once by default: 2 where there are at least 2 CPUs, else 1 (two
    workers keep the cores busy while the other batch's answers go out: docs/serving.md)."""
    return 2 if (os.cpu_count() or 1) >= 2 else 1


class ServeOptions(BaseModel):
    """Limits and batching of ``geckokit serve`` (the CLI flags of the same names)."""

    api_key: str | None = Field(
        None, min_length=1, description="require 'Authorization: Bearer KEY' on /v1/ routes"
    )
    max_inputs: int = Field(2048, ge=1, description="texts per request")
    max_chars: int = Field(16384, ge=1, description="characters per text")
    max_body_bytes: int = Field(16 * 2**20, ge=1024, description="request body size")
    body_timeout_s: float = Field(
        30.0, gt=0, description="seconds a request's body may take to arrive after its headers"
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="seconds a client has to send a request's headers, from connecting or from "
        "the first bytes of a further request on the connection",
    )
    max_batch_size: int = Field(64, ge=1, description="texts per encode call")
    max_wait_ms: float = Field(5.0, ge=0, description="how long a batch waits to fill")
    workers: int = Field(
        default_factory=default_workers,
        ge=1,
        description="batches encoded at the same time (2 where there are at least 2 CPUs, else 1)",
    )


def _validation_message(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """One readable line for pydantic's errors, and the top-level field they concern."""
    lines: list[str] = []
    param: str | None = None
    for err in errors:
        loc = [p for p in err.get("loc", ()) if p != "body"]
        if err.get("type") == "json_invalid":
            where = f" at character {loc[0]}" if loc else ""
            return f"The body is not valid JSON{where}.", None
        if err.get("type") == "string_unicode":  # a lone surrogate, in a value or a key
            value = err.get("input")
            problem = text_problem(value) if isinstance(value, str) else None
            name = ".".join(map(str, loc)) if loc else "a field name"
            lines.append(f"{name} {problem or 'is not valid Unicode'}")
            param = param or (str(loc[0]) if loc else None)
            continue
        if not loc:
            return "The body must be a JSON object sent with Content-Type: application/json.", None
        field = str(loc[0])
        param = param or field
        if field == "input" and err.get("type") != "value_error":
            line = "'input' must be a text or a list of texts."  # one line for the whole union
        else:
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            line = f"{'.'.join(map(str, loc))}: {msg}"
        lines.append(line)
    return "Invalid request: " + "; ".join(dict.fromkeys(lines)), param


def _encode_vector(vector: np.ndarray, fmt: EncodingFormat) -> list[float] | str:
    if fmt is EncodingFormat.BASE64:
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()  # type: ignore[no-any-return]


def create_app(model: ServedModel, *, options: ServeOptions | None = None) -> Any:
    """A FastAPI app serving ``model`` under OpenAI's embeddings API, with ``options``
    (limits, API key, batching; default :class:`ServeOptions`)."""
    fastapi = require("fastapi", extra="serve", purpose="the embedding server")
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException
    from starlette.responses import Response

    options = options or ServeOptions()
    batcher: MicroBatcher[Encoded] = MicroBatcher(
        model.encode,
        max_batch_size=options.max_batch_size,
        max_wait_ms=options.max_wait_ms,
        workers=options.workers,
    )
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        async with batcher:
            await batcher.run_in_worker(lambda: model.encode(["warm-up"]))
            log.info(
                "serving %s: %d dims (accepted: %s), %d tokens per input",
                model.model_id,
                model.width,
                model.dims,
                model.max_seq_length,
            )
            yield

    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse, "description": what}
        for code, what in [
            (400, "invalid request or a limit exceeded"),
            (401, "missing or wrong API key"),
            (404, "unknown model"),
            (408, "request body not received in time"),
            (413, "request body too large"),
        ]
    }
    app = fastapi.FastAPI(
        title="geckokit serve",
        version="1",
        summary="OpenAI-compatible text embeddings",
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.add_middleware(
        Guard,
        api_key=options.api_key,
        max_body_bytes=options.max_body_bytes,
        body_timeout_s=options.body_timeout_s,
    )

    @app.exception_handler(APIError)
    async def apierror_response(_: Any, exc: APIError) -> Any:
        return error_response(
            exc.status, exc.detail.message, **exc.detail.model_dump(exclude={"message"})
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Any, exc: RequestValidationError) -> Any:
        message, param = _validation_message(list(exc.errors()))
        return error_response(400, message, param=param)

    @app.exception_handler(HTTPException)
    async def httperror_response(request: Any, exc: HTTPException) -> Any:
        if exc.status_code == 404:
            return error_response(
                404,
                f"Unknown request URL: {request.method} {request.url.path}.",
                code="unknown_url",
            )
        code = "method_not_allowed" if exc.status_code == 405 else None
        # a 405 carries the Allow header RFC 9110 asks for
        return error_response(exc.status_code, str(exc.detail), code=code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def crashed(_: Any, exc: Exception) -> Any:
        log.exception("unhandled error", exc_info=exc)
        return error_response(
            500, "The server had an error while processing your request.", type="server_error"
        )

    def card() -> ModelCard:
        return ModelCard(
            id=model.model_id,
            created=created,
            dimensions=model.dims,
            max_seq_length=model.max_seq_length,
        )

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        stats = batcher.stats
        return Health(
            model=model.model_id,
            batches=stats.batches,
            inputs=stats.inputs,
            queued=stats.queued,
        )

    @app.get("/v1/models", response_model=ModelList, responses={401: errors[401]})
    async def models() -> ModelList:
        return ModelList(data=[card()])

    @app.get(
        "/v1/models/{model_id:path}",
        response_model=ModelCard,
        responses={k: errors[k] for k in (401, 404)},
    )
    async def retrieve_model(model_id: str) -> ModelCard:
        if model_id != model.model_id:
            raise _not_found(model_id)
        return card()

    def _not_found(name: str) -> APIError:
        return APIError(
            404,
            f"The model `{name}` does not exist or you do not have access to it. "
            f"This server serves `{model.model_id}`.",
            param="model",
            code="model_not_found",
        )

    def texts_of(req: EmbeddingRequest) -> list[str]:
        texts = [req.input] if isinstance(req.input, str) else list(req.input)
        if not texts:
            raise APIError(
                400, "'input' is an empty list; send a text or a list of texts.", param="input"
            )
        if len(texts) > options.max_inputs:
            raise APIError(
                400,
                f"'input' has {len(texts)} texts; this server accepts at most "
                f"{options.max_inputs} per request.",
                param="input",
                code="too_many_inputs",
            )
        for i, text in enumerate(texts):
            where = "'input'" if isinstance(req.input, str) else f"input[{i}]"
            if not text:
                raise APIError(400, f"{where} is an empty string; send text.", param="input")
            problem = text_problem(text)
            if problem is not None:
                raise APIError(400, f"{where} {problem}.", param="input", code="invalid_text")
            if len(text) > options.max_chars:
                raise APIError(
                    400,
                    f"{where} has {len(text)} characters; this server accepts at most "
                    f"{options.max_chars} per text.",
                    param="input",
                    code="input_too_long",
                )
        try:
            return [
                format_input(t, task=req.task, input_type=req.input_type, plain=model.plain)
                for t in texts
            ]
        except ValueError as exc:
            raise APIError(400, str(exc), param="task") from exc

    @app.post(
        "/v1/embeddings",
        response_model=EmbeddingResponse,
        responses={k: errors[k] for k in (400, 401, 404, 408, 413)},
    )
    async def embeddings(req: EmbeddingRequest) -> Any:
        """Embed ``input``; see the field descriptions for geckokit's ``task``,
        ``input_type`` and ``truncated``."""
        if req.model is not None and req.model != model.model_id:
            raise _not_found(req.model)
        try:
            dim = model.check_dimensions(req.dimensions)
        except ValueError as exc:
            raise APIError(400, str(exc), param="dimensions") from exc
        texts = texts_of(req)
        results = await batcher.submit(texts)
        vectors = project(np.stack([r.embedding for r in results]), dim)  # (n, dim)
        tokens = sum(r.tokens for r in results)
        body = EmbeddingResponse(
            data=[
                Embedding(index=i, embedding=_encode_vector(v, req.encoding_format))
                for i, v in enumerate(vectors)
            ],
            model=model.model_id,
            usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
            truncated=[i for i, r in enumerate(results) if r.truncated],
        )
        return Response(body.model_dump_json(), media_type="application/json")

    _openapi(app, model, options)
    return app


def _openapi(app: Any, model: ServedModel, options: ServeOptions) -> None:
    """The OpenAPI schema states this server's limits (served model id, accepted dimensions,
    inputs per request, characters per text, no NUL in a text, no task on a document) and
    its bearer auth; FastAPI's default 422 validation response is dropped, as this server
    answers those errors with 400."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema  # type: ignore[no-any-return]
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        for path, item in schema.get("paths", {}).items():
            for operation in item.values():
                operation.get("responses", {}).pop("422", None)
                if options.api_key is not None and path.startswith("/v1/"):
                    operation["security"] = [{"bearer": []}]
        components = schema.setdefault("components", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.get("schemas", {}).pop(name, None)
        if options.api_key is not None:
            components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        fields = components["schemas"]["EmbeddingRequest"]["properties"]
        text = {
            "type": "string",
            "minLength": 1,
            "maxLength": options.max_chars,
            "pattern": TEXT_PATTERN,
        }
        texts = {"type": "array", "items": text, "minItems": 1, "maxItems": options.max_inputs}
        fields["input"]["anyOf"] = [text, texts]
        fields["model"]["anyOf"] = [{"type": "string", "enum": [model.model_id]}, {"type": "null"}]
        fields["dimensions"]["anyOf"] = [{"type": "integer", "enum": model.dims}, {"type": "null"}]
        fields["task"]["anyOf"][0]["pattern"] = TEXT_PATTERN
        # a task applies to queries: refused (400) with input_type document
        request = components["schemas"]["EmbeddingRequest"]
        request["not"] = {
            "required": ["task", "input_type"],
            "properties": {"task": {"type": "string"}, "input_type": {"const": "document"}},
        }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
