"""What lifecycle keeps of ``@pairio.cached``'s calls: a hit counted (:func:`count_hit`), a miss's
record made (:func:`miss_record`) and written (:func:`write_record`, joining the transaction of the
decorator's pairs when the store has a ``max_size``), a miss's result remembered for lineage and
eviction run (:func:`after_miss`), a forgotten entry's record removed, a miss explained.

The decorator hands over plain data (:class:`KeyParts`, :class:`MissedCall`): nothing here knows
the decorator or its key maker."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..config import Config
from ..content import content_store
from ..errors import StoreUnavailableError
from ..kv import EmbeddedStore, local_store
from ..wal import sqlite3  # the module, imported at first use
from . import misses, provenance, records

logger = logging.getLogger("pairio")


class KeyParts:
    """The parts of a cached call's key as records keep them: ``code`` (digest, source digest,
    helpers, constants, closure), ``version``, ``dependencies`` (versions of modules and types),
    ``arguments`` (name -> digest) and ``summary`` (name -> short description). Read-only by
    convention. (A plain class, as :class:`MissedCall`: a dataclass costs ``import pairio`` its
    generated code.)"""

    __slots__ = ("code", "version", "dependencies", "arguments", "summary")

    def __init__(self, code: dict[str, Any], version: Any, dependencies: dict[str, Any],
                 arguments: dict[str, str], summary: dict[str, Any]) -> None:
        self.code, self.version, self.dependencies = code, version, dependencies
        self.arguments, self.summary = arguments, summary

    def __repr__(self) -> str:
        return f"KeyParts({', '.join(f'{name}={getattr(self, name)!r}' for name in self.__slots__)})"

    def __eq__(self, other: object) -> bool:
        return type(other) is KeyParts and self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]  (its parts are dicts)

    def as_dict(self) -> dict[str, Any]:
        """The parts by name, as records and miss reasons compare them."""
        return {"code": self.code, "version": self.version, "dependencies": self.dependencies,
                "arguments": self.arguments, "summary": self.summary}


class MissedCall:
    """A call that missed, as its record needs it: the function's name, the key and its parts,
    the bound arguments (name, value), and what tells whether an argument is still a cached result."""

    __slots__ = ("function", "collection", "key", "parts", "bound", "checker")

    def __init__(self, function: str, collection: str, key: str, parts: KeyParts, bound: list[tuple[str, Any]],
                 checker: provenance.Checker | None = None) -> None:
        self.function, self.collection, self.key = function, collection, key
        self.parts, self.bound, self.checker = parts, bound, checker

    def __repr__(self) -> str:
        return f"MissedCall({self.function!r}, {self.collection!r}, {self.key!r})"


def count_hit(cfg: Config, collection: str, key: str, result: Any, sha1: str,
              store: EmbeddedStore | None = None) -> None:
    """A hit of ``key`` (its result stored as object ``sha1``): counted for its record (in ``store``,
    if given: ``local_store(cfg)``), and ``result`` remembered for lineage."""
    records.hit(cfg, collection, key, store)
    provenance.note_origin(result, {"collection": collection, "key": key}, sha1)


def forget_record(cfg: Config, collection: str, key: str) -> None:
    """The entry ``key`` was forgotten: its record goes too."""
    store = local_store(cfg)
    if not records.keeps_records(store):
        return
    records.flush()
    with store.transaction(immediate=True) as connection:
        records.delete_rows(connection, [(collection, key)])


def miss_record(cfg: Config, call: MissedCall, sha1: str, objects: list[str], size: int, seconds: float,
                want_reason: bool) -> tuple[str, records.Entry | None]:
    """The record of a result just stored as object ``sha1`` (with ``objects``), and why the call
    missed if ``want_reason`` (else ""). A record that cannot be made is logged, and None."""
    reason = ""
    store = local_store(cfg)
    parts = call.parts.as_dict()
    try:
        if want_reason:
            reason = misses.reason(store, call.function, call.key, parts, records.get(store, call.collection, call.key))
            if reason == misses.NOTHING_TO_COMPARE:
                reason = ""  # a first call: the line says enough
        return reason, _entry(call, parts, sha1, objects, size, seconds, time.time(),
                              str(content_store(cfg).objects_dir))
    except StoreUnavailableError as exc:
        log_unrecorded(call.function, call.key, exc)
        return reason, None


def _entry(call: MissedCall, parts: dict[str, Any], sha1: str, objects: list[str], size: int, seconds: float,
           now: float, objects_dir: str) -> records.Entry:
    return records.Entry(
        collection=call.collection, key=call.key, function=call.function, sha1=sha1, objects=objects,
        inputs=provenance.links(call.bound, objects_dir, call.checker),
        size=size, seconds=seconds,
        created=now, last_used=now, hits=0, host=records.host_name(), priority=0.0, **parts)


def miss_record_soon(cfg: Config, make_call: Callable[[], MissedCall], sha1: str, objects: list[str], size: int,
                     seconds: float) -> None:
    """Queue the record of a miss, made by the background writer from ``make_call()`` (:func:`miss_record`
    without a reason, as :func:`write_record` without a transaction writes it): for a call whose
    arguments are all immutable (nothing of them can change before it is made). Made now, it
    would be the same record."""
    store = local_store(cfg)
    if not records.keeps_records(store):
        return
    now, objects_dir = time.time(), str(content_store(cfg).objects_dir)

    def make() -> records.Entry:
        call = make_call()
        return _entry(call, call.parts.as_dict(), sha1, objects, size, seconds, now, objects_dir)

    records.add_soon(store, make)


# The server's limits on a record (pairio.server.records): a record is cut to fit, never refused.
_SHARED_TEXT = {"function": 1000, "code": 200, "host": 255}
_SHARED_ENTRIES = {"dependencies": (500, 200), "arguments": (200, 1000)}
_NAME_CHARS = 200
_SHARED_INPUTS = 200  # the server's limits on a record's inputs (pairio.server.records)
_URI_CHARS = 1000


def _fit(text: object, limit: int) -> str:
    return str(text).replace("\0", "")[:limit]


def shared_record(entry: records.Entry) -> dict[str, Any]:
    """``entry``'s record as it goes to the server with its pair (the ``records`` field of
    ``set_many``): function, code digest, dependency versions, argument summaries, size, seconds,
    host, creation time and inputs (its provenance), each cut to the server's limits."""
    out: dict[str, Any] = {
        "function": _fit(entry.function, _SHARED_TEXT["function"]) or "?",
        "code": _fit(entry.code.get("digest", "") if isinstance(entry.code, dict) else "", _SHARED_TEXT["code"]),
        "host": _fit(entry.host, _SHARED_TEXT["host"]),
        "size": max(0, int(entry.size)),
        "seconds": min(max(0.0, float(entry.seconds)), 1e9),
        "created": max(0.0, float(entry.created)),
    }
    for field, source in (("dependencies", entry.dependencies), ("arguments", entry.summary)):
        count, chars = _SHARED_ENTRIES[field]
        out[field] = {_fit(k, _NAME_CHARS): _fit(v, chars) for k, v in list(source.items())[:count]}
    inputs = []
    for link in entry.inputs or ():
        argument = _fit(link.get("argument", ""), _NAME_CHARS) or "?"
        if "uri" in link and len(str(link["uri"])) <= _URI_CHARS:
            inputs.append({"argument": argument, "uri": str(link["uri"])})
        elif link.get("collection") and link.get("key") and len(str(link["key"])) <= _URI_CHARS \
                and len(str(link["collection"])) <= _NAME_CHARS:
            inputs.append({"argument": argument, "collection": str(link["collection"]), "key": str(link["key"])})
        if len(inputs) >= _SHARED_INPUTS:
            break
    out["inputs"] = inputs
    return out


def log_unrecorded(function: str, key: str, exc: Exception) -> None:
    """Log that the result of ``key`` is stored but its record could not be written."""
    logger.warning("%s: result of key %s stored, but its record could not be written (%s)",
                   function, key[:8], exc)


def records_with_pairs(cfg: Config, store: object) -> bool:
    """Whether a miss's record is written in the transaction of its pairs (the config sets
    ``max_size``: eviction knows the new total at once), rather than soon after by a background
    writer. A store that keeps no records is warned about once."""
    if cfg.max_size is None:
        return False
    if not records.keeps_records(store):
        records.warn_unrecorded(store)
        return False
    return True


def write_record(store: EmbeddedStore, entry: records.Entry,
                 connection: sqlite3.Connection | None = None) -> float | None:
    """Write ``entry``'s record in ``connection``'s transaction (returns the recorded total size), or,
    without one, queue it for the background writer (returns None: the total is not known yet)."""
    if connection is not None:
        return records.add_in(connection, entry)
    records.add_soon(store, entry)
    return None


def after_miss(cfg: Config, collection: str, key: str, result: Any, sha1: str, total: float | None) -> None:
    """After a miss's pairs and record are written: ``result`` (stored as object ``sha1``)
    remembered for lineage, and eviction if the store passed ``max_size``."""
    provenance.note_origin(result, {"collection": collection, "key": key}, sha1)
    if cfg.max_size is not None and total is not None and total > cfg.max_size:
        from . import eviction  # (imported where a store has a max_size)

        eviction.evict(cfg)


def explain_miss(cfg: Config, function: str, collection: str, key: str, parts: KeyParts) -> dict[str, Any]:
    """Why a call of ``function`` with key ``key`` (of ``parts``) is not cached: ``miss`` (one line),
    ``closest`` (a key or None) and ``differences`` from the closest stored entry of ``function``."""
    store = local_store(cfg)
    current = parts.as_dict()
    same = records.get(store, collection, key)
    entry, diff = misses.closest(store, function, key, current)
    return {"miss": misses.reason(store, function, key, current, same),
            "closest": None if entry is None else entry.key, "differences": diff}
