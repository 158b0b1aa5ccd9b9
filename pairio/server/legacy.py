"""The legacy protocols of older pairio and kachery clients; mounted only with ``"legacy": true``.

Pairs: ``GET /get/<collection>/<key>?channel=C&signature=S`` and
``GET /set/<collection>/<key>/<value>?channel=C&signature=S``, where S is
:func:`pairio.signing.legacy_signature`. Answers ``{"success": true, "value": V}``
or ``{"success": false, "error": ...}``.

Content, as the original kachery server: ``GET /check/sha1/<hash>`` (answers
``{"success": true, "found": bool, "size": n}``), ``GET /get/sha1/<hash>`` (the bytes,
with Range) and ``POST /set/sha1/<hash>`` (the body is the file), each with
``?channel=C&signature=S`` where S is :func:`pairio.signing.legacy_content_signature`.
md5 is refused with a 400 that says so.

The same permissions, limits and quotas apply as for the signed API. It is weaker
(no expiry, no nonce, a fast hash of the password in every URL): see server/README.md.
"""

from __future__ import annotations

import logging
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import InvalidInputError, InvalidKeyError, InvalidValueError, PairioError
from ..hashing import check_value, is_sha1_hex, key_string
from ..kv.base import KeyValueStore
from ..signing import NonceCacheFull, verify_legacy, verify_legacy_content
from .auth import ApiError, Guard
from .backends import ContentBackend
from .content import ContentApi
from .responses import json_response
from .settings import ServerSettings

log = logging.getLogger("pairio.server")

# How long a legacy set's URL is remembered, so that a replay of it is not applied again.
LEGACY_REPLAY_DAYS = 7


def legacy_routes(guard: Guard, store: KeyValueStore) -> list[Route]:
    """The two legacy routes, sharing ``guard`` (permissions, limits) and ``store``."""

    async def get(request: Request) -> Response:
        return _answer(request, guard, store, "get")

    async def set_(request: Request) -> Response:
        return _answer(request, guard, store, "set")

    setter = Route("/set/{collection}/{key}/{value}", set_, methods=["GET"])
    setter.methods = {"GET"}  # a set is a GET in this protocol: a HEAD must not write (405)
    return [Route("/get/{collection}/{key}", get, methods=["GET"]), setter]


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
            if not _first_use(guard, channel, signature):
                # The same URL again: harmless if the key still holds its value, else a replay of
                # an old set that would revert the key (a legacy URL carries no nonce or expiry).
                if store.get(collection.name, key) == value:
                    return json_response({"success": True})
                raise ApiError(409, "this signed set URL was already used: a legacy set is applied once "
                                    f"(within {LEGACY_REPLAY_DAYS} days); the key has changed since")
            store.set(collection.name, key, value)
            return json_response({"success": True})
        found = store.get(collection.name, key)
        if found is None:
            return json_response({"success": False, "error": "key not found"})
        return json_response({"success": True, "value": found})
    except ApiError as exc:
        return json_response({"success": False, "error": exc.message}, exc.status, exc.headers)
    except InvalidInputError as exc:  # bad input the store refused: never an outage
        return json_response({"success": False, "error": str(exc)}, 400)
    except PairioError as exc:
        log.error("store error: %s", exc)
        return json_response({"success": False, "error": "the server's store is unavailable"}, 503)


def _first_use(guard: Guard, channel: str, signature: str) -> bool:
    """Record a legacy set's signature (it names the collection, key and value) for
    LEGACY_REPLAY_DAYS; False if it was recorded already. 503 if the record is full."""
    expires_at = time.time() + LEGACY_REPLAY_DAYS * 86_400
    try:
        return guard.coordination.add_nonce(f"legacy-set:{channel}", signature, expires_at)
    except NonceCacheFull as exc:
        log.warning("nonce cache full (legacy sets): %s", exc)
        raise ApiError(503, "server busy: too many legacy sets in the replay window", {"Retry-After": "10"}) from None


def legacy_content_routes(settings: ServerSettings, guard: Guard, backend: ContentBackend) -> list[Route]:
    """The original kachery server's content routes (check, get with Range, set)."""
    api = ContentApi(settings, guard, backend)

    async def check(request: Request) -> Response:
        async def found(channel: str, sha1: str) -> Response:
            api.check_read(channel)
            size = await api.size(sha1)
            return json_response({"success": True, "found": size is not None, "size": size or 0})

        return await _content_answer(request, guard, "check", found)

    def download(algorithm: str):
        async def handle(request: Request) -> Response:
            async def send(channel: str, sha1: str) -> Response:
                api.check_read(channel)
                return await api.send(request, sha1)

            return await _content_answer(request, guard, "download", send, algorithm)

        return handle

    async def upload(request: Request) -> Response:
        async def receive(channel: str, sha1: str) -> Response:
            await api.receive(request, channel, sha1)
            return json_response({"success": True})

        return await _content_answer(request, guard, "upload", receive)

    # /get/sha1/... literally, ahead of the pair route /get/<collection>/<key>.
    return [
        Route("/check/{algorithm}/{hash}", check, methods=["GET"]),
        *(Route(f"/get/{algorithm}/{{hash}}", download(algorithm), methods=["GET"]) for algorithm in ("sha1", "md5")),
        Route("/set/{algorithm}/{hash}", upload, methods=["POST"]),
    ]


async def _content_answer(request: Request, guard: Guard, name: str, answer,
                          algorithm: str | None = None) -> Response:
    try:
        algorithm = algorithm or request.path_params["algorithm"]
        hash_ = request.path_params["hash"]
        if algorithm != "sha1":
            raise ApiError(400, f"algorithm {algorithm[:20]!r} is not supported: this server stores "
                                "content by SHA-1 only (use /{check,get,set}/sha1/<hash>)")
        if not is_sha1_hex(hash_):
            raise ApiError(400, f"{hash_[:60]!r} is not a SHA-1 (40 lowercase hex digits)")
        channel = request.query_params.get("channel", "")
        signature = request.query_params.get("signature", "")
        if not verify_legacy_content(guard.passwords.get(channel), signature, name, algorithm, hash_):
            raise ApiError(401, "authentication failed: invalid signature for this channel and request")
        return await answer(channel, hash_)
    except ApiError as exc:
        return json_response({"success": False, "error": exc.message}, exc.status, exc.headers)
    except PairioError as exc:
        log.error("content backend error: %s", exc)
        return json_response({"success": False, "error": "the server's content store is unavailable"}, 503)
