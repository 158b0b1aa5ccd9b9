"""Small objects kept as rows of one SQLite table instead of files.

A file costs a create, a write and a rename, and often a new shard directory: on many
file systems that is hundreds of microseconds, far more than the rest of a cache miss
of a small result. So a writer that asks for it (``ContentStore.writer(inline=True)``,
used for cached results) keeps an object of at most ``INLINE_MAX`` bytes as a row of
``<content>/small-objects.sqlite3`` (WAL mode, safe across threads and processes),
as diskcache keeps its small values. The row is the object: the store reads it, checks
it against its hash on every read, lists it, removes it and quarantines it like a file,
and writes it out as a file where a path is asked for (:meth:`ContentStore.path`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..content_layout import SMALL_OBJECTS_FILENAME
from ..errors import StoreUnavailableError
from ..wal import open_wal, sqlite3
from ..write_faults import not_writable

FILENAME = SMALL_OBJECTS_FILENAME
INLINE_MAX = 32 << 10

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    sha1 TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    mtime REAL NOT NULL
) WITHOUT ROWID
"""


def create_schema(connection: sqlite3.Connection) -> None:
    """Make the table of small objects on ``connection`` (a new database)."""
    connection.execute(_SCHEMA)


class SmallObjects:
    """The table of small objects of the content store in ``directory``.

    Opened at its first use; a store that never had a small object never creates it.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / FILENAME
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"SmallObjects({str(self.path)!r})"

    def _connection(self, create: bool) -> sqlite3.Connection | None:
        conn = getattr(self._local, "connection", None)
        # A connection inherited through fork() belongs to the parent: never use it.
        if conn is not None and self._local.pid == os.getpid():
            return conn
        if not create and not os.path.exists(self.path):
            return None
        try:
            conn = open_wal(self.path, _SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise self._error(exc) from exc
        self._local.connection, self._local.pid = conn, os.getpid()
        return conn

    def _error(self, exc: Exception) -> StoreUnavailableError:
        conn = getattr(self._local, "connection", None)
        if getattr(conn, "read_only", False):
            self._local.connection = None  # opened read-only: the next use tries to write again
        return (not_writable("small-object table", self.path, exc, detail=str(exc))
                or StoreUnavailableError(f"small-object table {str(self.path)!r} cannot be used: {exc}"))

    def _execute(self, sql: str, args: tuple = (), create: bool = False) -> sqlite3.Cursor | None:
        conn = self._connection(create)
        if conn is None:
            return None
        try:
            return conn.execute(sql, args)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def get_with_pair(self, store: Any, collection: str, key: str) -> tuple[str | None, bytes | None]:
        """The value of ``key`` in the pair store ``store`` (None if absent) and the bytes of this
        table's row it names (None if none, or not read so: the caller then reads the row itself),
        in one statement where ``store`` (a local one: embedded or directory) can attach this
        database; the embedded store's readers attach it apart from its writers, so they never
        wait on writers of pairs."""
        return store.get_with_object(collection, key, self)

    @staticmethod
    def select_data(schema: str, sha1_sql: str) -> str:
        """An SQL scalar subquery for the bytes of the row whose hash is the SQL expression
        ``sha1_sql`` (NULL if none), with this table's database attached as ``schema``."""
        return f"(SELECT data FROM {schema}.objects WHERE sha1 = {sha1_sql})"

    def get(self, sha1: str) -> bytes | None:
        """The bytes kept under ``sha1`` (not checked against it), or None."""
        cursor = self._execute("SELECT data FROM objects WHERE sha1 = ?", (sha1,))
        row = cursor.fetchone() if cursor is not None else None
        return None if row is None else row[0]

    def info(self, sha1: str) -> tuple[int, float] | None:
        """(size, mtime) of the row ``sha1``, or None."""
        cursor = self._execute("SELECT length(data), mtime FROM objects WHERE sha1 = ?", (sha1,))
        row = cursor.fetchone() if cursor is not None else None
        return None if row is None else (row[0], row[1])

    def put(self, sha1: str, data: bytes) -> None:
        """Keep ``data`` as ``sha1`` (hashed by the caller); an existing row only gets a new mtime,
        as a file stored again does (``pairio gc`` counts it as just written)."""
        self._execute("INSERT INTO objects (sha1, data, mtime) VALUES (?, ?, ?) "
                      "ON CONFLICT (sha1) DO UPDATE SET mtime = excluded.mtime",
                      (sha1, data, time.time()), create=True)

    def touch(self, sha1: str, size: int) -> bool:
        """Give the row ``sha1`` a new mtime if it holds ``size`` bytes; returns whether it does."""
        cursor = self._execute("UPDATE objects SET mtime = ? WHERE sha1 = ? AND length(data) = ?",
                               (time.time(), sha1, size))
        return cursor is not None and cursor.rowcount > 0

    def remove(self, sha1: str, older_than: float | None = None) -> int | None:
        """Delete the row ``sha1`` (only if its mtime is before ``older_than``, if given);
        returns its size, or None if there was no such row."""
        where = "sha1 = ?" + (" AND mtime < ?" if older_than is not None else "")
        args = (sha1,) if older_than is None else (sha1, older_than)
        conn = self._connection(create=False)
        if conn is None:
            return None
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(f"SELECT length(data) FROM objects WHERE {where}", args).fetchone()
                if row is not None:
                    conn.execute(f"DELETE FROM objects WHERE {where}", args)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return None if row is None else row[0]

    def infos(self) -> Iterator[tuple[str, int, float]]:
        """(sha1, size, mtime) of every row."""
        cursor = self._execute("SELECT sha1, length(data), mtime FROM objects")
        yield from cursor.fetchall() if cursor is not None else []
