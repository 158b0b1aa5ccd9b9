"""The content routes: files by SHA-1, streamed both ways, with the channels' content rights.

``POST /api/v1/content/missing``        which of up to 10,000 SHA-1s the server lacks
``HEAD|GET /api/v1/content/sha1/<h>``   one object (GET honours a single ``Range``: 206)
``PUT /api/v1/content/sha1/<h>``        one object, signed with ``<h>`` as the body's digest

Requests are signed as for the pairs (:mod:`pairio.signing`). A PUT is refused before
its body is read when the channel may not write, when ``Content-Length`` is over the
channel's ``maxObjectBytes`` or when it would pass ``maxUploadBytesPerDay`` (429 with
Retry-After); then the body is hashed as it arrives and nothing is stored unless it
hashes to ``<h>`` and stays within the limit. Memory is constant for any size: the body
goes to the backend a buffer at a time, and a GET streams the backend's chunks.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from itertools import chain

from anyio import to_thread
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..errors import ContentNotFoundError, CorruptContentError, PairioError
from ..hashing import is_sha1_hex
from .auth import ApiError, Guard, content_length, read_body
from .backends import ContentBackend, Upload
from .ratelimit import retry_after_header
from .responses import API, json_response
from .settings import MAX_PAIRS_PER_REQUEST, ContentRights, ServerSettings

log = logging.getLogger("pairio.server")

MAX_SHA1S_PER_REQUEST = MAX_PAIRS_PER_REQUEST
# Bytes received are handed to the backend (in a worker thread) this many at a time.
_WRITE_BUFFER = 1 << 20
# The digits a Range position may have: 2**64 has 20. Longer ones are refused (416).
MAX_RANGE_DIGITS = 20
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")


def content_routes(settings: ServerSettings, guard: Guard, backend: ContentBackend,
                   moved: Callable[[str, int, int], None] | None = None) -> list[Route]:
    """The signed content routes, sharing ``guard`` (signatures, quotas) with the pair routes.
    ``moved(channel, bytes up, bytes down)`` is told of each object received and sent."""
    api = ContentApi(settings, guard, backend, moved)
    return [
        Route(f"{API}/content/missing", api.missing, methods=["POST"]),
        Route(f"{API}/content/sha1/{{sha1}}", api.get, methods=["GET"]),  # HEAD too
        Route(f"{API}/content/sha1/{{sha1}}", api.put, methods=["PUT"]),
    ]


class ContentApi:
    """The checks and the streaming shared by the signed routes and the legacy kachery ones."""

    def __init__(self, settings: ServerSettings, guard: Guard, backend: ContentBackend,
                 moved: Callable[[str, int, int], None] | None = None) -> None:
        self.settings = settings
        self.guard = guard
        self.backend = backend
        self.moved = moved

    # --- signed routes ---------------------------------------------------------------

    async def missing(self, request: Request) -> Response:
        try:
            body = await read_body(request, self.settings.max_body_bytes)
            channel = self.guard.authenticate(request, body)
            rights = self.rights(channel)
            if not (rights.read or rights.write):
                raise ApiError(403, f"channel {channel!r} may not read or write content")
            try:
                obj = json.loads(body)
            except (ValueError, RecursionError):
                raise ApiError(400, "request body is not valid JSON") from None
            sha1s = obj.get("sha1s") if isinstance(obj, dict) else None
            if not isinstance(sha1s, list):
                raise ApiError(400, "field 'sha1s' must be a list of SHA-1s (40 lowercase hex digits)")
            if len(sha1s) > MAX_SHA1S_PER_REQUEST:
                raise ApiError(400, f"field 'sha1s' has {len(sha1s)} entries; the limit is "
                                    f"{MAX_SHA1S_PER_REQUEST} a request")
            for i, sha1 in enumerate(sha1s):
                if not is_sha1_hex(sha1):
                    raise ApiError(400, f"field 'sha1s[{i}]' must be a SHA-1 (40 lowercase hex digits)")
            missing = await to_thread.run_sync(self.backend.missing, sha1s)
            return json_response({"missing": missing})
        except ApiError as exc:
            return json_response({"error": exc.message}, exc.status, exc.headers)
        except PairioError as exc:
            return _unavailable(exc)

    async def get(self, request: Request) -> Response:
        try:
            body = await read_body(request, self.settings.max_body_bytes)
            channel = self.guard.authenticate(request, body)
            sha1 = _sha1(request.path_params["sha1"])
            self.check_read(channel)
            response = await self.send(request, sha1)
            if self.moved is not None and request.scope["method"] == "GET":
                self.moved(channel, 0, int(response.headers.get("content-length", 0)))
            return response
        except ApiError as exc:
            return json_response({"error": exc.message}, exc.status, exc.headers)
        except PairioError as exc:
            return _unavailable(exc)

    async def put(self, request: Request) -> Response:
        try:
            # The body's digest is the content's SHA-1 (the path's), checked as the body arrives.
            channel = self.guard.authenticate(request, b"", body_hash=request.path_params["sha1"])
            sha1 = _sha1(request.path_params["sha1"])
            size = await self.receive(request, channel, sha1)
            if self.moved is not None:
                self.moved(channel, size, 0)
            return json_response({"sha1": sha1, "size": size})
        except ApiError as exc:
            return json_response({"error": exc.message}, exc.status, exc.headers)
        except PairioError as exc:
            return _unavailable(exc)

    # --- shared by both protocols ---------------------------------------------------------

    def rights(self, channel: str) -> ContentRights:
        return self.settings.channels[channel].content

    def check_read(self, channel: str) -> None:
        if not self.rights(channel).read:
            raise ApiError(403, f"channel {channel!r} may not read content (readContent is false)")

    async def size(self, sha1: str) -> int | None:
        return await to_thread.run_sync(self.backend.size, sha1)

    async def send(self, request: Request, sha1: str) -> Response:
        """The object, or the bytes its Range asks for; 404 before any header if it is absent."""
        size = await self.size(sha1)
        if size is None:
            raise ApiError(404, f"object {sha1} is not on this server")
        start, stop = 0, size
        status = 200
        headers = {"Accept-Ranges": "bytes", "ETag": f'"{sha1}"'}
        wanted = _parse_range(request.headers.get("range"), size)
        if wanted is not None:
            start, stop = wanted
            status = 206
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        headers["Content-Length"] = str(stop - start)
        if request.scope["method"] == "HEAD":
            return Response(b"", status, headers, media_type="application/octet-stream")
        chunks = await to_thread.run_sync(self.backend.read, sha1, start, stop)
        # The first chunk is read before the headers go out: an object that cannot be read
        # is an error status, never a 200 followed by a short body.
        first = await to_thread.run_sync(next, chunks, b"")
        return StreamingResponse(chain((first,), chunks), status, headers,
                                 media_type="application/octet-stream")

    async def receive(self, request: Request, channel: str, sha1: str) -> int:
        """Store the request's body as ``sha1`` for ``channel``, within its rights; the object's size."""
        rights = self.rights(channel)
        if not rights.write:
            raise ApiError(403, f"channel {channel!r} may not write content (writeContent is false)")
        limit = rights.max_object_bytes
        raw = request.headers.get("content-length")
        length = None
        if raw is not None:
            length = content_length(raw)
            if length > limit:
                raise ApiError(413, f"object is {length} bytes; channel {channel!r} may upload objects "
                                    f"of at most maxObjectBytes={limit}")
            self.count_upload(channel, length, rights)
        upload = await to_thread.run_sync(self.backend.upload, sha1)
        try:
            received = await self._stream_into(upload, request, channel, rights, counted=length is not None)
            if length is not None and received != length:
                raise ApiError(400, f"body has {received} bytes; Content-Length announced {length}")
            return await to_thread.run_sync(upload.commit)
        except CorruptContentError:
            raise ApiError(400, f"body does not hash to {sha1}: nothing was stored") from None
        except ClientDisconnect:
            raise ApiError(400, "the client stopped sending before the end of the body: "
                                "nothing was stored") from None
        finally:
            upload.abort()  # nothing once committed

    async def _stream_into(self, upload: Upload, request: Request, channel: str, rights: ContentRights,
                           counted: bool) -> int:
        limit = rights.max_object_bytes
        received = 0
        buffer = bytearray()
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise ApiError(413, f"body is over maxObjectBytes={limit}, the largest object channel "
                                    f"{channel!r} may upload: nothing was stored")
            if not counted and chunk:  # no Content-Length: count the bytes as they come
                self.count_upload(channel, len(chunk), rights)
            buffer += chunk
            if len(buffer) >= _WRITE_BUFFER:
                await to_thread.run_sync(upload.write, bytes(buffer))
                buffer.clear()
        if buffer:
            await to_thread.run_sync(upload.write, bytes(buffer))
        return received

    def count_upload(self, channel: str, nbytes: int, rights: ContentRights) -> None:
        quota = rights.max_upload_bytes_per_day
        wait = self.guard.coordination.add_upload_bytes(channel, nbytes, quota)
        if wait:
            used = self.guard.coordination.uploaded_today(channel)
            raise ApiError(429, f"daily upload quota of channel {channel!r} exceeded: "
                                f"maxUploadBytesPerDay={quota}, {used} bytes uploaded today (UTC), "
                                f"{nbytes} more asked", {"Retry-After": retry_after_header(wait)})


def _sha1(text: str) -> str:
    if not is_sha1_hex(text):
        raise ApiError(400, f"{text[:60]!r} in the path is not a SHA-1 (40 lowercase hex digits)")
    return text


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, stop)`` for a single byte range, None to send everything; 416 if unsatisfiable.

    A header that is not one ``bytes=`` range is ignored, as RFC 9110 allows.
    """
    if header is None:
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if len(first) > MAX_RANGE_DIGITS or len(last) > MAX_RANGE_DIGITS:
        # No object is that large; and int() of thousands of digits would raise (or take long).
        raise ApiError(416, f"range {header[:60]!r}: a position has more than {MAX_RANGE_DIGITS} digits",
                       {"Content-Range": f"bytes */{size}"})
    if not first:  # bytes=-N: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise _unsatisfiable(header, size)
        return max(size - n, 0), size
    start = int(first)
    stop = size if not last else min(int(last) + 1, size)
    if start >= size or stop <= start:
        raise _unsatisfiable(header, size)
    return start, stop


def _unsatisfiable(header: str, size: int) -> ApiError:
    return ApiError(416, f"range {header[:60]!r} is outside the object's {size} bytes",
                    {"Content-Range": f"bytes */{size}"})


def _unavailable(exc: PairioError) -> Response:
    # The backend failed: log the detail, keep paths private. A missing object found only
    # now (removed between the size and the read) is still a 404.
    if isinstance(exc, ContentNotFoundError):
        return json_response({"error": "object is not on this server"}, 404)
    log.error("content backend error: %s", exc)
    return json_response({"error": "the server's content store is unavailable"}, 503)

