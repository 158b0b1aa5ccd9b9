"""Hits, misses and seconds per cached function: the log line of each call, and the counts.

:func:`stats` gives this process's counts. The counts are also added to a
small SQLite table in the database directory (``cache_stats.sqlite3``), which
``pairio stats`` prints: the totals across runs are what a user wants to see
from the command line. Writing a transaction per call would cost more than a
hit or a miss of a small step, so deltas are kept in memory and written once a
second by a background thread (while there are any), and when the process exits (normally, or a forked pool worker's
exit): the totals are exact after a normal exit; a process killed outright loses
at most its last second of counts.
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..deferred import DeferredWriter
from ..errors import PairioError
from ..lifecycle import counts
from ..result_keys import read_sides, seconds_key
from ..wal import open_wal, sqlite3

logger = logging.getLogger("pairio")

FILENAME = "cache_stats.sqlite3"
_FLUSH_INTERVAL_S = 1.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache_stats (
    function TEXT PRIMARY KEY,
    hits INTEGER NOT NULL,
    misses INTEGER NOT NULL,
    seconds_saved REAL NOT NULL,
    seconds_computed REAL NOT NULL,
    last_used REAL NOT NULL,
    remote_hits INTEGER NOT NULL DEFAULT 0,
    bytes_downloaded INTEGER NOT NULL DEFAULT 0,
    bytes_uploaded INTEGER NOT NULL DEFAULT 0
)
"""
# Added later: a table made by an older pairio gains them (see _Connection).
_REMOTE_COLUMNS = ("remote_hits", "bytes_downloaded", "bytes_uploaded")
_ADD = """
INSERT INTO cache_stats (function, hits, misses, seconds_saved, seconds_computed, last_used,
                         remote_hits, bytes_downloaded, bytes_uploaded)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (function) DO UPDATE SET
    hits = hits + excluded.hits, misses = misses + excluded.misses,
    seconds_saved = seconds_saved + excluded.seconds_saved,
    seconds_computed = seconds_computed + excluded.seconds_computed,
    last_used = excluded.last_used,
    remote_hits = remote_hits + excluded.remote_hits,
    bytes_downloaded = bytes_downloaded + excluded.bytes_downloaded,
    bytes_uploaded = bytes_uploaded + excluded.bytes_uploaded
"""

_lock = threading.Lock()
# function -> [hits, misses, saved, computed, remote hits, bytes downloaded, bytes uploaded]
_process: dict[str, list[float]] = {}
_pending: dict[tuple[Path, str], list[float]] = {}  # (database dir, function) -> the same
# Hits whose computing seconds are still only in their store, read when the counts are next
# read or written: (function, database dir, store, collection, key of the result, time of the hit).
_unread: list[tuple[str, Path, Any, str, str, float]] = []
# Quiet calls not counted yet (see record): (0 for a hit, 1 for a miss, function, database dir,
# store, collection, key of a hit's result (its computing seconds read later, as _unread's; None
# for a miss), seconds saved but those / seconds computed, time of the call). A deque: appended
# without the lock, taken from the other end under it.
_quiet_calls: collections.deque[tuple[int, str, Path, Any, str, str | None, float, float]] = collections.deque()


def record(function: str, key: str, hit: bool, seconds: float, database_dir: Path,
           waited: bool = False, verbose: bool = False, reason: str = "", loaded: float = 0.0,
           remote: bool = False, downloaded: int = 0, uploaded: int = 0,
           seconds_at: tuple[Any, str, str] | None = None, counted: tuple[Any, str] | None = None) -> None:
    """Count one call and log its line: ``hit  name key8 saved 1.16s (computed in 1.23s, loaded in 0.07s)``
    / ``miss name key8 computed 1.23s`` (followed by ``reason``, why it missed, if given).

    For a hit, ``seconds`` is what computing took and ``loaded`` what the hit took: the time saved
    is their difference, negative when loading took longer than computing would have.
    ``remote``: a hit found through the server (its pair or its content); ``downloaded`` and
    ``uploaded``: the bytes of content moved for the call.
    The line goes to the ``pairio`` logger at INFO; with ``verbose`` (decided by the caller: the
    decorator's or config's ``verbose``, IPython) a :func:`short_line` is printed to stderr when
    that logger would not show the line.

    ``seconds_at``: for a hit, the (store, collection, key) of the result, whose computing seconds
    are kept under its :func:`seconds_key`: read (instead of ``seconds``) only when a line is
    logged, or when the counts are next read or written, in one statement for all hits counted
    so. A hit of a small result is one read of SQLite; this spares it a second.

    ``counted``: the (store, collection) whose hourly counts (:mod:`pairio.lifecycle.counts`) count
    the call too (default: those of ``seconds_at``; without either, none).
    """
    logged = logger.isEnabledFor(logging.INFO)
    if not (logged or verbose or remote or downloaded or uploaded):
        # The commonest calls, quiet ones: queued as they are, and counted (in this process's counts,
        # the table's and the hourly counts) when any of them is next read or written.
        if hit and seconds_at is not None and counted is None:
            _quiet_calls.append((0, function, database_dir, *seconds_at, seconds - loaded, time.time()))
            _writer.notify()
            return
        if not hit and seconds_at is None and counted is not None:
            _quiet_calls.append((1, function, database_dir, *counted, None, seconds, time.time()))
            _writer.notify()
            return
    if seconds_at is not None and (logged or verbose):
        store, collection, result_key = seconds_at
        seconds, seconds_at = _read_seconds(store, collection, result_key).get(result_key, 0.0), None
    if hit:
        computed, seconds = seconds, seconds - loaded  # the net saving is what is counted
    if logged:
        if hit:
            line = (f"hit  {function} {key[:8]} saved {seconds:.2f}s (computed in {computed:.2f}s, "
                    f"loaded in {loaded:.2f}s)" + (" from the server" if remote else "")
                    + (f", {_size(downloaded)} downloaded" if downloaded else "")
                    + (" (computed elsewhere while waiting)" if waited else ""))
        else:
            line = (f"miss {function} {key[:8]} computed {seconds:.2f}s"
                    + (f", {_size(uploaded)} uploaded" if uploaded else "") + (f": {reason}" if reason else ""))
        logger.info("%s", line)
    elif verbose:
        print(short_line(function, key, hit, seconds, reason, remote=remote, waited=waited), file=sys.stderr)
    column = 0 if hit else 1
    if counted is None and seconds_at is not None:
        counted = seconds_at[0], seconds_at[1]
    if counted is not None:
        if hit:
            counts.add(counted[0], counted[1], function, hits=1, seconds_saved=seconds, bytes_down=downloaded,
                       bytes_up=uploaded)
        else:
            counts.add(counted[0], counted[1], function, misses=1, seconds_computed=seconds, bytes_up=uploaded,
                       bytes_down=downloaded)
    pending = (database_dir, function)
    with _lock:
        # Written out for the two tables, not as a loop over them: this runs on every hit.
        row = _process.get(function)
        if row is None:
            row = _process[function] = [0, 0, 0.0, 0.0, 0, 0, 0]
        row[column] += 1
        row[2 + column] += seconds
        if remote or downloaded or uploaded:
            row[4] += remote
            row[5] += downloaded
            row[6] += uploaded
        row = _pending.get(pending)
        if row is None:
            row = _pending[pending] = [0, 0, 0.0, 0.0, 0, 0, 0]
        row[column] += 1
        row[2 + column] += seconds
        if remote or downloaded or uploaded:
            row[4] += remote
            row[5] += downloaded
            row[6] += uploaded
        if seconds_at is not None:
            _unread.append((function, database_dir, *seconds_at, time.time()))
    _writer.notify()


def short_line(function: str, key: str, hit: bool, seconds: float, reason: str = "", remote: bool = False,
               waited: bool = False) -> str:
    """The one line a verbose call prints: ``pairio: hit clean 3f2a9c1e, saved 12.3 s`` /
    ``pairio: miss clean 3f2a9c1e, computed 0.52 s: constant T changed ...``."""
    name = function.removeprefix("__main__.")
    if hit:
        return (f"pairio: hit {name} {key[:8]}, saved {_seconds(seconds)}" + (" (from the server)" if remote else "")
                + (" (computed elsewhere while waiting)" if waited else ""))
    # A notebook's names are all __main__'s: said without it.
    reason = reason.removeprefix("missed because ").replace(" __main__.", " ")
    return f"pairio: miss {name} {key[:8]}, computed {_seconds(seconds)}" + (f": {reason}" if reason else "")


def _seconds(seconds: float) -> str:
    if abs(seconds) >= 0.1:
        return f"{seconds:.3g} s"
    return f"{seconds * 1000:.2g} ms" if abs(seconds) >= 0.0001 else "under 0.1 ms"


def _read_seconds(store: Any, collection: str, *keys: str) -> dict[str, float]:
    """The seconds the results of ``keys`` took to compute, as kept in ``store`` (absent,
    unreadable or not a number: left out)."""
    try:
        found = read_sides(lambda asked: store.get_many(collection, asked), seconds_key, keys)
    except PairioError as exc:
        logger.debug("could not read the computing seconds of cached results: %s", exc)
        return {}
    out = {}
    for key, text in found.items():
        try:
            out[key] = float(text)
        except ValueError:
            continue
    return out


def _add_unread_seconds() -> None:
    """Count the computing seconds of the hits counted without them (:func:`record`'s ``seconds_at``)."""
    with _lock:
        _count_quiet_calls()
        if not _unread:
            return
        unread = list(_unread)
        _unread.clear()
    by_place: dict[tuple[Any, str, Path], list[tuple[str, str, float]]] = {}
    for function, directory, store, collection, key, at in unread:
        by_place.setdefault((store, collection, directory), []).append((function, key, at))
    for (store, collection, directory), hits in by_place.items():
        if not directory.is_dir():
            continue  # the database was removed (a temporary one): do not make it again
        seconds = _read_seconds(store, collection, *{key for _, key, _ in hits})
        with _lock:
            for function, key, at in hits:
                saved = seconds.get(key, 0.0)
                if saved:
                    _process.setdefault(function, [0, 0, 0.0, 0.0, 0, 0, 0])[2] += saved
                    _pending.setdefault((directory, function), [0, 0, 0.0, 0.0, 0, 0, 0])[2] += saved
                    counts.add(store, collection, function, seconds_saved=saved, at=at)


def _count_quiet_calls() -> None:
    """Count the calls :func:`record` queued (called holding ``_lock``): as it counts any other call,
    the hourly counts in the hour each was made."""
    queued = _quiet_calls
    while queued:
        try:
            column, function, directory, store, collection, key, seconds, at = queued.popleft()
        except IndexError:  # (taken by another thread meanwhile: never, under the lock)
            break
        row = _process.get(function)
        if row is None:
            row = _process[function] = [0, 0, 0.0, 0.0, 0, 0, 0]
        row[column] += 1
        row[2 + column] += seconds
        row = _pending.get((directory, function))
        if row is None:
            row = _pending[(directory, function)] = [0, 0, 0.0, 0.0, 0, 0, 0]
        row[column] += 1
        row[2 + column] += seconds
        if column == 0:
            counts.add(store, collection, function, hits=1, seconds_saved=seconds, at=at)
            _unread.append((function, directory, store, collection, key, at))
        else:
            counts.add(store, collection, function, misses=1, seconds_computed=seconds, at=at)


def stats() -> dict[str, dict[str, Any]]:
    """This process's counts: ``{function: {hits, misses, seconds_saved, seconds_computed}}``."""
    _add_unread_seconds()
    with _lock:
        return {name: _row(row) for name, row in sorted(_process.items())}


def reset() -> None:
    """Forget this process's counts (the persistent table is kept)."""
    _add_unread_seconds()  # theirs to count in the table
    with _lock:
        _process.clear()


def _row(row: list[float] | tuple) -> dict[str, Any]:
    return {"hits": int(row[0]), "misses": int(row[1]),
            "seconds_saved": row[2], "seconds_computed": row[3], "remote_hits": int(row[4]),
            "bytes_downloaded": int(row[5]), "bytes_uploaded": int(row[6])}


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def flush() -> None:
    """Add the counts not yet written to each database's table (errors are logged, never raised)."""
    _writer.flush()


def _write() -> None:
    _add_unread_seconds()
    with _lock:
        pending = dict(_pending)
        _pending.clear()
    by_dir: dict[Path, list[tuple]] = {}
    now = time.time()
    for (directory, function), row in pending.items():
        by_dir.setdefault(directory, []).append((function, int(row[0]), int(row[1]), row[2], row[3], now,
                                                 int(row[4]), int(row[5]), int(row[6])))
    for directory, rows in by_dir.items():
        if not directory.is_dir():
            continue  # the database was removed (a temporary one): do not make it again
        try:
            with _connect(directory) as conn:
                conn.executemany(_ADD, rows)
        except (sqlite3.Error, OSError) as exc:
            logger.debug("could not record cache statistics in %s: %s", directory, exc)


def read_persistent(database_dir: Path) -> dict[str, dict[str, Any]]:
    """The totals across runs recorded in ``database_dir``."""
    flush()
    path = database_dir / FILENAME
    if not path.exists():
        return {}
    with _connect(database_dir, write=False) as conn:
        rows = conn.execute("SELECT function, hits, misses, seconds_saved, seconds_computed, remote_hits, "
                            "bytes_downloaded, bytes_uploaded, last_used FROM cache_stats ORDER BY function").fetchall()
    return {r[0]: {**_row(r[1:8]), "last_used": r[8]} for r in rows}


def clear_persistent(database_dir: Path) -> None:
    """Empty the table of totals in ``database_dir``."""
    flush()
    if (database_dir / FILENAME).exists():
        with _connect(database_dir) as conn:
            conn.execute("DELETE FROM cache_stats")


class _Connection:
    """A transaction (``write``) or a read on this thread's connection to the table in
    ``directory``: kept open, in WAL mode with ``synchronous = NORMAL`` as pairio's other tables,
    so that a pool worker, which writes its counts at every call, pays a commit, not an open, a
    schema check and the fsyncs of a rollback journal."""

    def __init__(self, directory: Path, write: bool = True) -> None:
        self.conn = _connection(directory)
        self.write = write

    def __enter__(self) -> sqlite3.Connection:
        if self.write:
            self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            if self.write:
                try:
                    self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
                except sqlite3.Error:
                    if self.conn.in_transaction:  # a COMMIT that failed (busy): the kept connection
                        self.conn.execute("ROLLBACK")  # must not stay inside its transaction
                    raise
        finally:
            if getattr(self.conn, "read_only", False):
                self.conn.close()  # not kept: the next use tries to open it for writing again


_local = threading.local()
_KEPT_CONNECTIONS = 4  # per thread: a process uses one database, tests and tools a few


def _connection(directory: Path) -> sqlite3.Connection:
    """This thread's connection to ``directory``'s table, opened (the table made or brought up to
    date) at first use; opened again in a forked child, when the file was replaced, or when it
    was opened read-only."""
    path = directory / FILENAME
    kept: dict[Path, tuple[int, int, sqlite3.Connection]] = _local.__dict__.setdefault("connections", {})
    found = kept.pop(directory, None)
    try:
        inode: int | None = os.stat(path).st_ino
    except FileNotFoundError:
        inode = None
    if found is not None and found[0] == os.getpid():
        if found[1] == inode:
            kept[directory] = found  # the newest used last
            return found[2]
        found[2].close()
    conn = open_wal(path, _SCHEMA, timeout_s=30.0)
    if not getattr(conn, "read_only", False):
        have = {row[1] for row in conn.execute("PRAGMA table_info(cache_stats)")}
        for column in _REMOTE_COLUMNS:
            if column not in have:
                try:
                    conn.execute(f"ALTER TABLE cache_stats ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
                except sqlite3.OperationalError as exc:
                    # Another process added it between our look and our ALTER: what we wanted.
                    if "duplicate column" not in str(exc):
                        raise
        while len(kept) >= _KEPT_CONNECTIONS:
            oldest = next(iter(kept))
            pid, _, old = kept.pop(oldest)
            if pid == os.getpid():
                old.close()
        kept[directory] = (os.getpid(), os.stat(path).st_ino, conn)
    return conn


def _connect(directory: Path, write: bool = True) -> _Connection:
    return _Connection(directory, write)


def _has_work() -> bool:
    return bool(_pending or _unread or _quiet_calls)


def _forget() -> None:
    # The parent's counts not yet written are the parent's to write: a child writing them too
    # would count them twice. The lock may have been held by another thread at the fork.
    global _lock
    _lock = threading.Lock()
    _pending.clear()
    _unread.clear()
    _quiet_calls.clear()


_writer = DeferredWriter("pairio-stats", _write, _has_work, interval_s=_FLUSH_INTERVAL_S, forget=_forget)
