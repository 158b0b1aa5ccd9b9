"""The keys kept beside a cached result's pair: derived from its key, so that every layer that
keeps, moves or removes a result (memo, lifecycle, sync) finds them without importing memo."""

from __future__ import annotations

from .hashing import sha1_hex


def seconds_key(key: str) -> str:
    """The key under which the seconds a result took to compute are kept, beside ``key``."""
    return sha1_hex(b"pairio.cached/seconds\0" + key.encode("ascii"))


def argument_key(key: str) -> str:
    """The key under which a result's size and argument digest are kept, beside ``key``."""
    return sha1_hex(b"pairio.cached/argument\0" + key.encode("ascii"))


def types_key(key: str) -> str:
    """The key under which the non-builtin types of a result (``module:qualname,...``) are kept."""
    return sha1_hex(b"pairio.cached/types\0" + key.encode("ascii"))


def side_keys(key: str) -> list[str]:
    """The keys stored beside a result's pair ``key``: its seconds, its size and argument digest,
    its types (removed and moved with it)."""
    return [seconds_key(key), argument_key(key), types_key(key)]
