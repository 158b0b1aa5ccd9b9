"""Opening an SQLite database in WAL mode, as every table of pairio's is (except on a network
or FUSE file system, where SQLite's WAL does not work: there, its rollback journal)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable

BUSY_TIMEOUT_S = 60.0


def set_up_wal(connection: sqlite3.Connection, setup: Callable[[sqlite3.Connection], None],
               timeout_s: float = BUSY_TIMEOUT_S) -> str:
    """Put ``connection`` in WAL mode and run ``setup`` (CREATE TABLE ...) on it; returns the
    journal mode SQLite reports. A database on a network or FUSE file system
    (:func:`journal_mode`) gets the rollback journal instead (``DELETE``).

    Switching to WAL takes an exclusive lock and does not wait on the busy handler when
    another process is doing the same, so this retries for up to ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    wanted = journal_mode(connection.execute("PRAGMA database_list").fetchone()[2])
    while True:
        try:
            mode = connection.execute(f"PRAGMA journal_mode = {wanted}").fetchone()[0]
            setup(connection)
            return mode
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def journal_mode(path: str | os.PathLike[str]) -> str:
    """``WAL``, or ``DELETE`` (the rollback journal) for a database at ``path`` on a network or
    FUSE file system, where SQLite's WAL does not work."""
    from .filesystems import shared_file_system

    return "WAL" if not path or shared_file_system(os.path.dirname(os.fspath(path))) is None else "DELETE"


def open_wal(path: str | os.PathLike[str], *schema: str, timeout_s: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """A connection (autocommit) to the database at ``path``, in WAL mode with ``synchronous =
    NORMAL``, its directory and the ``schema`` statements created if missing."""
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)
    try:
        set_up_wal(conn, lambda c: [c.execute(statement) for statement in schema], timeout_s)
        conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn
