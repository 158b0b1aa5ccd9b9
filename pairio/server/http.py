"""The server's HTTP protocol: uvicorn's, with the request head bounded, and each response's head
written with its body (:class:`OneWriteCycle`).

A request whose head (request line and headers) passes :data:`MAX_HEADER_BYTES` is answered 431 as
soon as that many bytes came without the blank line that ends a head, and its connection is
closed: the rest is never read nor kept (httptools, which uvicorn uses when installed, has no such
limit of its own; importing this module needs it). Without httptools, uvicorn's h11 protocol is given the same bound.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from .settings import MAX_HEADER_BYTES

_END_OF_HEAD = b"\r\n\r\n"
# After a 431, at most this long and this many bytes are dropped before the connection is closed.
_LINGER_S = 2.0
_LINGER_BYTES = 1 << 20

logger = logging.getLogger("pairio.server")


class HeadLimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering 431 to a request head over MAX_HEADER_BYTES."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._head_tail = b""  # the last bytes of the head so far: a terminator may straddle two reads
        self._discarded: int | None = None  # bytes dropped since the 431, while the client reads it

    def data_received(self, data: bytes) -> None:  # noqa: D102
        if self._discarded is not None:
            self._discarded += len(data)  # after a 431: dropped, never parsed nor kept
            if self._discarded > _LINGER_BYTES:
                self.transport.close()
            return
        if self._in_head:
            allowed = MAX_HEADER_BYTES - self._head_bytes
            if len(data) > allowed and _END_OF_HEAD not in self._head_tail + data[:allowed + len(_END_OF_HEAD)]:
                self._refuse_head()
                return
            self._head_bytes += len(data)
            self._head_tail = data[-3:]
        super().data_received(data)

    def on_headers_complete(self) -> None:  # noqa: D102
        self._in_head = False
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not previous and type(self.cycle) is RequestResponseCycle:
            # Not yet started (its task runs later): its response goes out in one write.
            self.cycle.__class__ = OneWriteCycle

    def on_message_complete(self) -> None:  # noqa: D102
        super().on_message_complete()
        self._in_head, self._head_bytes, self._head_tail = True, 0, b""

    def _refuse_head(self) -> None:
        body = json.dumps({"error": f"request headers over {MAX_HEADER_BYTES} bytes in all"}).encode()
        logger.warning("refused a request whose headers pass %d bytes (431), from %s", MAX_HEADER_BYTES,
                       self.client)
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                             b"content-type: application/json\r\n"
                             b"content-length: " + str(len(body)).encode() + b"\r\n"
                             b"connection: close\r\n\r\n" + body)
        # Closed with unread bytes, a connection is reset, and the client may lose the answer: the
        # sending side is closed, what still comes is dropped for a moment, then the connection closed.
        self._in_head = False
        self._discarded = 0
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(_LINGER_S, self.transport.close)


class OneWriteCycle(RequestResponseCycle):
    """uvicorn's request/response cycle, writing a response's head with its first body bytes.

    uvicorn writes the status line and headers, then each body part, each with a write to the
    socket: two system calls and two TCP segments for a small JSON answer, which the client reads
    with two wake-ups. Here the head is held until the first body part (or the end of the
    response, or the connection's close) and written with it.
    """

    _held: bytes | None = None

    async def send(self, message: Any) -> None:  # noqa: D102
        if self._held is None and not self.response_started and message.get("type") == "http.response.start":
            transport = self.transport
            holding = _HoldingTransport(transport)
            self.transport = holding  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = transport
            self._held = holding.held
            return
        held, self._held = self._held, None
        if held is None:
            await super().send(message)
            return
        transport = self.transport
        joining = _JoiningTransport(transport, held)
        self.transport = joining  # type: ignore[assignment]
        try:
            await super().send(message)
        finally:
            self.transport = transport
            joining.flush()  # the head, if no body bytes came (a HEAD request, an empty body)


class _HoldingTransport:
    """A transport whose writes are kept (the response head), everything else the real one's."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self.held = b""

    def write(self, data: bytes) -> None:
        self.held += data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _JoiningTransport:
    """A transport whose first write is prefixed with the held head; closing writes the head first."""

    def __init__(self, transport: Any, held: bytes) -> None:
        self._transport = transport
        self._held: bytes | None = held

    def write(self, data: bytes) -> None:
        held, self._held = self._held, None
        self._transport.write(data if held is None else held + data)

    def flush(self) -> None:
        if self._held is not None:
            self.write(b"")

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
