"""A deadline for a request's headers, which uvicorn does not set.

uvicorn closes a connection idle between requests (its keep-alive timeout) and geckokit's
guard answers a body that arrives slowly with 408 (:mod:`geckokit.serve.guard`), but nothing
limits the time a client takes to send a request's line and headers: a client that connects
and sends nothing, or a header byte now and then, holds its connection for as long as it
likes, and enough of them hold all the server's file descriptors.

:func:`header_deadline_protocol` makes the HTTP protocol class uvicorn would choose (httptools
where installed, else h11) start a clock when a connection opens, and again when the first
bytes of a further request on it arrive; the clock stops once the request's headers are
complete. A connection whose headers are not complete when it runs out gets a bare
``408 Request Timeout`` and is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
)


def _answer(seconds: float) -> bytes:
    body = (
        b'{"error": {"message": "the request\'s headers did not arrive within this '
        b'server\'s limit of %s s", "type": "invalid_request_error", "param": null, '
        b'"code": "request_timeout"}}' % f"{seconds:g}".encode()
    )
    return _TIMEOUT_ANSWER % (len(body), body)


def header_deadline_protocol(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's automatic HTTP protocol class with a ``seconds`` deadline for each request's
    headers (see the module docstring); pass it as ``uvicorn.run(..., http=...)``."""
    if not seconds > 0:
        raise ValueError(f"the header deadline must be a positive number of seconds, got {seconds}")
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    answer = _answer(seconds)

    class HeaderDeadline(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        _header_clock: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._start_clock()

        def data_received(self, data: bytes) -> None:
            if self._header_clock is None and self._between_requests():
                self._start_clock()  # the first bytes of another request
            super().data_received(data)
            if not self._between_requests():
                self._stop_clock()  # its headers are complete: the request has begun

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_clock()
            super().connection_lost(exc)

        def _between_requests(self) -> bool:
            cycle = getattr(self, "cycle", None)
            return cycle is None or bool(cycle.response_complete)

        def _start_clock(self) -> None:
            self._stop_clock()
            self._header_clock = self.loop.call_later(seconds, self._out_of_time)

        def _stop_clock(self) -> None:
            if self._header_clock is not None:
                self._header_clock.cancel()
                self._header_clock = None

        def _out_of_time(self) -> None:
            self._header_clock = None
            if self.transport.is_closing() or not self._between_requests():
                return
            self.transport.write(answer)
            self.transport.close()

    return HeaderDeadline
