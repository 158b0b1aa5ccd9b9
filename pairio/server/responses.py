"""What every route module shares: the API's path prefix, the handler type, JSON responses
and a request's key checked."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..errors import InvalidKeyError
from ..hashing import key_string
from .auth import ApiError

API = "/api/v1"
Handler = Callable[[Request], Awaitable[Response]]

# One encoder for every response: json.dumps with options builds a new one per call.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_JSON_TYPE = (b"content-type", b"application/json")


class JSONResponse(Response):
    """A response of JSON already encoded, its headers built directly (the hot path answers one for
    every request: Starlette's ``Response.__init__`` is general and slower)."""

    media_type = "application/json"

    def __init__(self, body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> None:
        if headers:
            super().__init__(body, status, headers, media_type="application/json")
            return
        self.status_code = status
        self.background = None
        self.body = body
        self.raw_headers = [(b"content-length", str(len(body)).encode("latin-1")), _JSON_TYPE]


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A compact JSON response."""
    return JSONResponse(_ENCODE(obj).encode("utf-8"), status, headers)


def request_key(key: object, field: str) -> str:
    """A key from a request's ``field``, checked as every stored key is; a 400 if it is not one."""
    if not isinstance(key, str):
        raise ApiError(400, f"field {field!r} must be a string key")
    try:
        return key_string(key)
    except InvalidKeyError as exc:
        raise ApiError(400, f"field {field!r}: {exc}") from None
