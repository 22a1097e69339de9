"""What ``geckokit serve`` checks before routing (the API key, the body's size and how long it
takes to arrive) and the error responses it sends, in OpenAI's error body."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from geckokit.serve.protocol import APIError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: An answer sent before the whole body was read ends the connection: the rest is not read.
_CLOSE = {"Connection": "close"}


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


class _Refused(Exception):
    """The body broke a limit while the app was reading it."""


#: A body over the limit but at most this many times it is read (and dropped) before the 413:
#: closing a connection with unread data resets it, and the client would lose the answer.
DRAIN_FACTOR = 8


async def _drain(receive: Receive, seconds: float) -> None:
    """Read and drop what is left of a request body, for at most ``seconds``."""
    try:
        async with asyncio.timeout(max(0.0, seconds)):
            while True:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return
    except TimeoutError:
        return


class Guard:
    """ASGI middleware run before routing: the API key on /v1/ routes, then the body's size
    and the time it takes to arrive.

    A body announced (Content-Length) above the size limit is refused (413) without being
    parsed; a streamed one is counted as it arrives and the request answered 413 once it
    passes the limit. Either way the rest of a body up to :data:`DRAIN_FACTOR` times the
    limit is read and dropped first, so that the client reads the answer rather than a reset
    connection. A body not complete ``body_timeout_s`` after the request's headers is answered
    408 (a client that sends its body a few bytes at a time would otherwise hold its
    connection for as long as it likes). Both answers close the
    connection.
    """

    def __init__(
        self, app: Any, *, api_key: str | None, max_body_bytes: int, body_timeout_s: float
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.limit = max_body_bytes
        self.body_timeout = body_timeout_s

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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        if length.isdigit() and int(length) > self.limit:
            if int(length) <= DRAIN_FACTOR * self.limit:
                await _drain(receive, deadline - loop.time())
            await self._too_large()(scope, receive, send)
            return
        received = 0
        body_done = False
        refused: Any = None  # the answer, once the body broke a limit
        started = False

        async def counted() -> Message:
            nonlocal received, body_done, refused
            if body_done:
                return await receive()  # a disconnect, waited for by a streaming answer
            try:
                message = await asyncio.wait_for(receive(), deadline - loop.time())
            except TimeoutError:
                refused = self._timed_out(received)
                raise _Refused from None
            if message["type"] != "http.request":
                body_done = True  # the client went away
                return message
            received += len(message.get("body", b""))
            body_done = not message.get("more_body", False)
            if received > self.limit:
                refused = self._too_large()
                raise _Refused
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if refused is not None:
                return  # whatever the app made of the cut body, the answer is 413 or 408
            started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except _Refused:
            pass
        if refused is not None and not started:
            if not body_done and received <= DRAIN_FACTOR * self.limit:
                await _drain(receive, deadline - loop.time())
            await refused(scope, receive, send)

    def _timed_out(self, received: int) -> Any:
        return error_response(
            408,
            f"The request body did not arrive within this server's limit of "
            f"{self.body_timeout:g} s ({received} bytes received). Send the body without "
            "pauses.",
            code="request_timeout",
            headers=_CLOSE,
        )

    def _too_large(self) -> Any:
        return error_response(
            413,
            f"The request body is larger than this server's limit of {self.limit} bytes. "
            "Send fewer or shorter inputs per request.",
            code="request_too_large",
            headers=_CLOSE,
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
