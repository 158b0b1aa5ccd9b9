"""Request checks shared by the routes: body size, signature, collection, permission, rate.

Each check raises :class:`ApiError` with the HTTP status and a message naming the
field or collection. No message contains a password or tells whether a channel
other than the caller's exists: an unknown channel and a wrong password give the
same 401.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import ClientDisconnect, Request

from ..signing import HEADER_CHANNEL, NonceCacheFull, SignatureError, verify_request
from .backends import Coordination, MemoryCoordination
from .metrics import note
from .ratelimit import retry_after_header
from .settings import CollectionSettings, ServerSettings

log = logging.getLogger("pairio.server")


class ApiError(Exception):
    """A request is refused with ``status`` and a JSON body ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def content_length(header: str) -> int:
    """The value of a Content-Length header: 400 unless it is digits, at most 20 of them (2**64 has
    20; int() of thousands of digits raises)."""
    if not (header.isascii() and header.isdigit()) or len(header.lstrip("0")) > 20:
        raise ApiError(400, "header Content-Length must be a non-negative integer of at most 20 digits")
    return int(header)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) one over ``limit`` bytes before reading it all."""
    length = request.headers.get("content-length")
    if length is not None and content_length(length) > limit:
        raise ApiError(413, f"request body is {length} bytes; the limit is {limit}")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def receive_body(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       limit: int) -> bytes:
    """:func:`read_body` straight from the ASGI ``receive`` (the hot path has no Request); raises
    ClientDisconnect if the client leaves first."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            length = value.decode("latin-1")
            if content_length(length) > limit:
                raise ApiError(413, f"request body is {length} bytes; the limit is {limit}")
            break
    message = await receive()
    if message["type"] != "http.request":
        raise ClientDisconnect()
    body = message.get("body", b"")
    if not message.get("more_body", False):  # the whole body in one message, as it nearly always comes
        if len(body) > limit:
            raise ApiError(413, f"request body is over the limit of {limit} bytes")
        return body
    chunks = [body]
    size = len(body)
    while True:
        if size > limit:
            raise ApiError(413, f"request body is over the limit of {limit} bytes")
        if not message.get("more_body", False):
            return b"".join(chunks)
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)


def signature_headers(scope: dict[str, Any]) -> dict[str, str]:
    """The request's ``x-pairio-*`` headers by lowercase name, the first of each name (as Starlette's
    ``Headers.get`` finds it): all :func:`pairio.signing.verify_request` reads."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name.startswith(b"x-pairio-"):
            found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


class Guard:
    """The server's security checks, over its passwords and its coordination backend
    (nonces seen, rate-limit buckets), which replicas may share."""

    def __init__(self, settings: ServerSettings, coordination: Coordination | None = None) -> None:
        self.settings = settings
        self.passwords = settings.passwords
        self.coordination = MemoryCoordination() if coordination is None else coordination

    def authenticate(self, request: Request, body: bytes, body_hash: str | None = None) -> str:
        """The channel that signed ``request``, or ApiError 401 (503 if the nonce cache is full).

        ``body_hash`` is the digest the body was signed with when it is not the SHA-256 of
        ``body`` (a content upload: its SHA-1, checked by the caller as the body arrives).
        """
        return self.authenticate_scope(request.scope, body, body_hash)

    def authenticate_scope(self, scope: dict[str, Any], body: bytes, body_hash: str | None = None) -> str:
        """:meth:`authenticate` for the request of an ASGI ``scope``."""
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        headers = signature_headers(scope)
        try:
            channel = verify_request(
                headers, self.passwords, scope["method"], path,
                scope["query_string"].decode("latin-1"), body, self.coordination.add_nonce,
                body_hash=body_hash,
            )
        except SignatureError as exc:
            # Who was refused, by the channel name claimed: never the signature or a password.
            log.warning("refused 401 %s %s for channel %s: %s", scope["method"], path,
                        _shown_channel(headers.get(HEADER_CHANNEL.lower())), exc)
            raise ApiError(401, f"authentication failed: {exc}") from None
        except NonceCacheFull as exc:
            log.warning("nonce cache full: %s", exc)
            raise ApiError(503, "server busy: too many requests in the replay window",
                           {"Retry-After": "10"}) from None
        note(scope, channel=channel)  # for the request's log line
        return channel

    def collection(self, channel: str, collection: object) -> CollectionSettings:
        """The channel's settings for ``collection``: 400 if malformed, 404 if not the channel's."""
        if not isinstance(collection, str) or not collection:
            raise ApiError(400, "field 'collection' must be a non-empty string")
        settings = self.settings.channels[channel].collections.get(collection)
        if settings is None:
            raise ApiError(404, f"collection {collection!r} is not available to channel {channel!r}")
        return settings

    def allow(self, channel: str, collection: CollectionSettings, operation: str, count: int = 1) -> None:
        """Check permission (403) and take ``count`` tokens from the rate limit (429).

        ``operation`` is ``'get'`` or ``'set'`` (deletes count as sets).
        """
        per_minute = (
            collection.max_gets_per_minute if operation == "get" else collection.max_sets_per_minute
        )
        if per_minute == 0:
            verb = "read" if operation == "get" else "write"
            log.warning("refused 403 for channel %s: may not %s collection %r", _shown_channel(channel), verb,
                        collection.name)
            raise ApiError(403, f"channel {channel!r} may not {verb} collection {collection.name!r}")
        # An empty batch is checked for permission but takes no tokens.
        wait = (self.coordination.take_tokens((channel, collection.name, operation), per_minute, count)
                if count else 0.0)
        if wait:
            raise ApiError(
                429,
                f"rate limit of {per_minute} {operation}s per minute for channel {channel!r} "
                f"on collection {collection.name!r} exceeded",
                {"Retry-After": retry_after_header(wait)},
            )


def _shown_channel(name: str | None) -> str:
    """A channel name for the log: quoted, cut short (it may be anything a client sent)."""
    if name is None:
        return "(none given)"
    return repr(name[:80] + ("..." if len(name) > 80 else ""))
