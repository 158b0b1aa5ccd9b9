"""The record kept beside each cached result's pair: what made it, what it costs, how it is used.

Records live in the embedded store's database (table ``entries``, keyed like the
pairs by collection and key), so they are local even when pairs also go to a
server. A miss writes one record; a hit only counts in memory (:func:`hit`) and
the counts are written in one transaction at most once a second, before any
listing or eviction in this process, and when the process exits, so a hit costs
a dictionary update, not a write.

Each record also carries the GreedyDual-Size-Frequency priority that eviction
orders by (:mod:`.eviction`): ``L + hits_plus_one * seconds / size``, where ``L``
is the store's inflation value (``entry_totals``), raised to the priority of
each entry evicted; entries used long ago keep an old, lower ``L``.
"""

from __future__ import annotations

import collections
import dataclasses
import fnmatch
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..config import Config
from ..deferred import DeferredWriter
from ..errors import InvalidInputError, StoreNotWritableError
from ..kv import EmbeddedStore, local_store
from ..result_keys import side_keys
from ..wal import sqlite3  # the module, imported at first use
from ..write_faults import cause_of
from . import (
    SORTS,
    schema,  # noqa: F401  (registers the tables below with the embedded store)
)

logger = logging.getLogger("pairio")

_FLUSH_INTERVAL_S = 1.0
# A result that took no measurable time still saves a little; a zero cost would tie everything.
MIN_SECONDS = 1e-6
_COLUMNS = ("collection", "key", "function", "sha1", "objects", "code", "version", "dependencies",
            "arguments", "summary", "inputs", "size", "seconds", "created", "last_used", "hits",
            "host", "priority")
_JSON_COLUMNS = frozenset({"objects", "code", "dependencies", "arguments", "summary", "inputs"})
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM entries"
_INSERT = (
    f"INSERT INTO entries ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * (len(_COLUMNS) - 1))}, "
    "(SELECT value FROM entry_totals WHERE name = 'inflation') + ?) "
    "ON CONFLICT (collection, key) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[2:])
)
_HITS = (
    "UPDATE entries SET hits = hits + ?1, last_used = max(last_used, ?2), "
    "priority = (SELECT value FROM entry_totals WHERE name = 'inflation') "
    f"+ (hits + ?1 + 1) * max(seconds, {MIN_SECONDS}) / max(size, 1) "
    "WHERE collection = ?3 AND key = ?4"
)


@dataclasses.dataclass
class Entry:
    """One cached result: its pair (collection, key -> sha1) and its record.

    ``code`` holds the code digest and the digests of its parts (``source``,
    ``helpers``, ``constants``, ``closure``); ``arguments`` each argument's hash,
    ``summary`` a short readable form of each; ``inputs`` the entries or content
    the arguments came from; ``objects`` files stored inside the result;
    ``size`` bytes of the result and those files; times are Unix seconds.
    """

    collection: str
    key: str
    function: str
    sha1: str
    objects: list[str]
    code: dict[str, Any]
    version: str
    dependencies: dict[str, str]
    arguments: dict[str, str]
    summary: dict[str, str]
    inputs: list[dict[str, str]]
    size: int
    seconds: float
    created: float
    last_used: float
    hits: int
    host: str
    priority: float

    @property
    def uri(self) -> str:
        """The result's object as a ``sha1://`` URI."""
        return f"sha1://{self.sha1}"

    def as_dict(self) -> dict[str, Any]:
        """Every field, for JSON."""
        return {**dataclasses.asdict(self), "uri": self.uri}

    @classmethod
    def from_row(cls, row: tuple) -> Entry:
        return cls(**{c: json.loads(v) if c in _JSON_COLUMNS else v for c, v in zip(_COLUMNS, row, strict=True)})


@dataclasses.dataclass
class Totals:
    """How many entries a listing holds, their bytes and the seconds of computing they save per use."""

    count: int = 0
    size: int = 0
    seconds: float = 0.0
    hits: int = 0


def host_name() -> str:
    """This machine's name, as records show it."""
    global _host
    if _host is None:
        import socket  # here: `import pairio` stays light

        _host = socket.gethostname()
    return _host


_host: str | None = None


def keeps_records(store: object) -> bool:
    """True if ``store`` keeps records beside its pairs (the embedded store). The directory store,
    for directories shared by hosts, keeps none: nothing to list, show or evict by."""
    return isinstance(store, EmbeddedStore)


def warn_unrecorded(store: Any) -> None:
    """Log, once per store, that ``store`` keeps no records, so ``max_size`` is not enforced."""
    if not getattr(store, "warned_no_records", True):
        store.warned_no_records = True
        logger.warning("pairio: %r keeps no records of cached results: max_size is not enforced there "
                       "(evict with `pairio forget`/`gc` on a store that keeps them)", store)


# --- writing ---------------------------------------------------------------------------


def add(store: EmbeddedStore, entry: Entry) -> float:
    """Write ``entry``'s record (replacing any of the same key) in a transaction of its own;
    returns the recorded total size. (A cached miss joins its pairs' transaction: :func:`add_in`.)

    Its priority is computed here from the store's inflation value. A store that keeps no
    records (:func:`keeps_records`) is left alone, and the total is 0.
    """
    if not keeps_records(store):
        warn_unrecorded(store)
        return 0.0
    with store.transaction(immediate=True) as connection:
        return add_in(connection, entry)


def add_in(connection: sqlite3.Connection, entry: Entry) -> float:
    """Write ``entry``'s record (replacing any of the same key) in ``connection``'s transaction (of
    the embedded store, joined by the writer of its pairs); returns the recorded total size."""
    connection.execute(_INSERT, _row(entry))
    return total_size(connection)


# --- inside a transaction of the store (eviction, gc, forgetting) -------------------------------


def total_size(connection: sqlite3.Connection) -> float:
    """The total size of the records, as the triggers keep it."""
    return connection.execute("SELECT value FROM entry_totals WHERE name = 'size'").fetchone()[0]


def raise_inflation(connection: sqlite3.Connection, priority: float) -> None:
    """Raise the store's inflation value to ``priority`` (that of an entry evicted), never lower it."""
    connection.execute("UPDATE entry_totals SET value = max(value, ?) WHERE name = 'inflation'", (priority,))


def by_priority(connection: sqlite3.Connection, created_before: float) -> sqlite3.Cursor:
    """The records made before ``created_before``, lowest priority first, as rows of
    (collection, key, sha1, objects, size, priority, function, seconds, hits)."""
    return connection.execute(
        "SELECT collection, key, sha1, objects, size, priority, function, seconds, hits FROM entries "
        "WHERE created < ? ORDER BY priority", (created_before,))


def delete_rows(connection: sqlite3.Connection, keys: Iterable[tuple[str, str]]) -> None:
    """Delete the records of ``keys``, (collection, key), leaving their pairs."""
    connection.executemany("DELETE FROM entries WHERE collection = ? AND key = ?", keys)


def results_and_objects(connection: sqlite3.Connection) -> Iterable[tuple[str, str, str, str]]:
    """(collection, key, sha1, objects as JSON) of every record."""
    return connection.execute("SELECT collection, key, sha1, objects FROM entries")


def referred(connection: sqlite3.Connection, objects: set[str]) -> set[str]:
    """Those of ``objects`` that a record names as its result or holds as a file of its result."""
    wanted = json.dumps(sorted(objects))
    kept = {row[0] for row in connection.execute(
        "SELECT sha1 FROM entries WHERE sha1 IN (SELECT value FROM json_each(?))", (wanted,))}
    for (text,) in connection.execute("SELECT objects FROM entries WHERE objects != '[]'"):
        kept.update(o for o in json.loads(text) if o in objects)
    return kept


def count_without_pair(connection: sqlite3.Connection) -> int:
    """How many records have no pair (``pairio fsck``: they describe nothing)."""
    return connection.execute(
        "SELECT count(*) FROM entries AS e WHERE NOT EXISTS "
        "(SELECT 1 FROM pairs AS p WHERE p.collection = e.collection AND p.key = e.key)").fetchone()[0]


def delete_without_pair(connection: sqlite3.Connection) -> int:
    """Delete the records that have no pair; returns how many went."""
    return connection.execute("DELETE FROM entries WHERE NOT EXISTS (SELECT 1 FROM pairs AS p "
                              "WHERE p.collection = entries.collection AND p.key = entries.key)").rowcount


def kept_and_actual_size(connection: sqlite3.Connection) -> tuple[float | None, int]:
    """The total size the triggers kept (None if its row is gone) and the sum of the records' sizes."""
    total = connection.execute("SELECT value FROM entry_totals WHERE name = 'size'").fetchone()
    actual = connection.execute("SELECT coalesce(sum(size), 0) FROM entries").fetchone()[0]
    return None if total is None else total[0], actual


def recount_size(connection: sqlite3.Connection) -> None:
    """Set the kept total size to the sum of the records' sizes."""
    connection.execute("UPDATE entry_totals SET value = (SELECT coalesce(sum(size), 0) FROM entries) "
                       "WHERE name = 'size'")


def _row(entry: Entry) -> list[Any]:
    values = [_json(getattr(entry, c)) if c in _JSON_COLUMNS else getattr(entry, c) for c in _COLUMNS[:-1]]
    values.append((entry.hits + 1) * max(entry.seconds, MIN_SECONDS) / max(entry.size, 1))
    return values


class _LastCode:
    """The JSON text of the newest ``code`` column written, with the very dict it was made of, as
    one pair (read and replaced whole: threads never see the text of other parts). The misses of one
    function share their code parts (one dict per code description, never changed), the largest
    JSON of a record."""

    made: tuple[Any, str] = (None, "")


def _json(value: Any) -> str:
    parts, text = _LastCode.made
    if value is parts:
        return text
    text = json.dumps(value, separators=(",", ":"))
    if type(value) is dict and "digest" in value:
        _LastCode.made = (value, text)
    return text


def add_soon(store: EmbeddedStore, entry: Entry | Callable[[], Entry]) -> None:
    """Queue ``entry``'s record (or a function that makes it, called by the writer): written with the
    hits, by the writer thread within a second, before any listing or eviction in this process, and
    at exit. (A process killed before leaves the result and its pair without a record: still a
    hit, but not listed nor counted by eviction.)"""
    if not keeps_records(store):
        return
    hits = _hits
    with hits.lock:
        hits.records.append((store, entry))  # made into a row by the writer: JSON costs a miss too
    _writer.notify()


class _Hits:
    """Hits and records not yet written. Hits: (store, collection, key) -> count, their last use
    taken as the time they are written; records: (store, row) in the order made. Both are
    written at most a second later by a background writer (as :mod:`pairio.memo.call_stats`
    writes call counts): neither a hit nor a miss waits for the table."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[tuple[EmbeddedStore, str, str], int] = {}
        # Hits as made, (store, collection, key), appended without the lock (a hit is the commonest
        # call) and counted into ``pending`` under it by the writer.
        self.made: collections.deque[tuple[EmbeddedStore, str, str]] = collections.deque()
        self.records: list[tuple[EmbeddedStore, Entry | Callable[[], Entry]]] = []


_hits = _Hits()


def hit(cfg: Config, collection: str, key: str, store: EmbeddedStore | None = None) -> None:
    """Count a hit of ``key`` in the records of ``store`` (default: ``local_store(cfg)``), written by
    the writer thread within a second, or at exit."""
    hits = _hits
    store = local_store(cfg) if store is None else store
    if not keeps_records(store):
        return
    hits.made.append((store, collection, key))
    _writer.notify()


def flush() -> None:
    """Write the records and hits queued so far (errors are logged, never raised: they are not results)."""
    _writer.flush()


def _write_queued() -> None:
    hits = _hits
    with hits.lock:
        made, pending = hits.made, hits.pending
        while made:
            ident = made.popleft()
            pending[ident] = pending.get(ident, 0) + 1
        pending, queued = hits.pending, hits.records
        hits.pending, hits.records = {}, []
    if pending or queued:
        _write(pending, queued)


def _write(pending: dict[tuple[EmbeddedStore, str, str], int],
           queued: list[tuple[EmbeddedStore, Entry | Callable[[], Entry]]]) -> None:
    now = time.time()
    by_store: dict[EmbeddedStore, tuple[list[list[Any]], list[tuple]]] = {}
    for store, entry in queued:
        if not isinstance(entry, Entry):
            try:
                entry = entry()
            except Exception:  # never expected: a record of plain data, made as on the miss
                logger.exception("could not make a record")
                continue
        try:
            row = _row(entry)
        except (TypeError, ValueError) as exc:  # never expected: every field is made of str and numbers
            logger.warning("could not record %s %s: %s", entry.function, entry.key[:8], exc)
            continue
        by_store.setdefault(store, ([], []))[0].append(row)
    for (store, collection, key), count in pending.items():
        by_store.setdefault(store, ([], []))[1].append((count, now, collection, key))
    for store, (rows, counts) in by_store.items():
        if not store.directory.is_dir():
            continue  # a removed (temporary) database: do not make it again
        try:
            with store.transaction(immediate=True) as connection:
                connection.executemany(_INSERT, rows)  # first: a hit may count on a record just made
                connection.executemany(_HITS, counts)
        except (sqlite3.Error, OSError) as exc:
            # Hit counts only, on a store that cannot be written (read-only, full): nothing to say.
            quiet = not rows and (isinstance(exc, StoreNotWritableError) or cause_of(store.directory, exc) is not None)
            log = logger.debug if quiet else logger.warning
            log("could not write %d records and %d hit counts in %s: %s", len(rows), len(counts),
                store.directory, exc)


def _has_work() -> bool:
    return bool(_hits.pending or _hits.records or _hits.made)


def _forget() -> None:
    # The parent's hits not yet written are the parent's to write (and its lock may have
    # been held by another thread at the fork).
    global _hits
    _hits = _Hits()


_writer = DeferredWriter("pairio-hits", _write_queued, _has_work, interval_s=_FLUSH_INTERVAL_S, forget=_forget)


# --- reading ---------------------------------------------------------------------------


def matches_function(name: str, pattern: str) -> bool:
    """True if ``pattern`` names the function ``name``: its qualified name, a dotted tail
    of it (``smooth``, ``steps.smooth``), or a glob (``steps.*``)."""
    return name == pattern or name.endswith("." + pattern) or fnmatch.fnmatchcase(name, pattern)



def entries(store: EmbeddedStore, function: str | None = None, *, collection: str | None = None,
            older_than: float | None = None, newer_than: float | None = None,
            min_size: int | None = None, max_size: int | None = None,
            limit: int | None = None, sort: str = "created") -> list[Entry]:
    """The recorded entries, most first by ``sort`` (one of :data:`SORTS`; ``created``: newest
    first), filtered: ``function`` as :func:`matches_function` takes it, ages in seconds since
    creation, sizes in bytes."""
    if sort not in SORTS:
        raise InvalidInputError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
    if not keeps_records(store):
        return []
    flush()
    where, params = [], []
    if collection is not None:
        where.append("collection = ?")
        params.append(collection)
    now = time.time()
    if older_than is not None:
        where.append("created <= ?")
        params.append(now - older_than)
    if newer_than is not None:
        where.append("created >= ?")
        params.append(now - newer_than)
    if min_size is not None:
        where.append("size >= ?")
        params.append(min_size)
    if max_size is not None:
        where.append("size <= ?")
        params.append(max_size)
    sql = (_SELECT + (" WHERE " + " AND ".join(where) if where else "")
           + f" ORDER BY {sort} DESC" + (", created DESC" if sort != "created" else ""))
    with store.transaction() as connection:
        rows = connection.execute(sql, params)
        out = []
        for row in rows:
            if function is not None and not matches_function(row[2], function):
                continue
            out.append(Entry.from_row(row))
            if limit is not None and len(out) >= limit:
                break
    return out


def totals(found: Iterable[Entry]) -> Totals:
    """The totals of a listing."""
    t = Totals()
    for e in found:
        t.count += 1
        t.size += e.size
        t.seconds += e.seconds
        t.hits += e.hits
    return t


def find(store: EmbeddedStore, key_or_sha1: str, collection: str | None = None) -> list[Entry]:
    """Entries whose key is ``key_or_sha1`` (a full key or a prefix of at least 6 hex digits),
    or whose result object is that SHA-1, or that hold that SHA-1 as a file of their result."""
    if not keeps_records(store):
        return []
    flush()
    k = key_or_sha1.lower()
    with store.transaction() as connection:
        if len(k) == 40:
            rows = connection.execute(_SELECT + " WHERE key = ? OR sha1 = ?", (k, k)).fetchall()
            if not rows:
                rows = connection.execute(_SELECT + " WHERE objects LIKE ?", (f'%"{k}"%',)).fetchall()
        else:
            rows = connection.execute(_SELECT + " WHERE key >= ? AND key < ?", (k, k + "g")).fetchall()
    found = [Entry.from_row(r) for r in rows]
    if collection is not None:
        found = [e for e in found if e.collection == collection]
    return sorted(found, key=lambda e: -e.created)


def get(store: EmbeddedStore, collection: str, key: str) -> Entry | None:
    """The record of ``key`` in ``collection``, or None."""
    if not keeps_records(store):
        return None
    flush()
    with store.transaction() as connection:
        row = connection.execute(_SELECT + " WHERE collection = ? AND key = ?", (collection, key)).fetchone()
    return None if row is None else Entry.from_row(row)


def of_function(store: EmbeddedStore, function: str, limit: int = 500) -> list[Entry]:
    """The newest ``limit`` entries of the function named exactly ``function``."""
    if not keeps_records(store):
        return []
    flush()
    with store.transaction() as connection:
        rows = connection.execute(_SELECT + " WHERE function = ? ORDER BY created DESC LIMIT ?",
                                  (function, limit)).fetchall()
    return [Entry.from_row(r) for r in rows]


# --- removing ----------------------------------------------------------------------------


def remove(store: EmbeddedStore, found: Iterable[Entry], created_before: float | None = None) -> list[Entry]:
    """Remove these entries' pairs and records (the content is left to ``pairio gc``); returns those removed.

    A pair is removed only while it still names the entry's result, and with
    ``created_before`` only if its record is older: a result stored again meanwhile stays.
    """

    if not keeps_records(store):
        return []
    flush()  # a record still queued would come back after its removal
    removed = []
    with store.transaction(immediate=True) as connection:
        for e in found:
            row = connection.execute("SELECT created FROM entries WHERE collection = ? AND key = ? AND sha1 = ?",
                                     (e.collection, e.key, e.sha1)).fetchone()
            if row is None or (created_before is not None and row[0] >= created_before):
                continue
            connection.execute("DELETE FROM entries WHERE collection = ? AND key = ?", (e.collection, e.key))
            store.delete_unchanged(connection, [(e.collection, e.key, e.sha1)])
            store.delete_pairs(connection, [(e.collection, k) for k in side_keys(e.key)])
            removed.append(e)
    return removed


def forget(cfg: Config, function: str, older_than: float | None = None, collection: str | None = None) -> list[Entry]:
    """Remove the entries of ``function`` (older than ``older_than`` seconds, if given)."""
    store = local_store(cfg)
    return remove(store, entries(store, function, collection=collection, older_than=older_than))
