"""The embedded key/value store: one SQLite database in WAL mode.

One table keyed by (collection, key). WAL lets readers run beside one writer
across threads and processes; every set commits before it returns, so it
survives a crash of the process (``synchronous=NORMAL``: the commit is in the
WAL, which the OS holds even if this process dies; only a power cut can lose
the last commits). A process killed mid-write loses at most its uncommitted
transaction.

Beside the :class:`~pairio.kv.base.KeyValueStore` methods, other layers use only this
extension surface:

- :func:`register_schema`: a layer's own tables in the same database (the records' are
  registered by :mod:`pairio.lifecycle.schema`), made and migrated once per database;
- :meth:`EmbeddedStore.transaction`, and inside it :meth:`~EmbeddedStore.write_pairs`,
  :meth:`~EmbeddedStore.delete_pairs`, :meth:`~EmbeddedStore.delete_unchanged` and
  :meth:`~EmbeddedStore.long_values`: pairs changed or read in one transaction with those tables;
- :meth:`EmbeddedStore.get_with_object`: a pair and the row of an attached database it names
  (:class:`~pairio.kv.base.Attachment`, such as the content store's small objects), in one read;
- :meth:`~EmbeddedStore.collections`, :meth:`~EmbeddedStore.items`, :meth:`~EmbeddedStore.count`
  (listings), :meth:`~EmbeddedStore.lost` and :meth:`~EmbeddedStore.check` (health), and for
  ``pairio fsck``: :func:`new_database`, :data:`DATABASE_FILENAME`, :data:`MARKER_FILENAME`.

SQL on the pairs table is written only here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
import urllib.parse
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from ..content_layout import holds_objects
from ..errors import ConfigurationError, StoreNotWritableError, StoreUnavailableError
from ..wal import create_file, journal_mode, open_read_only, read_only_connection_class, set_up_wal, sqlite3
from ..write_faults import not_writable
from .base import Attachment, KeyValueStore

DATABASE_FILENAME = "kv.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pairs (
    collection TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (collection, key)
) WITHOUT ROWID
"""
_GET = "SELECT value FROM pairs WHERE collection = ? AND key = ?"
_SET = (
    "INSERT INTO pairs (collection, key, value) VALUES (?, ?, ?) "
    "ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value"
)
# Up to this many pairs are set by one statement of that many rows (3 variables each: far under
# SQLite's oldest limit of 999).
_ONE_STATEMENT_PAIRS = 8


@functools.lru_cache(maxsize=_ONE_STATEMENT_PAIRS)
def _set_rows(n: int) -> str:
    """:data:`_SET` for ``n`` rows at once."""
    return ("INSERT INTO pairs (collection, key, value) VALUES " + ", ".join(["(?, ?, ?)"] * n)
            + " ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value")
_DELETE = "DELETE FROM pairs WHERE collection = ? AND key = ?"
# One statement for any number of keys: the keys travel as one JSON array, and
# SQLite answers one JSON array of values in the same order (null where absent).
# This spares binding a parameter, and building a Python row, per key; the
# LEFT JOIN keeps json_each as the outer loop, so each key is one primary-key seek.
_GET_MANY = (
    "SELECT json_group_array(value) FROM ("
    "SELECT p.value AS value FROM json_each(?) AS j "
    "LEFT JOIN pairs AS p ON p.collection = ? AND p.key = j.value ORDER BY j.id)"
)
# A few keys (a cached call asks for two) are cheapest as one row of scalar subqueries,
# each a primary-key seek: no JSON, and no IN list for the planner to sort.
_SMALL_BATCH = 8
_GET_FEW = [
    "SELECT " + ", ".join(f"(SELECT value FROM pairs WHERE collection = ?1 AND key = ?{i + 2})" for i in range(n))
    for n in range(_SMALL_BATCH + 1)
]
# The name under which another layer's database is attached (get_with_object).
_OBJECTS_SCHEMA = "small_objects"
_BUSY_TIMEOUT_MS = 60_000
# How many pairs of keys found more than once one thread's reader keeps (see _Seen).
_SEEN_KEYS = 4096

class _Seen:
    """The pairs one thread's reader (see ``EmbeddedStore.get_with_object``) read of the keys found
    more than once: ``values``, (collection, key) -> value, as they were at ``version``, the
    pairs database's ``PRAGMA data_version``. That changes when any other connection (another
    thread's, another process's) commits to the pairs: while it has not, no pair was written or
    deleted, and a kept value is the value. Objects' bytes are not kept here (a damaged row is
    found when read): the caller keeps what it verified."""

    def __init__(self) -> None:
        self.version: int | None = None
        self.values: dict[tuple[str, str], str] = {}
        self.asked: set[tuple[str, str]] = set()

    def ask(self, ident: tuple[str, str]) -> None:
        """Note that ``ident`` was found once: read again, it is kept."""
        if len(self.asked) >= _SEEN_KEYS:  # ever new keys: keep it bounded
            self.asked.clear()
        self.asked.add(ident)

    def keep(self, ident: tuple[str, str], value: str, version: int) -> None:
        """Keep ``ident``'s value, read at ``version`` (those of an older version go)."""
        if version != self.version or len(self.values) >= _SEEN_KEYS:
            self.values.clear()
            self.version = version
        self.values[ident] = value


class _Schemas:
    """The table families registered beside the pairs (:func:`register_schema`), in order."""

    def __init__(self) -> None:
        self.families: dict[str, tuple[tuple[str, ...], ...]] = {}
        self.in_user_version: str | None = None
        self.optional: set[str] = set()  # families an older database read as it is may lack
        self.generation = 0


_schemas = _Schemas()
# The versions of families not kept in PRAGMA user_version.
_VERSIONS_SCHEMA = ("CREATE TABLE IF NOT EXISTS schema_versions "
                    "(family TEXT PRIMARY KEY, version INTEGER NOT NULL) WITHOUT ROWID")


def register_schema(family: str, migrations: Sequence[Sequence[str]], *, in_user_version: bool = False,
                    optional: bool = False) -> None:
    """Keep the tables of ``family`` in every embedded database: ``migrations[i]`` holds the
    statements that take it from version ``i`` to ``i + 1``. Each step runs once per database,
    in its own transaction, under the write lock (two processes opening a new store at once
    migrate it once). A step should only add tables, indexes and triggers, so an older pairio
    keeps working on a migrated database. ``in_user_version``: the family's version is kept in
    ``PRAGMA user_version`` (one family only: the records', numbered so before families were
    registered); other families' in the ``schema_versions`` table. ``optional``: a database that
    cannot be migrated (a full disk, a read-only mount) and lacks this family's newest tables is
    still read as it is (its readers take missing tables as empty); otherwise it is refused."""
    steps = tuple(tuple(step) for step in migrations)
    if optional:
        _schemas.optional.add(family)
    else:
        _schemas.optional.discard(family)
    if in_user_version:
        if _schemas.in_user_version not in (None, family):
            raise ConfigurationError(f"schema family {_schemas.in_user_version!r} already keeps PRAGMA user_version")
        _schemas.in_user_version = family
    if _schemas.families.get(family) != steps:
        _schemas.families[family] = steps
        _schemas.generation += 1


def _version(connection: sqlite3.Connection, family: str) -> int:
    """The version of ``family`` in the database of ``connection`` (0: not made yet)."""
    if family == _schemas.in_user_version:
        return connection.execute("PRAGMA user_version").fetchone()[0]
    if connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_versions'").fetchone() is None:
        return 0
    row = connection.execute("SELECT version FROM schema_versions WHERE family = ?", (family,)).fetchone()
    return 0 if row is None else row[0]


def _set_version(connection: sqlite3.Connection, family: str, number: int) -> None:
    if family == _schemas.in_user_version:
        connection.execute(f"PRAGMA user_version = {int(number)}")
        return
    connection.execute(_VERSIONS_SCHEMA)
    connection.execute("INSERT INTO schema_versions (family, version) VALUES (?, ?) "
                       "ON CONFLICT (family) DO UPDATE SET version = excluded.version", (family, number))


def _behind(connection: sqlite3.Connection) -> bool:
    """True if a registered family, not optional, is older in this database than registered."""
    return any(_version(connection, family) < len(steps) for family, steps in _schemas.families.items()
               if family not in _schemas.optional)


def _migrate(connection: sqlite3.Connection) -> None:
    """Bring every registered family to its newest version, one step per transaction."""
    for family, steps in list(_schemas.families.items()):
        version = _version(connection, family)
        for number, script in enumerate(steps[version:], start=version + 1):
            connection.execute("BEGIN IMMEDIATE")
            try:
                # Another process may have migrated between our read and our lock.
                if _version(connection, family) < number:
                    for statement in script:
                        connection.execute(statement)
                    _set_version(connection, family, number)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

_stores: weakref.WeakSet[EmbeddedStore] = weakref.WeakSet()
# Connections inherited through fork() must never be used, nor closed, by the child:
# closing could checkpoint a WAL the parent is still using. They are kept here.
_inherited: list[object] = []


def _forget_connections_after_fork() -> None:
    for store in list(_stores):
        _inherited.append(store._local)
        store._local = threading.local()


os.register_at_fork(after_in_child=_forget_connections_after_fork)


# Written beside the database once it holds its schema: a database missing later, while the
# content directory holds objects, was lost, not yet to be made (see EmbeddedStore).
MARKER_FILENAME = ".pairio-database-made"
_MARKER_TEXT = (f"pairio made {DATABASE_FILENAME} in this directory. If it is missing (or empty) while the "
                "content directory holds objects, pairio refuses to start an empty store in its place: restore "
                "it, or run `pairio fsck --repair`.\n")


def create_schema(connection: sqlite3.Connection) -> None:
    """Make the tables of a new database (the pairs and every registered family) on ``connection``."""
    connection.execute(_SCHEMA)
    _migrate(connection)


def new_database(directory: Path, prefix: str) -> Path:
    """A new database with the schema, at a temporary name in ``directory`` (``prefix`` + random),
    made as the umask and the directory's group allow; the caller renames or links it into place."""
    temp = directory / f"{prefix}{os.urandom(6).hex()}"
    create_file(temp)
    try:
        connection = sqlite3.connect(temp, isolation_level=None)
        try:
            create_schema(connection)
        finally:
            connection.close()
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return temp


class EmbeddedStore(KeyValueStore):
    """A SQLite-backed store in ``directory`` (created if missing); thread- and process-safe.

    ``content_dir`` is the content store beside it (default ``directory/content``): a database
    that is empty (0 bytes), or missing where one was made, while that holds objects is a
    StoreUnavailableError naming both, never a new empty store. The database is made whole
    (schema included) under a temporary name and linked into place, so no process ever sees
    it empty.
    """

    def __init__(self, directory: str | os.PathLike[str], content_dir: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory)
        self.path = self.directory / DATABASE_FILENAME
        self.content_dir = self.directory / "content" if content_dir is None else Path(content_dir)
        self._local = threading.local()
        _stores.add(self)

    def __repr__(self) -> str:
        return f"EmbeddedStore({str(self.directory)!r})"

    # --- connections ------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        local = self._local
        try:
            connection = local.connection
        except AttributeError:
            generation = _schemas.generation
            connection = self._connect()
            local.connection, local.generation = connection, generation
            return connection
        if local.generation != _schemas.generation:  # a family registered since: make its tables
            return self._upgrade(connection)
        return connection

    def _upgrade(self, connection: sqlite3.Connection) -> sqlite3.Connection:
        """``connection``, with the families registered since it was opened made in its database (a
        connection that cannot write is opened again, which makes or checks them as at first)."""
        local = self._local
        generation = _schemas.generation
        if getattr(connection, "read_only", False):
            self.close()
            return self._connection()
        try:
            _migrate(connection)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        local.generation = generation
        return connection

    def _connect(self) -> sqlite3.Connection:
        if self.directory.exists() and not self.directory.is_dir():
            raise StoreUnavailableError(
                f"pairio database path {str(self.directory)!r} exists but is not a directory"
            )
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._check_not_lost()
            if not self.path.exists():
                self._create()
        except OSError as exc:
            if isinstance(exc, StoreUnavailableError):
                raise
            error = not_writable("pairio database directory", self.directory, exc)
            if error is not None and not self.path.exists():
                return self._empty(error)
            raise (error or StoreUnavailableError(f"cannot create the pairio database directory "
                                                  f"{str(self.directory)!r}: {exc.strerror}")) from exc
        try:
            connection = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=True
            )
        except sqlite3.Error as exc:
            return self._connect_read_only(exc)
        try:
            self._initialise(connection)
        except sqlite3.Error as exc:
            connection.close()
            return self._connect_read_only(exc)
        marker = self.directory / MARKER_FILENAME
        if not marker.exists():
            with contextlib.suppress(OSError):  # a read-only store: it cannot be lost from here
                marker.write_text(_MARKER_TEXT)
        return connection

    def lost(self) -> str | None:
        """What is wrong if the database is empty (0 bytes), or missing where one was made, while the
        content directory holds objects (the pairs and records of those objects are gone); else None."""
        try:
            size: int | None = os.stat(self.path).st_size
        except FileNotFoundError:
            size = None
        if size not in (None, 0):
            return None
        if size is None and not (self.directory / MARKER_FILENAME).exists():
            return None  # never made: a new store (perhaps beside content stored before)
        if not holds_objects(self.content_dir):
            return None
        state = "is empty (0 bytes)" if size == 0 else "is missing (a database was made here before)"
        return (f"pairio database {str(self.path)!r} {state} while its content directory "
                f"{str(self.content_dir)!r} holds objects: their pairs and records are lost, and an empty "
                "store would silently take its place. Restore it from a backup, or run `pairio fsck "
                "--repair` to start a new database beside the objects (their results are then recomputed)")

    def check(self) -> None:
        """Raise StoreUnavailableError if the database cannot be used: lost beside its objects, not a
        database, or damaged where its first or last pair lies (a cheap probe, not a full check)."""
        self._check_not_lost()
        try:
            connection = self._connection()
            for order in ("ASC", "DESC"):
                connection.execute(f"SELECT key FROM pairs ORDER BY collection {order}, key {order} LIMIT 1").fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _check_not_lost(self) -> None:
        problem = self.lost()
        if problem is not None:
            raise StoreUnavailableError(problem)

    def _create(self) -> None:
        """Make the database whole under a temporary name and link it into place (another process
        may have made it meanwhile: then that one stays)."""
        try:
            temp = new_database(self.directory, f"{DATABASE_FILENAME}.new-")
        except sqlite3.Error:
            create_file(self.path)  # set up by _initialise, as before
            return
        try:
            os.link(temp, self.path)
        except FileExistsError:
            pass
        except OSError:  # no hard links on this file system: a rename, which may replace a racing twin
            if not self.path.exists():
                os.replace(temp, self.path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temp)

    @staticmethod
    def _empty(error: StoreNotWritableError) -> sqlite3.Connection:
        """No database, and none can be made there (a read-only mount, another user's directory):
        an empty one in memory, which reads as an empty store and refuses every write."""
        connection = sqlite3.connect(":memory:", isolation_level=None, factory=read_only_connection_class())
        connection.execute(_SCHEMA)
        _migrate(connection)
        connection.execute("PRAGMA query_only = 1")
        return connection

    def _connect_read_only(self, exc: sqlite3.Error) -> sqlite3.Connection:
        """Where the database cannot be opened for writing (a full disk, a read-only mount, another
        user's store) it is read as it is: hits, ``get`` and ``ls`` work, writes fail (and try
        to open it for writing again)."""
        error = self._error(exc)
        if not isinstance(error, StoreNotWritableError):
            raise error from exc
        try:
            connection = open_read_only(self.path, _BUSY_TIMEOUT_MS / 1000)
            if _behind(connection):
                connection.close()  # an older schema: it cannot be migrated here
                raise error from exc
        except sqlite3.Error:
            raise error from exc
        return connection

    def _initialise(self, connection: sqlite3.Connection) -> None:
        connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        def setup(c: sqlite3.Connection) -> None:
            c.execute(_SCHEMA)
            _migrate(c)

        mode = set_up_wal(connection, setup, _BUSY_TIMEOUT_MS / 1000)
        wanted = journal_mode(self.path)
        if mode.lower() != wanted.lower():
            raise StoreUnavailableError(
                f"pairio database {str(self.path)!r} could not be put in {wanted} mode (got {mode!r})"
            )
        connection.execute("PRAGMA synchronous = NORMAL")

    def error(self, exc: sqlite3.Error) -> StoreUnavailableError:
        """The PairioError of ``exc``, a failure of this database inside a :meth:`transaction`."""
        return self._error(exc)

    def _error(self, exc: sqlite3.Error) -> StoreUnavailableError:
        message = str(exc)
        if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in message or "malformed" in message):
            detail = f"it is corrupt or not a pairio database ({message})"
        elif any(s in message for s in ("unable to open", "readonly", "disk is full", "disk I/O")):
            connection = self._local.__dict__.get("connection")
            if getattr(connection, "read_only", False):
                # Opened read-only: the next use of this thread tries to open it for writing again
                # (a transaction still holding it rolls back on it).
                self._detach()
                self._local.__dict__.pop("connection", None)
            error = not_writable("pairio database", self.path, exc, detail=message)
            if error is not None:
                return error
            if "unable to open" in message:
                detail = "it cannot be opened (is the directory writable?)"
            elif "readonly" in message:
                detail = "it is read-only"
            else:
                detail = f"the disk failed ({message})"
        else:
            detail = message
        return StoreUnavailableError(f"pairio database {str(self.path)!r}: {detail}")

    def _writer(self) -> sqlite3.Connection:
        """This thread's connection, for a write: one opened read-only (the store could not be
        written then) gives way to a new try at opening it for writing."""
        connection = self._connection()
        if getattr(connection, "read_only", False):
            self._detach()
            self._local.__dict__.pop("connection", None)
            connection = self._connection()
        return connection

    def _writer_reading(self) -> sqlite3.Connection:
        """This thread's connection for one statement writing pairs: the reader of
        :meth:`get_with_object` where the thread has one (a statement writing only the pairs locks
        only them, though objects are attached). SQLite keeps a connection's cache of pages across
        its own commits, not another's: a miss's lookup after the previous miss's write then reads
        its pages from memory. What the reader kept of pairs found before goes (its own writes
        do not change ``data_version``)."""
        local = self._local
        reader = local.__dict__.get("objects_reader")
        if reader is None or getattr(self._connection(), "read_only", False):
            return self._writer()
        local.objects_seen.values.clear()
        return reader

    @contextlib.contextmanager
    def transaction(self, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        """This thread's connection inside one transaction (``immediate``: take the write lock
        at once), committed when the block ends; for the tables beside the pairs."""
        try:
            connection = self._writer() if immediate else self._connection()
            connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        try:
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def close(self) -> None:
        """Close this thread's connection."""
        self._detach()
        connection = self._local.__dict__.pop("connection", None)
        if connection is not None:
            connection.close()

    # --- operations --------------------------------------------------------------

    def get(self, collection: str, key: str) -> str | None:
        try:
            row = self._connection().execute(_GET, (collection, key)).fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return None if row is None else row[0]

    def get_with_object(self, collection: str, key: str, objects: Attachment) -> tuple[str | None, bytes | None]:
        """The value of ``key`` (None if absent), and the bytes of the row of ``objects`` it names
        (None if there is none), read in one statement: what a cached hit of a small result reads.
        The bytes are not checked against the hash. Where the table cannot be read so (not made
        yet, damaged), the bytes are None and the caller reads the row itself.

        The statement runs on a second connection of this thread's, with ``objects``' database
        attached: attached to the first, it would join every write transaction of the pairs
        (``BEGIN IMMEDIATE`` locks each attached database) and hold up the writers of objects.
        A key asked for again and again is answered from what this reader read of it while the
        pairs have not changed (see :class:`_Seen`): its value, and None for the bytes.
        """
        local = self._local
        if local.__dict__.get("objects_attached") is not objects and not self._attach(objects):
            return self.get(collection, key), None
        ident = (collection, key)
        seen: _Seen = local.objects_seen
        cursor = local.objects_cursor
        try:
            # A kept cursor, fetched whole: it holds no read transaction open between calls.
            value = seen.values.get(ident)
            if value is not None:
                if cursor.execute("PRAGMA data_version").fetchone()[0] == seen.version:
                    return value, None  # nothing committed to the pairs since it was read
                seen.values.clear()
            if ident not in seen.asked:
                row = cursor.execute(local.objects_sql, ident).fetchone()
                if row is None:
                    return None, None
                seen.ask(ident)
                return row
            # Found before: read with the version of the pairs it was read in, and kept.
            row = cursor.execute(local.objects_versioned_sql, ident).fetchone()
        except sqlite3.Error:
            self._detach()
            return self.get(collection, key), None
        if row is None:
            return None, None
        value, data, version = row
        seen.keep(ident, value, version)
        return value, data

    def _attach(self, objects: Attachment) -> bool:
        """Open this thread's reader of the pairs with ``objects``' database attached."""
        self._detach()
        if not objects.path.exists():
            return False  # ATTACH would make it, and without its table
        read_only = getattr(self._connection(), "read_only", False)  # the database made and set up
        try:
            if read_only:  # a full disk, a read-only store: read as the first connection reads
                reader = open_read_only(self.path, _BUSY_TIMEOUT_MS / 1000)
                target = "file:" + urllib.parse.quote(os.path.abspath(objects.path)) + "?mode=ro"
            else:
                reader = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
                target = str(objects.path)
        except sqlite3.Error:
            return False
        try:
            reader.execute(f"ATTACH DATABASE ? AS {_OBJECTS_SCHEMA}", (target,))
            if not read_only:
                reader.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error:
            reader.close()
            return False
        local = self._local
        local.objects_reader, local.objects_cursor = reader, reader.cursor()
        local.objects_sql = ("SELECT value, " + objects.select_data(_OBJECTS_SCHEMA, "value")
                             + " FROM pairs WHERE collection = ? AND key = ?")
        local.objects_versioned_sql = local.objects_sql.replace(
            " FROM pairs", ", (SELECT data_version FROM pragma_data_version()) FROM pairs")
        local.objects_seen = _Seen()
        local.objects_attached = objects
        return True

    def _detach(self) -> None:
        local = self._local
        for name in ("objects_attached", "objects_cursor", "objects_seen"):
            local.__dict__.pop(name, None)
        reader = local.__dict__.pop("objects_reader", None)
        if reader is not None:
            reader.close()

    def get_many(self, collection: str, keys: Iterable[str]) -> dict[str, str]:
        keys = list(dict.fromkeys(keys))
        if not keys:
            return {}
        if len(keys) <= _SMALL_BATCH:
            try:
                row = self._connection().execute(_GET_FEW[len(keys)], (collection, *keys)).fetchone()
            except sqlite3.Error as exc:
                raise self._error(exc) from exc
            return {k: v for k, v in zip(keys, row, strict=True) if v is not None}
        text = json.dumps(keys)
        if "\\u0000" in text:
            return self._get_many_by_parameters(collection, keys)
        try:
            row = self._connection().execute(_GET_MANY, (text, collection)).fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        values = json.loads(row[0])
        if len(values) != len(keys):  # never expected: the join yields one row per key
            raise StoreUnavailableError(f"pairio database {str(self.path)!r}: get_many returned a wrong count")
        return {k: v for k, v in zip(keys, values, strict=True) if v is not None}

    def _get_many_by_parameters(self, collection: str, keys: list[str]) -> dict[str, str]:
        # SQLite's json_each cuts a string at a NUL character, so keys holding one are
        # bound as parameters, a few per statement, in one read transaction.
        found = {}
        try:
            connection = self._connection()
            connection.execute("BEGIN")
            try:
                for i in range(0, len(keys), _SMALL_BATCH):
                    chunk = keys[i : i + _SMALL_BATCH]
                    row = connection.execute(_GET_FEW[len(chunk)], (collection, *chunk)).fetchone()
                    found.update((k, v) for k, v in zip(chunk, row, strict=True) if v is not None)
            finally:
                connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return found

    def set(self, collection: str, key: str, value: str) -> None:
        try:
            self._writer().execute(_SET, (collection, key, value))
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def set_many(self, collection: str, pairs: Mapping[str, str | None]) -> None:
        if 0 < len(pairs) <= _ONE_STATEMENT_PAIRS and None not in pairs.values():
            # A few pairs to set (a cached result and its seconds): one statement, which SQLite
            # runs as one transaction, costs a third less than BEGIN, the upserts and COMMIT.
            args = [a for k, v in pairs.items() for a in (collection, k, v)]
            try:
                self._writer_reading().execute(_set_rows(len(pairs)), args)
            except sqlite3.Error as exc:
                raise self._error(exc) from exc
            return
        with self.transaction(immediate=True) as connection:
            self.write_pairs(connection, collection, pairs)

    def set_many_with(self, collection: str, pairs: Mapping[str, str | None], sql: str, rows: Sequence[tuple]) -> None:
        """:meth:`set_many` and ``sql`` (a statement on a table beside the pairs) run on each of
        ``rows``, in one transaction: it commits both or neither. The same as a :meth:`transaction`
        running :meth:`write_pairs` and ``sql``, at the cost of four statements and no more (a
        miss's set with its record is the hot path of a server's writes)."""
        try:
            connection = self._writer()
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        try:
            self.write_pairs(connection, collection, pairs)
            if len(rows) == 1:
                connection.execute(sql, rows[0])
            elif rows:
                connection.executemany(sql, rows)
            connection.execute("COMMIT")
        except BaseException as exc:
            if connection.in_transaction:  # a failed COMMIT may leave it open
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc) from exc
            raise

    def write_pairs(self, connection: sqlite3.Connection, collection: str, pairs: Mapping[str, str | None]) -> None:
        """:meth:`set_many` inside a :meth:`transaction` of this store (with the tables beside the pairs)."""
        try:
            if len(pairs) == 1:  # one pair (a miss's result): one statement, no executemany of one row
                ((key, value),) = pairs.items()
                if value is None:
                    connection.execute(_DELETE, (collection, key))
                else:
                    connection.execute(_SET, (collection, key, value))
                return
            upserts = [(collection, k, v) for k, v in pairs.items() if v is not None]
            deletes = [(collection, k) for k, v in pairs.items() if v is None]
            if upserts:
                connection.executemany(_SET, upserts)
            if deletes:
                connection.executemany(_DELETE, deletes)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def delete_pairs(self, connection: sqlite3.Connection, rows: Iterable[tuple[str, str]]) -> None:
        """Delete the pairs ``(collection, key)`` inside a :meth:`transaction` of this store."""
        self._run_many(connection, "DELETE FROM pairs WHERE collection = ? AND key = ?", rows)

    def delete_unchanged(self, connection: sqlite3.Connection, rows: Iterable[tuple[str, str, str]]) -> None:
        """Delete each pair ``(collection, key, value)`` that still holds ``value``, inside a
        :meth:`transaction` of this store (a pair set again meanwhile stays)."""
        self._run_many(connection, "DELETE FROM pairs WHERE collection = ? AND key = ? AND value = ?", rows)

    def long_values(self, connection: sqlite3.Connection, length: int) -> Iterator[tuple[str, str, str]]:
        """Every pair ``(collection, key, value)`` whose value has at least ``length`` characters
        (those that may name content), inside a :meth:`transaction` of this store."""
        try:
            yield from connection.execute(
                "SELECT collection, key, value FROM pairs WHERE length(value) >= ?", (length,))
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _run_many(self, connection: sqlite3.Connection, sql: str, rows: Iterable[tuple]) -> None:
        try:
            connection.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def delete(self, collection: str, key: str) -> None:
        try:
            self._writer().execute(_DELETE, (collection, key))
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def collections(self) -> list[str]:
        """The names of the collections that hold at least one pair."""
        try:
            rows = self._connection().execute("SELECT DISTINCT collection FROM pairs").fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return [row[0] for row in rows]

    def items(self, collection: str) -> list[tuple[str, str]]:
        """Every pair of ``collection``, as ``(key, value)``."""
        try:
            return [tuple(row) for row in self._connection().execute(
                "SELECT key, value FROM pairs WHERE collection = ?", (collection,)).fetchall()]
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def count(self, collection: str) -> int:
        """How many pairs ``collection`` holds."""
        try:
            row = self._connection().execute(
                "SELECT COUNT(*) FROM pairs WHERE collection = ?", (collection,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return row[0]
