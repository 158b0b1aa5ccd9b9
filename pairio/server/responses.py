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


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A compact JSON response."""
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(body, status, headers, media_type="application/json")


def request_key(key: object, field: str) -> str:
    """A key from a request's ``field``, checked as every stored key is; a 400 if it is not one."""
    if not isinstance(key, str):
        raise ApiError(400, f"field {field!r} must be a string key")
    try:
        return key_string(key)
    except InvalidKeyError as exc:
        raise ApiError(400, f"field {field!r}: {exc}") from None
