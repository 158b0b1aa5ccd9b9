"""The keys kept beside a cached result's pair: derived from its key, so that every layer that
keeps, moves or removes a result (memo, lifecycle, sync) finds them without importing memo.

A side key is its result key's first 32 hex digits and 8 of a hash of the key and what the side
pair holds. Stores keep pairs in key order (an SQLite b-tree, a PostgreSQL index), so a result's
pair and its side pairs are neighbours: a miss writes one page of the table, not one per pair.
Two keys share 32 hex digits (128 bits) with odds of one in 2**128 per pair of keys.

Stores written by earlier pairio versions hold side pairs under a whole hash of the key
(:func:`earlier_key`): they are read where the new key is absent (:func:`read_sides`), and moved
and removed with their result (:func:`side_keys`), so no entry loses its seconds or digest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from .hashing import sha1_hex

_SECONDS = b"pairio.cached/seconds\0"
_ARGUMENT = b"pairio.cached/argument\0"
_TYPES = b"pairio.cached/types\0"


def seconds_key(key: str) -> str:
    """The key under which the seconds a result took to compute are kept, beside ``key``."""
    return key[:32] + sha1_hex(_SECONDS + key.encode("ascii"))[:8]


def argument_key(key: str) -> str:
    """The key under which a result's size and argument digest are kept, beside ``key``."""
    return key[:32] + sha1_hex(_ARGUMENT + key.encode("ascii"))[:8]


def types_key(key: str) -> str:
    """The key under which the non-builtin types of a result (``module:qualname,...``) are kept."""
    return key[:32] + sha1_hex(_TYPES + key.encode("ascii"))[:8]


_TAGS = {seconds_key: _SECONDS, argument_key: _ARGUMENT, types_key: _TYPES}


def earlier_key(side: Callable[[str], str], key: str) -> str:
    """Where pairio kept ``side(key)`` before side keys were neighbours of their result's key
    (``side`` is :func:`seconds_key`, :func:`argument_key` or :func:`types_key`)."""
    return sha1_hex(_TAGS[side] + key.encode("ascii"))


def asked_keys(side: Callable[[str], str], key: str) -> tuple[str, str]:
    """Both keys the side pair ``side`` of ``key`` may be under, to ask for at once where a second
    request costs a round trip (see :func:`side_value`)."""
    return side(key), earlier_key(side, key)


def read_sides(get_many: Callable[[list[str]], Mapping[str, str]], side: Callable[[str], str],
               keys: Iterable[str]) -> dict[str, str]:
    """``key -> value`` of the side pair ``side`` of each of ``keys`` that has one, read by
    ``get_many`` (a list of keys -> the values found). A pair under its key is read in one call;
    the keys earlier versions used are asked for in a second only for those not found there."""
    named = {side(key): key for key in keys}
    out = {named[k]: v for k, v in get_many(list(named)).items() if k in named}
    if len(out) < len(named):
        earlier = {earlier_key(side, key): key for key in named.values() if key not in out}
        out.update((earlier[k], v) for k, v in get_many(list(earlier)).items() if k in earlier)
    return out


def side_value(found: Mapping[str, str], side: Callable[[str], str], key: str) -> str | None:
    """The side pair ``side`` of ``key`` in ``found`` (what a store gave for both its key and
    :func:`earlier_key`, asked at once: a server's lookup): under its key, else under the earlier."""
    value = found.get(side(key))
    return value if value is not None else found.get(earlier_key(side, key))


def side_keys(key: str) -> list[str]:
    """The keys stored beside a result's pair ``key``: its seconds, its size and argument digest,
    its types (removed and moved with it), each also under the key earlier versions used."""
    return [seconds_key(key), argument_key(key), types_key(key),
            *(earlier_key(side, key) for side in _TAGS)]
