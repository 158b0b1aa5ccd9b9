"""The legacy protocol of older pairio clients; mounted only with ``"legacy": true``.

``GET /get/<collection>/<key>?channel=C&signature=S`` and
``GET /set/<collection>/<key>/<value>?channel=C&signature=S``, where S is
:func:`pairio.signing.legacy_signature`. Answers ``{"success": true, "value": V}``
or ``{"success": false, "error": ...}``. The same permissions and rate limits
apply as for the signed API. It is weaker (no expiry, no nonce, a fast hash of
the password in every URL): see server/README.md.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import InvalidKeyError, InvalidValueError, PairioError
from ..hashing import check_value, key_string
from ..kv.base import KeyValueStore
from ..signing import verify_legacy
from .app import json_response
from .auth import ApiError, Guard

log = logging.getLogger("pairio.server")


def legacy_routes(guard: Guard, store: KeyValueStore) -> list[Route]:
    """The two legacy routes, sharing ``guard`` (permissions, limits) and ``store``."""

    async def get(request: Request) -> Response:
        return _answer(request, guard, store, "get")

    async def set_(request: Request) -> Response:
        return _answer(request, guard, store, "set")

    return [
        Route("/get/{collection}/{key}", get, methods=["GET"]),
        Route("/set/{collection}/{key}/{value}", set_, methods=["GET"]),
    ]


def _answer(request: Request, guard: Guard, store: KeyValueStore, name: str) -> Response:
    try:
        params = request.path_params
        collection_name, key = params["collection"], params["key"]
        value = params.get("value")
        channel = request.query_params.get("channel", "")
        signature = request.query_params.get("signature", "")
        if not verify_legacy(guard.passwords.get(channel), signature, name, collection_name, key, value):
            raise ApiError(401, "authentication failed: invalid signature for this channel and request")
        collection = guard.collection(channel, collection_name)
        try:
            key = key_string(key)
            if value is not None:
                value = check_value(value, key)
        except (InvalidKeyError, InvalidValueError) as exc:  # lone surrogates included
            raise ApiError(400, str(exc)) from None
        guard.allow(channel, collection, name)
        if name == "set":
            store.set(collection.name, key, value)
            return json_response({"success": True})
        found = store.get(collection.name, key)
        if found is None:
            return json_response({"success": False, "error": "key not found"})
        return json_response({"success": True, "value": found})
    except ApiError as exc:
        return json_response({"success": False, "error": exc.message}, exc.status, exc.headers)
    except PairioError as exc:
        log.error("store error: %s", exc)
        return json_response({"success": False, "error": "the server's store is unavailable"}, 503)
