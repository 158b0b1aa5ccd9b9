"""The two calls ``@pairio.cached`` makes: :func:`hit` (cheap: counted in memory) and
:func:`stored` (after a miss's result and pair are stored: the record, its lineage,
the reason for the miss, eviction if the store passed ``max_size``)."""

from __future__ import annotations

import hashlib
import logging
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..content import content_store
from ..errors import StoreUnavailableError
from ..kv import EmbeddedStore, local_store
from . import misses, provenance, records
from .summary import summarize

if TYPE_CHECKING:
    from ..memo.decorator import CachedFunction
    from ..memo.values import StoredResult

logger = logging.getLogger("pairio")

# KeyMaker -> its code part as records keep it (computed once per function).
_code_parts: weakref.WeakKeyDictionary[Any, tuple[Any, dict[str, Any]]] = weakref.WeakKeyDictionary()


def hit(cfg: Config, collection: str, key: str, result: Any, sha1: str, store: EmbeddedStore | None = None) -> None:
    """A hit of ``key`` (its result stored as object ``sha1``): counted for its record (in ``store``,
    if given: ``local_store(cfg)``), and ``result`` remembered for lineage."""
    records.hit(cfg, collection, key, store)
    provenance.remember(result, {"collection": collection, "key": key}, sha1)


def forgotten(cfg: Config, collection: str, key: str) -> None:
    """The entry ``key`` was forgotten: its record goes too."""
    store = local_store(cfg)
    if not records.keeps_records(store):
        return
    records.flush()
    with store.transaction(immediate=True) as connection:
        records.delete_rows(connection, [(collection, key)])


def code_parts(fn: CachedFunction) -> dict[str, Any]:
    """The code digest of ``fn`` and the digests of its parts."""
    keys = fn._keys
    code = keys.code  # as it is now: a helper redefined since the last call has a new description
    cached = _code_parts.get(keys)
    if cached is not None and cached[0] is code:
        return cached[1]
    parts = {
        "digest": code.digest,
        "source": hashlib.sha1(code.source.encode("utf-8", "surrogatepass")).hexdigest(),
        "helpers": dict(code.helpers),
        "constants": dict(code.constants),
        "closure": dict(code.closure),
    }
    _code_parts[keys] = (code, parts)
    return parts


def describe(fn: CachedFunction, key: str, args: tuple, kwargs: dict) -> tuple[dict[str, Any], list]:
    """The parts of the key of ``fn(*args, **kwargs)`` as records keep them, and the bound arguments."""
    keys = fn._keys
    bound = keys.bind(args, kwargs)
    last = getattr(keys, "last", None)
    if last is not None and last[0] == key:
        hashes, type_versions = last[1], last[2]
    else:
        types: set[type] = set()
        hashes = keys.argument_hashes(args, kwargs, method=fn._method, types=types)
        type_versions = keys.type_dependencies(types) if types else {}
    summary = {name: summarize(value) for name, value in bound if name in hashes}
    parts = {
        "code": code_parts(fn),
        "version": keys.version,
        "dependencies": {**keys.code.dependencies, **keys.dependency_versions(), **type_versions},
        "arguments": hashes,
        "summary": summary,
    }
    return parts, bound


def _checker(cfg: Config, fn: CachedFunction, hashes: dict[str, str]) -> provenance.Checker:
    """What tells whether an argument handed out by a cached call is still that call's result."""
    keys = fn._keys
    # A method's self is hashed for the key with its class's code: not as a plain value.
    known = {name: digest for name, digest in hashes.items() if not (fn._method and name == keys.self_name)}
    return provenance.Checker(lambda sha1: fn.stored_result(cfg, sha1), keys.value_hash, known)


def stored(cfg: Config, fn: CachedFunction, collection: str, key: str, stored: StoredResult, seconds: float,
           args: tuple, kwargs: dict, want_reason: bool,
           pairs: Mapping[str, str] | None = None) -> tuple[str, float | None]:
    """Record a result just stored, and write ``pairs`` (its pair, in the local store) if given;
    returns why it missed if ``want_reason`` (else "") and the recorded total size (None if not
    known yet). Then call :func:`settled`, not holding the content directory.

    The pairs are written at once; the record soon after, with others, by a background writer
    (:func:`records.add_soon`), unless the config sets ``max_size``: then the record is written
    with the pairs, in one transaction, and eviction knows the new total at once. A record that
    cannot be made is logged; a failure to write the pairs raises.
    """
    reason = ""
    store = local_store(cfg)
    try:
        parts, bound = describe(fn, key, args, kwargs)
        if want_reason:
            reason = misses.reason(store, fn.name, key, parts, records.get(store, collection, key))
            if reason == misses.NOTHING_TO_COMPARE:
                reason = ""  # a first call: the line says enough
        now = time.time()
        content = content_store(cfg)
        entry = records.Entry(
            collection=collection, key=key, function=fn.name, sha1=stored.sha1, objects=list(stored.files),
            inputs=provenance.links(bound, str(content.objects_dir), _checker(cfg, fn, parts["arguments"])),
            size=stored.size, seconds=seconds,
            created=now, last_used=now, hits=0, host=records.host_name(), priority=0.0, **parts)
        if cfg.max_size is not None:
            return reason, records.add(store, entry, pairs)
    except StoreUnavailableError as exc:
        logger.warning("%s: result of key %s stored, but its record could not be written (%s)",
                       fn.name, key[:8], exc)
        entry = None
    if pairs:
        store.set_many(collection, pairs)
    if entry is not None:
        records.add_soon(store, entry)
    return reason, None


def settled(cfg: Config, collection: str, key: str, result: Any, sha1: str, total: float | None) -> None:
    """After :func:`stored`: ``result`` (stored as object ``sha1``) remembered for lineage, and
    eviction if the store passed ``max_size``."""
    provenance.remember(result, {"collection": collection, "key": key}, sha1)
    if cfg.max_size is not None and total is not None and total > cfg.max_size:
        from . import eviction  # (imported where a store has a max_size)

        eviction.evict(cfg)


def explain_miss(cfg: Config, fn: CachedFunction, collection: str, key: str, args: tuple,
                 kwargs: dict) -> dict[str, Any]:
    """Why ``fn(*args, **kwargs)`` is not cached: ``miss`` (one line), ``closest`` (a key or None)
    and ``differences`` from the closest stored entry of ``fn``."""
    store = local_store(cfg)
    parts, _ = describe(fn, key, args, kwargs)
    same = records.get(store, collection, key)
    entry, diff = misses.closest(store, fn.name, key, parts)
    return {"miss": misses.reason(store, fn.name, key, parts, same),
            "closest": None if entry is None else entry.key, "differences": diff}
