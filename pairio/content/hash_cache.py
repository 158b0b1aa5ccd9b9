"""The hash cache: a file's SHA-1, remembered while its signature (path, size, mtime, ctime, inode
and device) stays the same.

One small SQLite table (WAL mode, safe across threads and processes) under the
database directory, with the latest answers also kept in memory. An unchanged
file costs one ``stat`` and a dict or indexed SELECT lookup. A changed file is
always re-hashed, including the "racy" case of a file rewritten within the file
system's timestamp granularity of being hashed: a hash is remembered only for a
file last modified well before the hashing began (git's rule for its index), and
only if the file did not change while it was read.

The content store uses the same table to remember which objects it has verified
(:meth:`HashCache.remember`): an object whose signature is unchanged since it was
last hashed is not hashed again when it is read. Nothing but a damage writes an
object, so the racy rule is not applied there (see the README for what a signature
does not catch).

The cache is an optimisation: if its database cannot be used, hashing still
works (a warning says why it is slow).
"""

from __future__ import annotations

import collections
import os
import stat
import threading
import time
from pathlib import Path

from ..deferred import DeferredWriter
from ..errors import InvalidPathError
from ..hashing import is_valid_unicode, sha1_of_stream
from ..user_warnings import warn_user
from ..wal import open_wal, sqlite3
from ..write_faults import cause_of

FILENAME = "hash_cache.sqlite3"
# A file modified less than this long before its hashing started is not remembered:
# a later rewrite could share its mtime (coarse clocks, FAT's 2 s, NFS skew).
RACY_MARGIN_NS = 2_000_000_000

# Answers kept in memory per cache (the table stays the truth shared across processes).
_MEMORY_ENTRIES = 4096

# file_signatures replaced file_hashes (which had no ctime): the old table is dropped.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS file_signatures (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    dev INTEGER NOT NULL,
    sha1 TEXT NOT NULL
) WITHOUT ROWID
"""
_DROP_OLD = "DROP TABLE IF EXISTS file_hashes"
_LOOKUP = ("SELECT sha1 FROM file_signatures "
           "WHERE path = ? AND size = ? AND mtime_ns = ? AND ctime_ns = ? AND ino = ? AND dev = ?")
_RECORD = ("INSERT OR REPLACE INTO file_signatures (path, size, mtime_ns, ctime_ns, ino, dev, sha1) "
           "VALUES (?, ?, ?, ?, ?, ?, ?)")


def stat_regular_file(path: str | os.PathLike[str], what: str = "file") -> tuple[str, os.stat_result]:
    """The absolute path and stat of a regular file; InvalidPathError naming it otherwise."""
    if os.fspath(path) == "":  # abspath would quietly make it the current directory
        raise InvalidPathError(f"{what} path is empty")
    abspath = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(abspath)
    except FileNotFoundError:
        raise InvalidPathError(f"{what} {os.fspath(path)!r} does not exist") from None
    except OSError as exc:
        raise InvalidPathError(f"{what} {os.fspath(path)!r} cannot be read: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InvalidPathError(f"{what} {os.fspath(path)!r} is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise InvalidPathError(f"{what} {os.fspath(path)!r} is not a regular file")
    return abspath, st


def _signed64(n: int) -> int:
    # SQLite integers are signed 64-bit; some file systems use the full unsigned range for inodes.
    return n - (1 << 64) if n >= (1 << 63) else n


def signature(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What identifies a file's content without reading it: size, mtime, ctime, inode, device.

    A rewrite in place changes mtime and ctime (and ctime cannot be set back by a user),
    a replacement by rename changes the inode, a truncation the size.
    """
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, _signed64(st.st_ino), _signed64(st.st_dev)


class HashCache:
    """File hashes kept in ``<directory>/hash_cache.sqlite3``."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILENAME
        self._local = threading.local()
        self._broken = False
        self._memory: collections.OrderedDict[str, tuple[tuple[int, ...], str]] = collections.OrderedDict()
        self._memory_lock = threading.Lock()
        # Orders this process's writes of one table: a queued row never lands after a newer one.
        self._write_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HashCache({str(self.directory)!r})"

    def _connection(self) -> sqlite3.Connection | None:
        conn = getattr(self._local, "connection", None)
        # A connection inherited through fork() belongs to the parent: never use it.
        if conn is not None and self._local.pid == os.getpid():
            return conn
        if self._broken:
            return None
        try:
            conn = open_wal(self.path, _SCHEMA, _DROP_OLD)
        except (OSError, sqlite3.Error) as exc:
            self._disable(exc)
            return None
        self._local.connection, self._local.pid = conn, os.getpid()
        return conn

    def _disable(self, exc: Exception) -> None:
        # A store that cannot be written (a full disk, a read-only mount) is said so where a write
        # of its own fails; the hash cache only stops remembering.
        if not self._broken and cause_of(self.directory, exc) is None:
            warn_user(f"pairio hash cache {str(self.path)!r} is unusable ({exc}); "
                      "files will be re-hashed every time")
        self._broken = True

    def lookup(self, abspath: str, st: os.stat_result) -> str | None:
        """The remembered SHA-1 of the file at ``abspath`` if ``st`` still matches, else None."""
        sig = signature(st)
        with self._memory_lock:
            known = self._memory.get(abspath)
        if known is not None and known[0] == sig:
            return known[1]
        if not is_valid_unicode(abspath):
            # A name that is not valid UTF-8 (surrogate escapes) cannot be SQLite text: such a
            # file is simply hashed every time.
            return None
        conn = self._connection()
        if conn is None:
            return None
        try:
            row = conn.execute(_LOOKUP, (abspath, *sig)).fetchone()
        except sqlite3.Error as exc:
            self._disable(exc)
            return None
        if row is None:
            return None
        self._keep(abspath, sig, row[0])
        return row[0]

    def _keep(self, abspath: str, sig: tuple[int, ...], sha1: str) -> None:
        with self._memory_lock:
            self._memory[abspath] = (sig, sha1)
            self._memory.move_to_end(abspath)
            if len(self._memory) > _MEMORY_ENTRIES:
                self._memory.popitem(last=False)

    def record(self, abspath: str, st_before: os.stat_result, sha1: str, started_ns: int) -> bool:
        """Remember ``sha1`` for ``abspath`` if the file is unchanged since ``st_before`` and not racy."""
        if started_ns - st_before.st_mtime_ns < RACY_MARGIN_NS:
            return False
        try:
            st_after = os.stat(abspath)
        except OSError:
            return False
        if signature(st_after) != signature(st_before):
            return False
        return self.remember(abspath, st_before, sha1)

    def remember(self, abspath: str, st: os.stat_result, sha1: str, wait: bool = True) -> bool:
        """Remember that the file at ``abspath`` with signature ``st`` hashes to ``sha1``.

        No racy rule: for files only a damage can rewrite (the content store's objects),
        whose hash was computed from the bytes written or read under this very signature.
        With ``wait=False`` this process knows it at once, and a background thread writes it
        to the table for the others (opening a new table costs a store tens of milliseconds);
        it is written at exit at the latest, or lost with a killed process (then the next
        process hashes the file once more).
        """
        if not is_valid_unicode(abspath):
            return False
        sig = signature(st)
        if not wait:
            self._keep(abspath, sig, sha1)
            _queue_write(self, (abspath, *sig, sha1))
            return True
        with self._write_lock:
            self._keep(abspath, sig, sha1)
            return self._write(abspath, sig, sha1)

    def _write(self, abspath: str, sig: tuple[int, ...], sha1: str) -> bool:
        conn = self._connection()
        if conn is None:
            return False
        try:
            conn.execute(_RECORD, (abspath, *sig, sha1))
        except sqlite3.Error as exc:
            self._disable(exc)
            return False
        return True

    def _write_if_current(self, abspath: str, sig: tuple[int, ...], sha1: str) -> None:
        # A later signature of the same file may have been written since this one was queued
        # (the file was verified again after a change): the stale row must not replace it.
        with self._write_lock:
            with self._memory_lock:
                known = self._memory.get(abspath)
            if known is None or known == (sig, sha1):
                self._write(abspath, sig, sha1)

    def file_hash(self, path: str | os.PathLike[str]) -> str:
        """The SHA-1 hex of the file at ``path``: remembered if unchanged, else read and remembered."""
        abspath, st = stat_regular_file(path)
        sha1 = self.lookup(abspath, st)
        if sha1 is not None:
            return sha1
        started = time.time_ns()
        try:
            with open(abspath, "rb", buffering=0) as f:
                sha1, _ = sha1_of_stream(f)
        except OSError as exc:
            raise InvalidPathError(f"file {os.fspath(path)!r} cannot be read: {exc.strerror}") from None
        self.record(abspath, st, sha1, started)
        return sha1


# Signatures remembered without waiting, written to their tables in the order given, by a
# writer that starts at once and lingers a second for more.
_queued: collections.deque[tuple[HashCache, tuple]] = collections.deque()


def _queue_write(cache: HashCache, row: tuple) -> None:
    _queued.append((cache, row))
    _writer.notify()


def _write_queued() -> None:
    while _queued:
        try:
            cache, (abspath, *sig, sha1) = _queued.popleft()
        except IndexError:
            return
        cache._write_if_current(abspath, tuple(sig), sha1)


_writer = DeferredWriter("pairio-signatures", _write_queued, lambda: bool(_queued), interval_s=1.0,
                         forget=_queued.clear, eager=True)
