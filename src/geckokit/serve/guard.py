"""What ``geckokit serve`` checks before routing (the API key, the body size) and the error responses it sends, in OpenAI's error body."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from geckokit.serve.protocol import APIError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def printable(text: str) -> str:
    """``text`` with whatever cannot be encoded as UTF-8 (lone surrogates) spelt as a Python
    escape (``\\ud800``), so that an error message quoting a client's value can be sent."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_response(
    status: int, message: str, *, headers: Mapping[str, str] | None = None, **fields: Any
) -> Any:
    """A JSON response with OpenAI's error body for ``status`` (401s add WWW-Authenticate).
    Quoted values in ``message`` and the fields may hold anything a client sent."""
    from starlette.responses import JSONResponse

    fields = {k: printable(v) if isinstance(v, str) else v for k, v in fields.items()}
    err = APIError(status, printable(message), **fields)
    extra = dict(headers or {})
    if status == 401:
        extra["WWW-Authenticate"] = "Bearer"
    return JSONResponse(err.body(), status_code=status, headers=extra or None)


class _BodyTooLarge(Exception):
    pass


class Guard:
    """ASGI middleware run before routing: the API key on /v1/ routes, then the body size.

    A body announced (Content-Length) above the limit is refused unread; a streamed one is
    counted as it arrives and the request answered 413 once it passes the limit.
    """

    def __init__(self, app: Any, *, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.api_key = api_key
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self.api_key is not None and scope["path"].startswith("/v1/"):
            refusal = self._check_key(headers.get(b"authorization"))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            await self._too_large()(scope, receive, send)
            return
        received = 0
        too_large = False
        started = False

        async def counted() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if too_large:
                return  # whatever the app made of the cut body, the answer is 413
            started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except _BodyTooLarge:
            pass
        if too_large and not started:
            await self._too_large()(scope, receive, send)

    def _too_large(self) -> Any:
        return error_response(
            413,
            f"The request body is larger than this server's limit of {self.limit} bytes. "
            "Send fewer or shorter inputs per request.",
            code="request_too_large",
        )

    def _check_key(self, header: bytes | None) -> Any:
        if not header:
            return error_response(
                401,
                "You didn't provide an API key. Send it in an Authorization header with "
                "Bearer auth (Authorization: Bearer YOUR_KEY).",
                code="missing_api_key",
            )
        scheme, _, token = header.decode("latin-1").partition(" ")
        expected = (self.api_key or "").encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
            return error_response(401, "Incorrect API key provided.", code="invalid_api_key")
        return None
