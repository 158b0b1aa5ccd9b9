"""Counts over time: per hour, collection and function, the hits, misses, compute seconds saved and
spent, and bytes moved up and down, kept :data:`KEEP_DAYS` days.

The table (``counts``) lives in the embedded store's database beside the records (registered here
with :func:`pairio.kv.embedded.register_schema`); the server keeps its own counts in the same
table of its embedded store (and in PostgreSQL: :mod:`pairio.server.backends.records`).

A count costs a call a dictionary update (:func:`add`): the deltas are summed in memory and added
to the table by the one deferred writer (:mod:`pairio.deferred`) at most a second later, at exit,
and in a multiprocessing worker before its result goes back, so counts made by several processes
at once add up exactly. Rows of hours older than :data:`KEEP_DAYS` days go at each write.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from ..deferred import DeferredWriter, drain_all
from ..errors import InvalidInputError, StoreNotWritableError
from ..kv import EmbeddedStore
from ..kv.embedded import register_schema
from ..wal import sqlite3  # the module, imported at first use
from ..write_faults import cause_of

logger = logging.getLogger("pairio")

FAMILY = "counts"
KEEP_DAYS = 90
KEEP_S = KEEP_DAYS * 86_400
HOUR_S = 3_600
FIELDS = ("hits", "misses", "seconds_saved", "seconds_computed", "bytes_up", "bytes_down")
GROUPS = ("function", "collection")
_FLUSH_INTERVAL_S = 1.0

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS counts (
            hour INTEGER NOT NULL,
            collection TEXT NOT NULL,
            function TEXT NOT NULL,
            hits INTEGER NOT NULL DEFAULT 0,
            misses INTEGER NOT NULL DEFAULT 0,
            seconds_saved REAL NOT NULL DEFAULT 0,
            seconds_computed REAL NOT NULL DEFAULT 0,
            bytes_up INTEGER NOT NULL DEFAULT 0,
            bytes_down INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (hour, collection, function)
        ) WITHOUT ROWID""",
    ),
)

register_schema(FAMILY, MIGRATIONS, optional=True)

_ADD = (
    f"INSERT INTO counts (hour, collection, function, {', '.join(FIELDS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (hour, collection, function) DO UPDATE SET "
    + ", ".join(f"{f} = {f} + excluded.{f}" for f in FIELDS)
)


class Row:
    """The deltas of one (hour, collection, function), as :func:`add` sums them (a plain class
    with slots: one made per hour and step, and no dataclass to make when pairio is imported)."""

    __slots__ = ("hits", "misses", "seconds_saved", "seconds_computed", "bytes_up", "bytes_down")

    def __init__(self) -> None:
        self.hits = self.misses = self.bytes_up = self.bytes_down = 0
        self.seconds_saved = self.seconds_computed = 0.0

    def values(self) -> tuple[int, int, float, float, int, int]:
        return (self.hits, self.misses, self.seconds_saved, self.seconds_computed, self.bytes_up, self.bytes_down)


def hour_of(t: float) -> int:
    """The start of the hour (Unix seconds) that holds time ``t``."""
    return int(t // HOUR_S) * HOUR_S


# --- counting ---------------------------------------------------------------------------


class _Pending:
    """Deltas not yet written: (store, hour, collection, function) -> Row."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: dict[tuple[EmbeddedStore, int, str, str], Row] = {}


_pending = _Pending()


def add(store: object, collection: str, function: str, *, hits: int = 0, misses: int = 0,
        seconds_saved: float = 0.0, seconds_computed: float = 0.0, bytes_up: int = 0, bytes_down: int = 0,
        at: float | None = None) -> None:
    """Count, in the hour of ``at`` (default now), these deltas for ``function`` in ``collection`` of
    ``store`` (an :class:`~pairio.kv.EmbeddedStore`; any other store keeps no counts). Written
    by the deferred writer within a second, never here."""
    if not isinstance(store, EmbeddedStore):
        return
    ident = (store, hour_of(time.time() if at is None else at), collection, function)
    pending = _pending
    with pending.lock:
        row = pending.rows.get(ident)
        if row is None:
            row = pending.rows[ident] = Row()
        row.hits += hits
        row.misses += misses
        row.seconds_saved += seconds_saved
        row.seconds_computed += seconds_computed
        row.bytes_up += bytes_up
        row.bytes_down += bytes_down
    _writer.notify()


def flush() -> None:
    """Write the counts queued so far (errors are logged, never raised)."""
    _writer.flush()


def write_in(connection: sqlite3.Connection, rows: Iterable[Sequence[Any]], now: float | None = None) -> None:
    """Add ``rows`` of (hour, collection, function, *:data:`FIELDS`) to the counts in ``connection``'s
    transaction, and drop the hours older than :data:`KEEP_DAYS` days."""
    connection.executemany(_ADD, rows)
    cutoff = hour_of((time.time() if now is None else now) - KEEP_S)
    connection.execute("DELETE FROM counts WHERE hour < ?", (cutoff,))


def _write_queued() -> None:
    pending = _pending
    with pending.lock:
        rows, pending.rows = pending.rows, {}
    by_store: dict[EmbeddedStore, list[tuple]] = {}
    for (store, hour, collection, function), row in rows.items():
        by_store.setdefault(store, []).append((hour, collection, function, *row.values()))
    for store, batch in by_store.items():
        if not store.directory.is_dir():
            continue  # a removed (temporary) database: do not make it again
        try:
            with store.transaction(immediate=True) as connection:
                write_in(connection, batch)
        except (sqlite3.Error, OSError) as exc:
            quiet = isinstance(exc, StoreNotWritableError) or cause_of(store.directory, exc) is not None
            (logger.debug if quiet else logger.warning)("could not write %d hourly counts in %s: %s",
                                                        len(batch), store.directory, exc)


def _has_work() -> bool:
    return bool(_pending.rows)


def _forget() -> None:
    # The parent's counts not yet written are the parent's to write (a child writing them too would
    # count them twice); its lock may have been held by another thread at the fork.
    global _pending
    _pending = _Pending()


_writer = DeferredWriter("pairio-counts", _write_queued, _has_work, interval_s=_FLUSH_INTERVAL_S, forget=_forget)


# --- reading ----------------------------------------------------------------------------


def check_by(by: str | None) -> str | None:
    """``by`` if it is a group counts can be read by (``function``, ``collection``, or None)."""
    if by is not None and by not in GROUPS:
        raise InvalidInputError(f"by must be one of {', '.join(GROUPS)} (or none), not {by!r}")
    return by


def read_in(connection: sqlite3.Connection, since: float, until: float | None = None, by: str | None = "function",
            collections: Collection[str] | None = None) -> list[dict[str, Any]]:
    """The counts of the hours from ``since``'s to before ``until`` (default: now included), one dict
    per (hour, group): ``hour`` and, by ``function`` or ``collection``, that name, then
    :data:`FIELDS`; oldest hour first. ``collections``: only those (None: every one)."""
    group = check_by(by)
    where, params = ["hour >= ?"], [hour_of(since)]
    if until is not None:
        where.append("hour < ?")
        params.append(until)
    if collections is not None:
        where.append("collection IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(sorted(collections)))
    columns = "hour" + (f", {group}" if group else "")
    sql = (f"SELECT {columns}, {', '.join(f'sum({f})' for f in FIELDS)} FROM counts WHERE {' AND '.join(where)} "
           f"GROUP BY {columns} ORDER BY {columns}")
    names = ("hour", *((group,) if group else ()), *FIELDS)
    try:
        rows = connection.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if missing_table(exc):  # a database made before counts, read as it is (it cannot be migrated)
            return []
        raise
    return [dict(zip(names, row, strict=True)) for row in rows]


def missing_table(exc: sqlite3.OperationalError) -> bool:
    """True if ``exc`` says a table is missing (an optional family not made in a database read as it is)."""
    return str(exc).startswith("no such table")


def read(store: object, since: float, until: float | None = None, by: str | None = "function",
         collection: str | None = None) -> list[dict[str, Any]]:
    """The counts kept in ``store`` (an embedded store; any other has none) since ``since`` (Unix
    seconds), as :func:`read_in` gives them; ``collection``: only that one. Counts still queued in
    this process are written first."""
    check_by(by)
    if not isinstance(store, EmbeddedStore):
        return []
    drain_all()  # this process's counts (and the calls' counts that become counts) written first
    flush()  # (the calls' writer may have queued counts after this one wrote)
    with store.transaction() as connection:
        return read_in(connection, since, until, by, None if collection is None else [collection])


def totals(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The sum of each of :data:`FIELDS` over ``rows`` (as :func:`read` gives them), with the hit rate
    (hits / (hits + misses), None without calls)."""
    out: dict[str, Any] = {f: 0 for f in FIELDS}
    for row in rows:
        for f in FIELDS:
            out[f] += row[f]
    calls = out["hits"] + out["misses"]
    out["hit_rate"] = out["hits"] / calls if calls else None
    return out


def by_group(rows: Iterable[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    """``rows`` summed over their hours, one dict per name of ``by`` (``function`` or ``collection``),
    most seconds saved first."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row[by], []).append(row)
    out = [{by: name, **totals(group)} for name, group in groups.items()]
    return sorted(out, key=lambda r: (-r["seconds_saved"], -r["hits"], r[by]))
