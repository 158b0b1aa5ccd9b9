"""Lease routes: one computation per cache key across every client of the server.

A client about to compute a key that is missing everywhere asks for the key's lease
(``lease/acquire``); the server answers with the value if the key has one by now
(nothing is leased then), or grants the lease, or names the current holder. The
holder renews it (``lease/renew``) while it computes and gives it up
(``lease/release``) once the result is stored; a holder that dies stops renewing and
its lease expires. ``GET leases`` lists the leases held in the caller's collections.

A lease is scoped by collection: its name in the coordination backend is the SHA-1
of the collection and the key, so any backend can store it. The owner token a client
sends is kept as ``<channel>/<token>`` and never shown to others: only its holder can
renew or release a lease. Acquiring, renewing and releasing need the right to set
keys in the collection (a channel that cannot store the result has nothing to
compute for others) and each counts as one set against ``maxNumSetsPerMinute``;
listing needs the right to get.

A lease saves time; it never decides what is true: results are content-addressed and
the first stored value wins, so a lease that expires under a holder that was only
slow costs a duplicate computation, never a wrong result.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from ..hashing import sha1_hex
from ..kv.base import KeyValueStore
from .auth import ApiError, Guard
from .backends import Lease
from .responses import API, Handler, json_response, request_key

MIN_TTL_S = 0.5
MAX_TTL_S = 3600.0
MAX_OWNER_LENGTH = 64
MAX_INFO_BYTES = 1024


def lease_name(collection: str, key: str) -> str:
    """The name of ``key``'s lease in ``collection``, as the coordination backend keeps it."""
    return sha1_hex(json.dumps(["pairio.lease", collection, key]).encode("utf-8"))


def lease_routes(endpoint: Callable[[Callable[[str, Any], Response]], Handler], guard: Guard,
                 store: KeyValueStore) -> list[Route]:
    """The lease routes, each wrapped by ``endpoint`` (body size, signature, errors)."""
    leases = _Leases(guard, store)
    return [
        Route(f"{API}/lease/acquire", endpoint(leases.acquire), methods=["POST"]),
        Route(f"{API}/lease/renew", endpoint(leases.renew), methods=["POST"]),
        Route(f"{API}/lease/release", endpoint(leases.release), methods=["POST"]),
        Route(f"{API}/leases", endpoint(leases.list), methods=["GET"]),
    ]


class _Leases:
    def __init__(self, guard: Guard, store: KeyValueStore) -> None:
        self.guard = guard
        self.store = store
        self.coordination = guard.coordination

    def acquire(self, channel: str, obj: dict) -> Response:
        collection = self.guard.collection(channel, obj.get("collection"))
        key = _lease_key(obj.get("key"))
        owner = _owner(channel, obj.get("owner"))
        ttl = _ttl(obj.get("ttl"))
        info = _info(obj.get("info"))
        self.guard.allow(channel, collection, "set")
        # Done already? Then there is nothing to lease: the caller reads the value instead.
        if collection.max_gets_per_minute > 0:
            value = self.store.get(collection.name, key)
            if value is not None:
                return json_response({"held": False, "value": value, "lease": None})
        info = {**info, "channel": channel, "collection": collection.name, "key": key}
        lease = self.coordination.acquire_lease(lease_name(collection.name, key), owner, info, ttl)
        return json_response({"held": lease.owner == owner, "value": None, "lease": _public(lease)})

    def renew(self, channel: str, obj: dict) -> Response:
        collection = self.guard.collection(channel, obj.get("collection"))
        key = _lease_key(obj.get("key"))
        owner = _owner(channel, obj.get("owner"))
        ttl = _ttl(obj.get("ttl"))
        self.guard.allow(channel, collection, "set")
        lease = self.coordination.renew_lease(lease_name(collection.name, key), owner, ttl)
        return json_response({"held": lease is not None,
                              "expires_at": None if lease is None else lease.expires_at})

    def release(self, channel: str, obj: dict) -> Response:
        collection = self.guard.collection(channel, obj.get("collection"))
        key = _lease_key(obj.get("key"))
        owner = _owner(channel, obj.get("owner"))
        self.guard.allow(channel, collection, "set")
        released = self.coordination.release_lease(lease_name(collection.name, key), owner)
        return json_response({"released": released})

    def list(self, channel: str, obj: None) -> Response:  # noqa: A003
        readable = {name for name, c in self.guard.settings.channels[channel].collections.items()
                    if c.max_gets_per_minute > 0}
        now = time.time()
        held = [_public(lease, now) for lease in self.coordination.leases(now)
                if lease.info.get("collection") in readable]
        return json_response({"now": now, "leases": held})


def _public(lease: Lease, now: float | None = None) -> dict[str, Any]:
    """A lease as others may see it: who holds it, since and until when; never the owner token."""
    info = dict(lease.info)
    out = {"collection": info.pop("collection", None), "key": info.pop("key", None),
           "channel": info.pop("channel", None), "info": info,
           "acquired_at": lease.acquired_at, "expires_at": lease.expires_at}
    if now is not None:
        out["age"] = now - lease.acquired_at
    return out


def _lease_key(key: object) -> str:
    """A lease's key: a key (see :func:`pairio.server.responses.request_key`) without a NUL character, which the
    leases' records on PostgreSQL cannot hold (refused on every backend alike)."""
    checked = request_key(key, "key")
    if "\0" in checked:
        raise ApiError(400, "field 'key': a lease's key may not contain a NUL character (U+0000)")
    return checked


def _plain_text(text: str) -> bool:
    """True if ``text`` has no NUL and encodes as UTF-8 (no lone surrogate)."""
    if "\0" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _owner(channel: str, owner: object) -> str:
    if not (isinstance(owner, str) and 16 <= len(owner) <= MAX_OWNER_LENGTH
            and owner.isascii() and owner.isalnum()):
        raise ApiError(400, f"field 'owner' must be 16 to {MAX_OWNER_LENGTH} ASCII letters and digits "
                            "(a random token unique to one computation)")
    return f"{channel}/{owner}"


def _ttl(ttl: object) -> float:
    if (isinstance(ttl, bool) or not isinstance(ttl, (int, float))
            or not MIN_TTL_S <= ttl <= MAX_TTL_S):
        raise ApiError(400, f"field 'ttl' must be a number of seconds from {MIN_TTL_S:g} to {MAX_TTL_S:g}")
    return float(ttl)


def _info(info: object) -> dict[str, Any]:
    """Who the holder is, for people: a flat object of short strings and numbers."""
    if info is None:
        return {}
    if not isinstance(info, dict):
        raise ApiError(400, "field 'info' must be an object (host, pid, function)")
    for name, value in info.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or name in (
                "channel", "collection", "key"):
            raise ApiError(400, f"field 'info.{name[:40]}' must be a string or a number, and not a reserved "
                                "name (channel, collection, key)")
        if not all(_plain_text(text) for text in (name, value) if isinstance(text, str)):
            raise ApiError(400, f"field 'info.{name[:40]!r}': names and strings may not contain a NUL "
                                "character (U+0000) or a lone surrogate")
        if isinstance(value, float) and not math.isfinite(value):
            raise ApiError(400, f"field 'info.{name[:40]}' must be a finite number")
    if len(json.dumps(info)) > MAX_INFO_BYTES:
        raise ApiError(400, f"field 'info' is over {MAX_INFO_BYTES} bytes as JSON")
    return info
