"""Opening an SQLite database in WAL mode, as every table of pairio's is (except on a network
or FUSE file system, where SQLite's WAL does not work: there, its rollback journal)."""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

BUSY_TIMEOUT_S = 60.0


class _LazySqlite3:
    """The ``sqlite3`` module, imported at the first use of one of its names, not with ``import
    pairio`` (it loads ``datetime`` too: milliseconds a program that imports pairio without
    reading a store pays for nothing). pairio's modules name it ``from ..wal import sqlite3``.
    After the first use its names are this object's own attributes: plain reads, as the module's."""

    def __getattr__(self, name: str) -> Any:
        import sqlite3 as module

        self.__dict__.update(vars(module))  # (one C call: threads that race here write the same)
        return getattr(module, name)

    def __repr__(self) -> str:
        return "<sqlite3, imported at first use>"


sqlite3: Any = _LazySqlite3()


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


def open_wal(path: str | os.PathLike[str], *schema: str, timeout_s: float = BUSY_TIMEOUT_S,
             read_only_fallback: bool = True) -> sqlite3.Connection:
    """A connection (autocommit) to the database at ``path``, in WAL mode with ``synchronous =
    NORMAL``, its directory and the ``schema`` statements created if missing.

    Where it cannot be opened for writing (a full disk, a read-only file system, another
    user's file) but exists, it is opened read-only (:func:`open_read_only`), if
    ``read_only_fallback``; its writes then fail (``connection.read_only`` is True).
    """
    try:
        os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
        create_file(path)
        conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)
        try:
            set_up_wal(conn, lambda c: [c.execute(statement) for statement in schema], timeout_s)
            conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            conn.close()
            raise
    except (OSError, sqlite3.Error):
        if not read_only_fallback or not os.path.isfile(path):
            raise
        try:
            return open_read_only(path, timeout_s)
        except sqlite3.Error:
            pass
        raise
    return conn


def read_only_connection_class() -> type:
    """The ``factory`` of connections opened by :func:`open_read_only` (every write fails): an
    ``sqlite3.Connection`` with ``read_only = True``, made at first use, as ``sqlite3`` is loaded."""
    global _read_only_class
    if _read_only_class is None:
        _read_only_class = type("ReadOnlyConnection", (sqlite3.Connection,),
                                {"read_only": True, "__module__": __name__,
                                 "__doc__": "A connection opened by open_read_only: every write fails."})
    return _read_only_class


_read_only_class: type | None = None


def create_file(path: str | os.PathLike[str]) -> None:
    """Create the database file at ``path`` if missing, as the umask allows (0666 before it):
    SQLite would make it 0644 whatever the umask, so a group sharing the store could not write
    it, nor the ``-wal`` and ``-shm`` files SQLite then makes with its mode. In a setgid
    directory it takes the directory's group."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    except FileExistsError:
        return
    except OSError:
        if os.path.exists(path):
            return  # there already (a read-only file system refuses even O_CREAT of an existing file)
        raise
    os.close(fd)


def open_read_only(path: str | os.PathLike[str], timeout_s: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """A read-only connection to the database at ``path`` (which must exist) that writes nothing.

    ``mode=ro`` first: it reads a WAL beside the database (SQLite keeps the WAL index in
    memory where its ``-shm`` file cannot be made). Where that fails (a full disk, on which not
    even the ``-shm`` can be made), ``immutable=1``, which opens no other file; only when no
    WAL holds commits it would not see.
    """
    uri = "file:" + urllib.parse.quote(os.path.abspath(os.fspath(path)))
    try:
        conn = _checked(uri + "?mode=ro", timeout_s)
    except sqlite3.Error:
        wal = os.fspath(path) + "-wal"
        if os.path.exists(wal) and os.path.getsize(wal) > 0:
            raise
        conn = _checked(uri + "?mode=ro&immutable=1", timeout_s)
    return conn


def _checked(uri: str, timeout_s: float) -> sqlite3.Connection:
    conn = sqlite3.connect(uri, uri=True, timeout=timeout_s, isolation_level=None, factory=read_only_connection_class())
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        conn.close()
        raise
    return conn
