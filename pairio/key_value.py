"""The module-level key/value functions: thin routing over the stores.

``get_from`` and ``set_to`` decide which stores a call reads and writes:
local (the embedded store), remote (the server) or both, in the order named.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .config import Config, get_config
from .errors import InvalidKeyError, RemoteError
from .hashing import check_collection, check_value, key_string, key_strings
from .kv import KeyValueStore, local_store, remote_store

Key = str | dict | list | tuple


def _config(collection: str | None, overrides: dict[str, Any]) -> tuple[Config, str]:
    cfg = get_config(**overrides) if overrides else get_config()
    if collection is None:
        return cfg, cfg.collection
    return cfg, check_collection(collection)


def get(key: Key, collection: str | None = None, **overrides: Any) -> str | None:
    """The value stored under ``key`` (a str, or a dict/list hashed to its SHA-1), or None."""
    cfg, collection = _config(collection, overrides)
    k = key_string(key)
    mode = cfg.get_from
    if mode == "local":
        return local_store(cfg).get(collection, k)
    if mode == "remote":
        return remote_store(cfg).get(collection, k)
    if mode == "local_then_remote":
        remote = remote_store(cfg)  # a missing server configuration fails even on a local hit
        value = local_store(cfg).get(collection, k)
        if value is None:
            value = remote.get(collection, k)
            if value is not None:
                local_store(cfg).set(collection, k, value)
        return value
    # remote_then_local
    value = remote_store(cfg).get(collection, k)
    return value if value is not None else local_store(cfg).get(collection, k)


def set(key: Key, value: str | None, collection: str | None = None, **overrides: Any) -> None:  # noqa: A001
    """Store ``value`` (a str of at most 80 characters) under ``key``; None deletes the key."""
    cfg, collection = _config(collection, overrides)
    k = key_string(key)
    if value is not None:
        value = check_value(value, k)
    def write(store: KeyValueStore) -> None:
        if value is None:
            store.delete(collection, k)
        else:
            store.set(collection, k, value)

    _write(cfg, write)


def delete(key: Key, collection: str | None = None, **overrides: Any) -> None:
    """Remove ``key``; the same as ``set(key, None)``."""
    set(key, None, collection, **overrides)


def get_many(keys: Iterable[Key], collection: str | None = None, **overrides: Any) -> dict[str, str | None]:
    """Values for many keys in one transaction (one request for a server).

    The result maps each key's stored form (a str key as is, a dict/list key as
    its SHA-1) to its value, or to None where the key is absent.
    """
    cfg, collection = _config(collection, overrides)
    # A str is iterable too: get_many("abc") would look up "a", "b" and "c".
    if type(keys) is not list and (isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable)):
        raise InvalidKeyError(f"get_many takes a list of keys, got {type(keys).__name__}")
    ks = key_strings(keys if type(keys) is list else list(keys))
    mode = cfg.get_from
    if mode == "local":
        found = local_store(cfg).get_many(collection, ks)
    elif mode == "remote":
        found = remote_store(cfg).get_many(collection, ks)
    else:
        first, second = (
            (local_store(cfg), remote_store(cfg))
            if mode == "local_then_remote"
            else (remote_store(cfg), local_store(cfg))
        )
        found = first.get_many(collection, ks)
        missing = [k for k in ks if k not in found]
        if missing:
            more = second.get_many(collection, missing)
            if more and mode == "local_then_remote":
                local_store(cfg).set_many(collection, more)
            found.update(more)
    out: dict[str, str | None] = dict.fromkeys(ks)
    out.update(found)
    return out


def set_many(pairs: Mapping[Key, str | None] | Iterable[tuple[Key, str | None]], collection: str | None = None, **overrides: Any) -> None:
    """Store many pairs in one transaction; a None value deletes its key.

    ``pairs`` is a mapping of str keys to values, or an iterable of (key, value)
    pairs (for dict or list keys). Every pair is validated before anything is stored.
    """
    cfg, collection = _config(collection, overrides)
    if isinstance(pairs, Mapping):
        items = pairs.items()
    elif isinstance(pairs, (str, bytes)) or not isinstance(pairs, Iterable):
        raise InvalidKeyError(f"set_many takes a mapping or (key, value) pairs, got {type(pairs).__name__}")
    else:
        items = pairs
    checked: dict[str, str | None] = {}
    for item in items:
        # A 2-character str would unpack as a pair: ["ab"] must not store "b" under "a".
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise InvalidKeyError(f"set_many takes (key, value) pairs, got {item!r}")
        key, value = item
        k = key_string(key)
        checked[k] = None if value is None else check_value(value, k)
    if not checked:
        return
    _write(cfg, lambda store: store.set_many(collection, checked))


def _write(cfg: Config, write: Callable[[KeyValueStore], None]) -> None:
    """Apply ``write`` to the stores ``set_to`` names, the local one first."""
    if cfg.set_to == "local":
        write(local_store(cfg))
        return
    # Resolve the server before writing anything, so a missing configuration stores nothing.
    remote = remote_store(cfg)
    if cfg.set_to == "remote":
        write(remote)
        return
    write(local_store(cfg))
    try:
        write(remote)
    except RemoteError as exc:
        # Say exactly what happened: the same kind of error, which also tells what is stored.
        partial = copy.copy(exc)
        partial.args = (f"stored in the local store ({cfg.database_dir}) but not on the server: {exc}",)
        raise partial from exc
