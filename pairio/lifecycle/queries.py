"""The Python side of ``pairio ls``, ``show``, ``forget``, ``why`` and ``diff``: thin calls on the records.

Every function takes config fields as keyword overrides, like ``pairio.get``.
Records are kept in the local (embedded) store only, whatever ``get_from`` and
``set_to`` say.
"""

from __future__ import annotations

from typing import Any

from ..config import get_config
from ..content.uri import parse_uri
from ..errors import InvalidURIError
from ..hashing import is_sha1_hex
from ..kv import local_store
from ..units import parse_age, parse_size
from . import misses, provenance, records


def entries(function: Any = None, *, collection: str | None = None,
            older_than: str | float | None = None, newer_than: str | float | None = None,
            min_size: str | int | None = None, max_size: str | int | None = None,
            limit: int | None = None, sort: str = "created", **overrides: Any) -> list[records.Entry]:
    """The recorded cached results, newest first (or, by ``sort``, largest ``size``, most
    ``seconds`` to compute or most ``hits`` first).

    ``function`` is a cached function, a qualified name, its dotted tail (``smooth``)
    or a glob (``steps.*``); ages are seconds or ``'30d'``, ``'12h'``; sizes are bytes or ``'1GB'``.
    """
    cfg = get_config(**overrides)
    if function is not None and not isinstance(function, str):
        name = getattr(function, "name", None)
        if not isinstance(name, str):
            raise TypeError(f"entries: function must be a name or a cached function, got {type(function).__name__}")
        function = name
    return records.entries(
        local_store(cfg), function, collection=collection,
        older_than=None if older_than is None else parse_age(older_than, "older_than"),
        newer_than=None if newer_than is None else parse_age(newer_than, "newer_than"),
        min_size=None if min_size is None else parse_size(min_size, "min_size"),
        max_size=None if max_size is None else parse_size(max_size, "max_size"),
        limit=limit, sort=sort)


def find(key_or_uri: str, **overrides: Any) -> list[records.Entry]:
    """The entries a key (or a prefix of it, 6+ hex digits), a result's SHA-1 or a ``sha1://`` URI names."""
    text = key_or_uri.strip()
    if text.startswith(("sha1://", "sha1dir://")):
        text = parse_uri(text).sha1
    elif len(text) < 6 or not all(c in "0123456789abcdefABCDEF" for c in text) or len(text) > 40:
        raise InvalidURIError(f"{key_or_uri!r} is neither a key (6 to 40 hex digits) nor a sha1:// URI")
    cfg = get_config(**overrides)
    return records.find(local_store(cfg), text.lower())


def show(key_or_uri: str, **overrides: Any) -> records.Entry:
    """The one entry ``key_or_uri`` names; LookupError if none (or several: give more digits)."""
    found = find(key_or_uri, **overrides)
    if not found:
        store = local_store(get_config(**overrides))
        if not records.keeps_records(store):
            raise LookupError(f"no recorded entry for {key_or_uri!r}: {store!r} keeps no records of "
                              "cached results (the directory store, for a directory shared by hosts)")
        raise LookupError(f"no recorded entry for {key_or_uri!r}")
    if len({(e.collection, e.key) for e in found}) > 1 and not is_sha1_hex(key_or_uri.lower()):
        raise LookupError(f"{key_or_uri!r} names {len(found)} entries; give more digits of the key")
    return found[0]


def forget(function: str, older_than: str | float | None = None, collection: str | None = None,
           **overrides: Any) -> list[records.Entry]:
    """Remove the entries of ``function`` (older than ``older_than``, if given); returns them.
    Their content stays until ``pairio gc`` finds nothing else refers to it."""
    cfg = get_config(**overrides)
    age = None if older_than is None else parse_age(older_than, "older_than")
    return records.forget(cfg, function, older_than=age, collection=collection)


def lineage_of_key(key: str, collection: str, **overrides: Any) -> dict[str, Any]:
    """The lineage tree of the entry ``key`` in ``collection``; LookupError if it is not recorded."""
    cfg = get_config(**overrides)
    store = local_store(cfg)
    records.flush()
    entry = records.get(store, collection, key)
    if entry is None:
        unkept = "" if records.keeps_records(store) else f": {store!r} keeps no records of cached results"
        raise LookupError(f"no recorded entry for key {key} in collection {collection!r}{unkept}")
    return provenance.lineage(store, entry)


def why(key_or_uri: str, **overrides: Any) -> dict[str, Any]:
    """Where the result named by a key or a ``sha1://`` URI came from, as a tree back to its raw inputs."""
    entry = show(key_or_uri, **overrides)
    return provenance.lineage(local_store(get_config(**overrides)), entry)


def diff(key1: str, key2: str, **overrides: Any) -> list[str]:
    """What differs from the entry ``key1`` to the entry ``key2``."""
    return misses.diff_entries(show(key1, **overrides), show(key2, **overrides))
