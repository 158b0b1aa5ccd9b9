"""The last access of each object in a content directory (a server's), and eviction by it.

A server has no record of what a result cost to compute, so its content is kept
in bounds by recency: :class:`AccessLog` counts reads in memory and writes them
(the last read's time and the number of reads) to ``access.sqlite3`` in the
content directory from a background writer every few seconds and when the process
exits, so a read costs a dictionary update. :func:`evict_least_recent` removes the objects
read longest ago (an object never read counts from when it was stored) until the
directory holds at most a given size, leaving objects stored or read within the
grace period and objects a reader holds open (``pairio gc --max-size`` on a
server directory).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import weakref
from pathlib import Path

from ..content import directory_lock
from ..content.store import ContentStore
from ..deferred import DeferredWriter
from ..wal import sqlite3  # the module, imported at first use

logger = logging.getLogger("pairio")

FILENAME = "access.sqlite3"
_FLUSH_INTERVAL_S = 5.0
_SCHEMA = ("CREATE TABLE IF NOT EXISTS access (sha1 TEXT PRIMARY KEY, last_access REAL NOT NULL, "
           "reads INTEGER NOT NULL) WITHOUT ROWID")
_ADD = ("INSERT INTO access (sha1, last_access, reads) VALUES (?, ?, ?) ON CONFLICT (sha1) DO UPDATE SET "
        "last_access = max(last_access, excluded.last_access), reads = reads + excluded.reads")
_logs: weakref.WeakSet[AccessLog] = weakref.WeakSet()


class AccessLog:
    """Reads of the objects in ``directory``, written to ``directory/access.sqlite3`` in batches."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / FILENAME
        self._lock = threading.Lock()
        self._pending: dict[str, list[float]] = {}
        _logs.add(self)

    def touch(self, sha1: str) -> None:
        """Count a read of ``sha1`` now."""
        now = time.time()
        with self._lock:
            row = self._pending.get(sha1)
            if row is None:
                self._pending[sha1] = [now, 1]
            else:
                row[0] = now
                row[1] += 1
        _writer.notify()

    def flush(self) -> None:
        """Write the reads counted so far (errors are logged: access times are hints, not data)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending or not self.path.parent.is_dir():
            return
        try:
            with _connect(self.path) as connection:
                connection.executemany(_ADD, [(s, t, int(n)) for s, (t, n) in pending.items()])
        except sqlite3.Error as exc:
            logger.debug("could not record content access in %s: %s", self.path, exc)

    def last_access(self) -> dict[str, tuple[float, int]]:
        """``{sha1: (time of the last read, reads)}`` for every object read so far."""
        self.flush()
        if not self.path.exists():
            return {}
        with _connect(self.path) as connection:
            return {s: (t, n) for s, t, n in connection.execute("SELECT sha1, last_access, reads FROM access")}


class _connect:
    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path, timeout=30.0)

    def __enter__(self) -> sqlite3.Connection:
        self.connection.execute(_SCHEMA)
        return self.connection

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            if exc_type is None:
                self.connection.commit()
        finally:
            self.connection.close()


def _flush_all() -> None:
    for log in list(_logs):
        log.flush()


def _forget_all() -> None:
    # The parent's reads not yet written are the parent's to write.
    for log in list(_logs):
        log._lock = threading.Lock()
        log._pending = {}


_writer = DeferredWriter("pairio-access", _flush_all, lambda: any(log._pending for log in list(_logs)),
                         interval_s=_FLUSH_INTERVAL_S, forget=_forget_all)


@dataclasses.dataclass
class AccessEvictionReport:
    """What one pass of :func:`evict_least_recent` did."""

    objects: int = 0
    bytes: int = 0
    objects_in_use: int = 0
    size_before: int = 0
    size_after: int = 0


def evict_least_recent(store: ContentStore, max_size: int, grace_s: float = 3600.0,
                       dry_run: bool = False) -> AccessEvictionReport:
    """Remove the objects of ``store`` read longest ago until it holds at most ``max_size`` bytes."""
    report = AccessEvictionReport()
    reads = AccessLog(store.directory).last_access()
    objects: list[tuple[float, str, str | None, int]] = []
    for info in store.iter_object_infos():
        last = max(info.mtime, reads.get(info.sha1, (0.0, 0))[0])
        objects.append((last, info.sha1, info.path, info.size))
        report.size_before += info.size
    report.size_after = report.size_before
    if report.size_after <= max_size:
        return report
    objects.sort()
    now = time.time()
    with directory_lock.removing(store.directory) as held:
        if not held:
            return report
        for last, name, path, size in objects:
            if report.size_after <= max_size or now - last < grace_s:
                break
            if dry_run:
                freed: int | None = size
            elif path is None:  # a small object kept as a row: no reader to wait for
                freed = store.small.remove(name)
            else:
                freed = directory_lock.remove_unless_read(path)
            if freed is None:
                report.objects_in_use += 1
                continue
            report.objects += 1
            report.bytes += freed
            report.size_after -= freed
    return report
