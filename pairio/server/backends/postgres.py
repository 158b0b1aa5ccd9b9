"""PostgreSQL backends: the pairs (:class:`PostgresStore`) and what replicas agree on
(:class:`PostgresCoordination`), over one connection pool per process.

Several ``pairio serve`` processes (replicas, or ``--workers``) may share one database:
every operation is one statement, or one transaction, so each is atomic across them.

Keys, values and collection names are stored as UTF-8 ``bytea``: PostgreSQL ``text``
cannot hold the NUL character, which pairio keys may contain.

The schema carries a version (table ``pairio_schema``). The first process to start
creates it; a newer pairio upgrades an older schema in one transaction (under an
advisory lock, so replicas starting together upgrade it once); an older pairio refuses
a newer schema rather than write rows it does not understand.
"""

from __future__ import annotations

import json
import os
import threading
import time
import weakref
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

from ...config import mask_url
from ...errors import ConfigurationError, InvalidInputError, StoreUnavailableError
from ...kv.base import KeyValueStore
from .base import Coordination, Lease
from .records import COUNT_FIELDS, CountRow, RecordStore, ServerRecord, json_column, miss_rows

SCHEMA_VERSION = 5
# Each step upgrades the schema from version i to i + 1; never edit a step that shipped.
MIGRATIONS: list[list[str]] = [
    # 1: the pairs.
    [
        "CREATE TABLE pairio_pairs (collection bytea NOT NULL, key bytea NOT NULL, value bytea NOT NULL, "
        "PRIMARY KEY (collection, key))",
    ],
    # 2: coordination between replicas: nonces, token buckets, daily upload counts, leases.
    [
        "CREATE TABLE pairio_nonces (channel text NOT NULL, nonce text NOT NULL, "
        "expires_at float8 NOT NULL, PRIMARY KEY (channel, nonce))",
        "CREATE INDEX pairio_nonces_expiry ON pairio_nonces (expires_at)",
        "CREATE TABLE pairio_buckets (channel text NOT NULL, collection text NOT NULL, operation text NOT NULL, "
        "tokens float8 NOT NULL, updated float8 NOT NULL, wait float8 NOT NULL, "
        "PRIMARY KEY (channel, collection, operation))",
        "CREATE TABLE pairio_uploads (channel text PRIMARY KEY, day integer NOT NULL, bytes bigint NOT NULL)",
        "CREATE TABLE pairio_leases (name text PRIMARY KEY, owner text NOT NULL, info jsonb NOT NULL, "
        "acquired_at float8 NOT NULL, expires_at float8 NOT NULL)",
    ],
    # 3: the results' records and the hourly counts (pairio.server.backends.records).
    [
        "CREATE TABLE pairio_records (collection bytea NOT NULL, key bytea NOT NULL, function text NOT NULL, "
        "code text NOT NULL, dependencies jsonb NOT NULL, arguments jsonb NOT NULL, size bigint NOT NULL, "
        "seconds float8 NOT NULL, host text NOT NULL, created float8 NOT NULL, channel text NOT NULL, "
        "hits bigint NOT NULL DEFAULT 0, last_used float8 NOT NULL, PRIMARY KEY (collection, key))",
        "CREATE INDEX pairio_records_by_created ON pairio_records (created)",
        "CREATE TABLE pairio_counts (hour bigint NOT NULL, collection bytea NOT NULL, function text NOT NULL, "
        "hits bigint NOT NULL DEFAULT 0, misses bigint NOT NULL DEFAULT 0, seconds_saved float8 NOT NULL DEFAULT 0, "
        "seconds_computed float8 NOT NULL DEFAULT 0, bytes_up bigint NOT NULL DEFAULT 0, "
        "bytes_down bigint NOT NULL DEFAULT 0, PRIMARY KEY (hour, collection, function))",
    ],
    # 4: the inputs of each record (its provenance): a list of links.
    [
        "ALTER TABLE pairio_records ADD COLUMN inputs jsonb NOT NULL DEFAULT '[]'::jsonb",
    ],
    # 5: no index on the records' created (as the embedded records, schema 3). Keeping it cost every
    # set with a record a second b-tree entry and its WAL (a record set again with a new created, as
    # a miss sends it, was never a HOT update); listing newest first scans the collections' records
    # and keeps the newest (a top-N sort), as listing by size, seconds or hits always did.
    [
        "DROP INDEX IF EXISTS pairio_records_by_created",
    ],
]
assert len(MIGRATIONS) == SCHEMA_VERSION
# Any constant: every pairio process that migrates takes this transaction-scoped lock first.
_MIGRATION_LOCK = 0x7061697269
_POOL_MAX = 8  # connections per pool and process (see server/README.md, sizing)
_PURGE_EVERY = 60.0  # seconds between sweeps of expired nonces and leases, per process
# The database's clock, shared by every replica (their own clocks may drift apart).
_DB_NOW = "extract(epoch FROM statement_timestamp())::float8"


class PostgresDatabase:
    """One connection pool to ``url``, opened on first use in each process, and its schema."""

    def __init__(self, url: str, *, max_size: int = _POOL_MAX, connect_timeout: float = 10.0,
                 synchronous_commit: bool = True) -> None:
        if not isinstance(url, str) or not url.startswith(("postgresql://", "postgres://")):
            raise ConfigurationError(f"database {mask_url(str(url))!r} must be a URL starting with postgresql://")
        self.url = url
        self.shown_url = mask_url(url)
        self.max_size = max_size
        self.synchronous_commit = synchronous_commit
        self.connect_timeout = connect_timeout
        self._pool = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        _databases.add(self)

    def __repr__(self) -> str:
        return f"PostgresDatabase({self.shown_url!r})"

    def pool(self):
        """This process's pool, opened (and the schema checked) on first use."""
        pool = self._pool
        if pool is not None and self._pid == os.getpid():
            return pool
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = self._open()
                self._pid = os.getpid()
            return self._pool

    def _open(self):
        try:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict
            from psycopg_pool import ConnectionPool
        except ImportError as exc:
            raise ConfigurationError(
                f"a postgresql:// database needs the postgres extra ({exc.name} is missing): "
                "pip install 'pairio[postgres]'"
            ) from None
        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=self.connect_timeout) as connection:
                migrate(connection)
        except psycopg.Error as exc:
            raise self.error(exc) from None
        options = {"autocommit": True, "connect_timeout": self.connect_timeout}
        if not self.synchronous_commit:
            # Appended to any options the URL itself carries (e.g. a search_path).
            given = conninfo_to_dict(self.url).get("options") or ""
            options["options"] = f"{given} -c synchronous_commit=off".strip()
        pool = ConnectionPool(
            self.url, min_size=1, max_size=self.max_size, open=False, timeout=self.connect_timeout,
            kwargs=options, name="pairio",
        )
        pool.open()
        return pool

    def error(self, exc: Exception) -> StoreUnavailableError:
        """A StoreUnavailableError for a failure of this database (its password masked)."""
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return StoreUnavailableError(f"pairio database {self.shown_url}: {message}")

    def run(self, operation):
        """``operation(connection)`` on a pooled connection; database errors become StoreUnavailableError."""
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self.pool().connection() as connection:
                return operation(connection)
        except psycopg.DataError as exc:
            # A value the database cannot hold (a NUL in text or JSON): the request's fault, not
            # an outage; a client would skip a server that answered 503 to it.
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidInputError(f"the database refused a value of the request: {message}") from None
        except (psycopg.Error, PoolTimeout) as exc:
            raise self.error(exc) from None

    def schema_version(self) -> int:
        """The schema version the database holds (0 before the first start)."""
        return self.run(_schema_version)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.close()
            self._pool = None


_databases: weakref.WeakSet[PostgresDatabase] = weakref.WeakSet()


def _forget_pools_after_fork() -> None:
    # A pooled connection shared by two processes would interleave their queries.
    for database in list(_databases):
        database._pool = None
        database._lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pools_after_fork)


def _schema_version(connection) -> int:
    row = connection.execute("SELECT to_regclass('pairio_schema') IS NOT NULL").fetchone()
    if not row[0]:
        return 0
    return connection.execute("SELECT version FROM pairio_schema").fetchone()[0]


def migrate(connection, target: int = SCHEMA_VERSION) -> int:
    """Create or upgrade the schema to ``target`` in one transaction; return the version found.

    Raises StoreUnavailableError if the database holds a newer schema than ``target``.
    """
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        found = _schema_version(connection)
        if found > target:
            raise StoreUnavailableError(
                f"the pairio database schema is version {found}, newer than this pairio supports "
                f"(version {target}): a newer pairio has upgraded it. Upgrade this pairio "
                "(pip install -U 'pairio[server,postgres]') on every replica"
            )
        if found == 0:
            connection.execute(
                "CREATE TABLE pairio_schema (only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row), "
                "version integer NOT NULL)"
            )
            connection.execute("INSERT INTO pairio_schema (version) VALUES (0)")
        for version in range(found, target):
            for statement in MIGRATIONS[version]:
                connection.execute(statement)
        if found < target:
            connection.execute("UPDATE pairio_schema SET version = %s", (target,))
    return found


# --- the pairs ------------------------------------------------------------------------

_GET = "SELECT value FROM pairio_pairs WHERE collection = %s AND key = %s"
_GET_MANY = "SELECT key, value FROM pairio_pairs WHERE collection = %s AND key = ANY(%s)"
_UPSERT_MANY = (
    "INSERT INTO pairio_pairs (collection, key, value) SELECT %s, k, v FROM unnest(%s::bytea[], %s::bytea[]) "
    "AS t(k, v) ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value"
)
_SET = (
    "INSERT INTO pairio_pairs (collection, key, value) VALUES (%s, %s, %s) "
    "ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value"
)
_DELETE = "DELETE FROM pairio_pairs WHERE collection = %s AND key = %s"
_DELETE_MANY = "DELETE FROM pairio_pairs WHERE collection = %s AND key = ANY(%s)"


def _b(text: str) -> bytes:
    return text.encode("utf-8")



def _pair_statements(collection: str, pairs: Mapping[str, str | None]) -> list[tuple[str, tuple]]:
    """The statements that set ``pairs`` (a value of None deletes its key) in ``collection``: an
    upsert of the set ones and a delete of the others, each only if it has keys."""
    name = _b(collection)
    upsert_keys = [_b(k) for k, v in pairs.items() if v is not None]
    upsert_values = [_b(v) for v in pairs.values() if v is not None]
    deletes = [_b(k) for k, v in pairs.items() if v is None]
    statements: list[tuple[str, tuple]] = []
    if upsert_keys:
        statements.append((_UPSERT_MANY, (name, upsert_keys, upsert_values)))
    if deletes:
        statements.append((_DELETE_MANY, (name, deletes)))
    return statements

class PostgresStore(KeyValueStore):
    """The pairs in table ``pairio_pairs`` of a PostgreSQL database; thread- and process-safe.

    Every set commits before it returns; ``set_many`` is one transaction.
    """

    blocking = True  # each call waits on the network: the server runs it off its event loop

    def __init__(self, database: PostgresDatabase | str) -> None:
        self.database = database if isinstance(database, PostgresDatabase) else PostgresDatabase(database)

    def __repr__(self) -> str:
        return f"PostgresStore({self.database.shown_url!r})"

    def get(self, collection: str, key: str) -> str | None:
        row = self.database.run(lambda c: c.execute(_GET, (_b(collection), _b(key))).fetchone())
        return None if row is None else row[0].decode("utf-8")

    def get_many(self, collection: str, keys: Iterable[str]) -> dict[str, str]:
        wanted = [_b(k) for k in dict.fromkeys(keys)]
        if not wanted:
            return {}
        rows = self.database.run(lambda c: c.execute(_GET_MANY, (_b(collection), wanted)).fetchall())
        return {k.decode("utf-8"): v.decode("utf-8") for k, v in rows}

    def set(self, collection: str, key: str, value: str) -> None:  # noqa: A003
        self.database.run(lambda c: c.execute(_SET, (_b(collection), _b(key), _b(value))))

    def set_many(self, collection: str, pairs: Mapping[str, str | None]) -> None:
        statements = _pair_statements(collection, pairs)

        def write(connection) -> None:
            # Pipelined: the statements go in one round trip, not one each.
            with connection.pipeline(), connection.transaction():
                for sql, params in statements:
                    connection.execute(sql, params)

        if statements:
            self.database.run(write)

    def delete(self, collection: str, key: str) -> None:
        self.database.run(lambda c: c.execute(_DELETE, (_b(collection), _b(key))))

    def collections(self) -> list[str]:
        """The names of the collections that hold at least one pair."""
        rows = self.database.run(lambda c: c.execute("SELECT DISTINCT collection FROM pairio_pairs").fetchall())
        return [row[0].decode("utf-8") for row in rows]

    def count(self, collection: str) -> int:
        """How many pairs ``collection`` holds."""
        return self.database.run(lambda c: c.execute(
            "SELECT count(*) FROM pairio_pairs WHERE collection = %s", (_b(collection),)).fetchone()[0])

    def close(self) -> None:
        self.database.close()


# --- coordination -----------------------------------------------------------------------

_NOW = f"COALESCE(%(now)s::float8, {_DB_NOW})"
_ADD_NONCE = (
    "INSERT INTO pairio_nonces AS n (channel, nonce, expires_at) VALUES (%(channel)s, %(nonce)s, %(expires)s) "
    "ON CONFLICT (channel, nonce) DO UPDATE SET expires_at = excluded.expires_at "
    f"WHERE n.expires_at < {_NOW}"
)
# One statement per request: the bucket row is created full (so a first batch always
# passes, leaving it at capacity - count) or refilled by the database clock's elapsed
# time since its last update, then debited if it holds min(count, capacity) tokens.
_REFILLED = "LEAST(%(cap)s, b.tokens + GREATEST(0, excluded.updated - b.updated) * %(rate)s)"
_TAKE_TOKENS = (
    "INSERT INTO pairio_buckets AS b (channel, collection, operation, tokens, updated, wait) "
    f"VALUES (%(channel)s, %(collection)s, %(operation)s, %(cap)s - %(count)s, {_DB_NOW}, 0) "
    "ON CONFLICT (channel, collection, operation) DO UPDATE SET "
    f"tokens = CASE WHEN {_REFILLED} >= %(needed)s THEN {_REFILLED} - %(count)s ELSE {_REFILLED} END, "
    f"wait = CASE WHEN {_REFILLED} >= %(needed)s THEN 0 ELSE (%(needed)s - {_REFILLED}) / %(rate)s END, "
    # A statement that waited on the row lock may carry an earlier time than the row's.
    "updated = GREATEST(b.updated, excluded.updated) "
    "RETURNING wait"
)
_ADD_UPLOAD = (
    "INSERT INTO pairio_uploads AS u (channel, day, bytes) SELECT %(channel)s, %(day)s, %(n)s "
    "WHERE %(n)s <= %(quota)s "
    "ON CONFLICT (channel) DO UPDATE SET day = excluded.day, "
    "bytes = CASE WHEN u.day = excluded.day THEN u.bytes ELSE 0 END + excluded.bytes "
    "WHERE CASE WHEN u.day = excluded.day THEN u.bytes ELSE 0 END + excluded.bytes <= %(quota)s "
    "RETURNING bytes"
)
_LEASE_COLUMNS = "name, owner, info, acquired_at, expires_at"
_ACQUIRE = (
    f"WITH t AS (SELECT {_NOW} AS now) "
    "INSERT INTO pairio_leases AS l (name, owner, info, acquired_at, expires_at) "
    "SELECT %(name)s, %(owner)s, %(info)s, t.now, t.now + %(ttl)s FROM t "
    "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, info = excluded.info, "
    "acquired_at = CASE WHEN l.owner = excluded.owner THEN l.acquired_at ELSE excluded.acquired_at END, "
    "expires_at = excluded.expires_at "
    "WHERE l.owner = excluded.owner OR l.expires_at <= excluded.acquired_at "
    f"RETURNING {_LEASE_COLUMNS}"
)
_RENEW = (
    f"UPDATE pairio_leases SET expires_at = {_NOW} + %(ttl)s WHERE name = %(name)s AND owner = %(owner)s "
    f"RETURNING {_LEASE_COLUMNS}"
)
_HOLDER = f"SELECT {_LEASE_COLUMNS} FROM pairio_leases WHERE name = %s"
_LEASES = f"SELECT {_LEASE_COLUMNS} FROM pairio_leases WHERE expires_at > {_NOW} ORDER BY acquired_at, name"


def _lease(row: tuple) -> Lease:
    name, owner, info, acquired_at, expires_at = row
    return Lease(name, owner, info, acquired_at, expires_at)


class PostgresCoordination(Coordination):
    """Nonces, token buckets, daily upload counts and leases in PostgreSQL, shared by replicas.

    Token buckets and leases (when no ``now`` is given) use the database server's clock,
    so replicas whose clocks differ still agree; the daily upload count uses the UTC day
    of the replica's clock. Expired nonces and leases are swept about once a minute.
    """

    blocking = True  # each call waits on the network: the server runs it off its event loop

    def __init__(self, database: PostgresDatabase | str) -> None:
        self.database = database if isinstance(database, PostgresDatabase) else PostgresDatabase(database)
        self._next_purge = 0.0

    def __repr__(self) -> str:
        return f"PostgresCoordination({self.database.shown_url!r})"

    def _purge(self) -> None:
        # Which replica sweeps does not matter: each sweep is one idempotent statement.
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + _PURGE_EVERY

        def sweep(connection) -> None:
            connection.execute(f"DELETE FROM pairio_nonces WHERE expires_at < {_DB_NOW}")
            connection.execute(f"DELETE FROM pairio_leases WHERE expires_at < {_DB_NOW} - 3600")

        self.database.run(sweep)

    def add_nonce(self, channel: str, nonce: str, expires_at: float, now: float | None = None) -> bool:
        self._purge()
        params = {"channel": channel, "nonce": nonce, "expires": expires_at, "now": now}
        return self.database.run(lambda c: c.execute(_ADD_NONCE, params).rowcount) == 1

    def take_tokens(self, bucket: tuple[str, str, str], per_minute: int, count: int = 1) -> float:
        channel, collection, operation = bucket
        params = {"channel": channel, "collection": collection, "operation": operation,
                  "cap": float(per_minute), "rate": per_minute / 60.0, "count": float(count),
                  "needed": float(min(count, per_minute))}
        return self.database.run(lambda c: c.execute(_TAKE_TOKENS, params).fetchone()[0])

    def add_upload_bytes(self, channel: str, nbytes: int, quota: int, now: float | None = None) -> float:
        now = time.time() if now is None else now
        day = int(now // 86_400)
        params = {"channel": channel, "day": day, "n": nbytes, "quota": quota}
        row = self.database.run(lambda c: c.execute(_ADD_UPLOAD, params).fetchone())
        return 0.0 if row is not None else (day + 1) * 86_400 - now

    def uploaded_today(self, channel: str, now: float | None = None) -> int:
        now = time.time() if now is None else now
        row = self.database.run(lambda c: c.execute(
            "SELECT bytes FROM pairio_uploads WHERE channel = %s AND day = %s",
            (channel, int(now // 86_400))).fetchone())
        return 0 if row is None else row[0]

    def acquire_lease(self, name: str, owner: str, info: Mapping[str, Any], ttl: float,
                      now: float | None = None) -> Lease:
        self._purge()
        params = {"name": name, "owner": owner, "info": json.dumps(dict(info)), "ttl": float(ttl), "now": now}

        def acquire(connection) -> Lease:
            while True:
                row = connection.execute(_ACQUIRE, params).fetchone()
                if row is None:  # held by another: report the holder (unless it just let go)
                    row = connection.execute(_HOLDER, (name,)).fetchone()
                if row is not None:
                    return _lease(row)

        return self.database.run(acquire)

    def renew_lease(self, name: str, owner: str, ttl: float, now: float | None = None) -> Lease | None:
        params = {"name": name, "owner": owner, "ttl": float(ttl), "now": now}
        row = self.database.run(lambda c: c.execute(_RENEW, params).fetchone())
        return None if row is None else _lease(row)

    def release_lease(self, name: str, owner: str) -> bool:
        return self.database.run(lambda c: c.execute(
            "DELETE FROM pairio_leases WHERE name = %s AND owner = %s", (name, owner)).rowcount) == 1

    def leases(self, now: float | None = None) -> list[Lease]:
        rows = self.database.run(lambda c: c.execute(_LEASES, {"now": now}).fetchall())
        return [_lease(row) for row in rows]

    def close(self) -> None:
        self.database.close()


# --- records and hourly counts ------------------------------------------------------------

_RECORD_COLUMNS = ("collection", "key", "function", "code", "dependencies", "arguments", "size", "seconds",
                   "host", "created", "channel", "hits", "last_used", "inputs")
_UPSERT_RECORD = (
    f"INSERT INTO pairio_records ({', '.join(_RECORD_COLUMNS)}) VALUES ({', '.join(['%s'] * len(_RECORD_COLUMNS))}) "
    "ON CONFLICT (collection, key) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _RECORD_COLUMNS[2:])
)
_SELECT_RECORD = f"SELECT {', '.join(_RECORD_COLUMNS)} FROM pairio_records"
_RECORD_TYPES = ("bytea", "bytea", "text", "text", "jsonb", "jsonb", "bigint", "float8", "text", "float8", "text",
                 "bigint", "float8", "jsonb")
# A set with records in one statement: data-modifying WITH queries run to completion whether or
# not the main query reads them, all in the statement's one snapshot and transaction.
_SET_WITH_RECORDS = (
    "WITH set_pairs AS (" + _UPSERT_MANY + "), "
    "deleted_pairs AS (" + _DELETE_MANY + ") "
    f"INSERT INTO pairio_records ({', '.join(_RECORD_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"%s::{t}[]" for t in _RECORD_TYPES) + ") "
    "ON CONFLICT (collection, key) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _RECORD_COLUMNS[2:])
)
_SET_ONE_WITH_RECORD = (  # one pair and its record
    "WITH set_pair AS (" + _SET + ") " + _UPSERT_RECORD.replace(
        "VALUES (" + ", ".join(["%s"] * len(_RECORD_COLUMNS)) + ")",
        "VALUES (" + ", ".join(f"%s::{t}" for t in _RECORD_TYPES) + ")")
)
_HIT_RECORDS = (
    "UPDATE pairio_records AS r SET hits = r.hits + h.n, last_used = GREATEST(r.last_used, %s) "
    "FROM unnest(%s::bytea[], %s::bytea[], %s::bigint[]) AS h(collection, key, n) "
    "WHERE r.collection = h.collection AND r.key = h.key RETURNING r.collection, r.function, r.seconds, h.n"
)
_ADD_COUNTS = (
    f"INSERT INTO pairio_counts (hour, collection, function, {', '.join(COUNT_FIELDS)}) "
    "SELECT * FROM unnest(%s::bigint[], %s::bytea[], %s::text[], %s::bigint[], %s::bigint[], %s::float8[], "
    "%s::float8[], %s::bigint[], %s::bigint[]) "
    "ON CONFLICT (hour, collection, function) DO UPDATE SET "
    + ", ".join(f"{f} = pairio_counts.{f} + excluded.{f}" for f in COUNT_FIELDS)
)


def _record(row: tuple) -> ServerRecord:
    values = dict(zip(_RECORD_COLUMNS, row, strict=True))
    values["collection"] = bytes(values["collection"]).decode("utf-8")
    values["key"] = bytes(values["key"]).decode("utf-8")
    values["inputs"] = tuple(values["inputs"] or ())
    return ServerRecord(**values)


def _add_counts(connection, rows: Sequence[tuple], now: float | None = None) -> None:
    """Add ``rows`` (hour, collection, function, *COUNT_FIELDS) to the counts; drop the hours
    older than the counts keep."""
    from ...lifecycle.counts import KEEP_S, hour_of

    if rows:
        rows = sorted(rows, key=lambda r: r[:3])  # one order for every replica: no deadlock between two
        columns = list(zip(*rows, strict=True))
        columns[1] = [_b(c) for c in columns[1]]
        connection.execute(_ADD_COUNTS, [list(c) for c in columns])
    cutoff = hour_of((time.time() if now is None else now) - KEEP_S)
    connection.execute("DELETE FROM pairio_counts WHERE hour < %s", (cutoff,))


def _record_rows(records: Sequence[ServerRecord]) -> list[tuple]:
    """The rows of ``records`` for :data:`_UPSERT_RECORD`: one per key (the last), in key order."""
    latest = {(r.collection, r.key): r for r in records}  # one row per key in one statement
    return [_record_row(r) for _, r in sorted(latest.items())]


def _record_row(r: ServerRecord) -> tuple:
    """One row of :data:`_RECORD_COLUMNS`."""
    return (_b(r.collection), _b(r.key), r.function, r.code, json_column(r.dependencies),
            json_column(r.arguments), r.size, r.seconds, r.host, r.created, r.channel, r.hits,
            r.last_used, json_column(r.inputs) if r.inputs else "[]")


def _write_records(connection, rows: list[tuple], records: Sequence[ServerRecord], now: float) -> None:
    """Upsert ``rows`` (of ``records``) and count their misses, inside the caller's transaction."""
    if len(rows) == 1:
        connection.execute(_UPSERT_RECORD, rows[0])
    else:
        with connection.cursor() as cursor:
            cursor.executemany(_UPSERT_RECORD, rows)
    _add_counts(connection, miss_rows(records, now), now)


class PostgresRecords(RecordStore):
    """The records (``pairio_records``) and hourly counts (``pairio_counts``) in PostgreSQL.

    ``pairs``: the database (pool) of the pairs these records sit beside, in the same PostgreSQL
    database; :meth:`set_with_records` commits there, as a set of pairs does (by default
    ``database`` itself)."""

    blocking = True

    def __init__(self, database: PostgresDatabase | str, pairs: PostgresDatabase | None = None) -> None:
        self.database = database if isinstance(database, PostgresDatabase) else PostgresDatabase(database)
        if pairs is not None and pairs.url != self.database.url:
            raise ConfigurationError(f"pairs {pairs.shown_url!r} must be the records' database "
                                     f"{self.database.shown_url!r}: a set with records is one transaction")
        self.pairs = self.database if pairs is None else pairs

    def __repr__(self) -> str:
        return f"PostgresRecords({self.database.shown_url!r})"

    def put(self, records: Sequence[ServerRecord], now: float | None = None) -> None:
        if not records:
            return
        now = time.time() if now is None else now
        rows = _record_rows(records)

        def write(connection) -> None:
            with connection.transaction():
                _write_records(connection, rows, records, now)

        self.database.run(write)

    def set_with_records(self, collection: str, pairs: Mapping[str, str | None],
                         records: Sequence[ServerRecord]) -> None:
        name = _b(collection)
        if len(pairs) == 1 and len(records) == 1:  # the usual set: scalars, far cheaper to send than arrays
            ((key, value),) = pairs.items()
            if value is not None and records[0].key == key and records[0].collection == collection:
                row = _record_row(records[0])
                self.pairs.run(lambda c: c.execute(_SET_ONE_WITH_RECORD, (name, row[1], _b(value), *row)))
                return
        upserts = [(_b(k), _b(v)) for k, v in pairs.items() if v is not None]
        deletes = [_b(k) for k, v in pairs.items() if v is None]
        columns = [list(c) for c in zip(*_record_rows(records), strict=True)] or [[] for _ in _RECORD_COLUMNS]
        params = (name, [k for k, _ in upserts], [v for _, v in upserts], name, deletes, *columns)
        # One statement (atomic on its own, in one round trip): the pairs, then the records, or
        # nothing. On the pairs' pool: its commit waits for the disk, as a set of pairs does.
        self.pairs.run(lambda c: c.execute(_SET_WITH_RECORDS, params))

    def add_hits(self, hits: Mapping[tuple[str, str], int], now: float | None = None) -> None:
        if not hits:
            return
        from ...lifecycle.counts import hour_of

        now = time.time() if now is None else now
        ordered = sorted(hits.items())
        params = (now, [_b(c) for (c, _), _ in ordered], [_b(k) for (_, k), _ in ordered],
                  [n for _, n in ordered])

        def write(connection) -> None:
            with connection.transaction():
                found = connection.execute(_HIT_RECORDS, params).fetchall()
                summed: dict[tuple[str, str], list] = {}
                for collection, function, seconds, n in found:
                    row = summed.setdefault((bytes(collection).decode("utf-8"), function), [0, 0.0])
                    row[0] += n
                    row[1] += n * seconds
                _add_counts(connection, [CountRow(hour_of(now), c, f, hits=n, seconds_saved=s).values()
                                         for (c, f), (n, s) in summed.items()], now)

        self.database.run(write)

    def add_counts(self, rows: Sequence[CountRow]) -> None:
        if rows:
            self.database.run(lambda c: _add_counts(c, [r.values() for r in rows]))

    def get(self, collection: str, key: str) -> ServerRecord | None:
        row = self.database.run(lambda c: c.execute(
            _SELECT_RECORD + " WHERE collection = %s AND key = %s", (_b(collection), _b(key))).fetchone())
        return None if row is None else _record(row)

    def _ordered(self, collections: Collection[str], sort: str, limit: int | None) -> Iterator[ServerRecord]:
        sql = (_SELECT_RECORD + " WHERE collection = ANY(%s) "
               f"ORDER BY {sort} DESC, created DESC, key LIMIT %s")
        rows = self.database.run(lambda c: c.execute(sql, ([_b(n) for n in sorted(collections)], limit)).fetchall())
        for row in rows:
            yield _record(row)

    def counts(self, collections: Collection[str], since: float, until: float | None = None,
               by: str | None = "function") -> list[dict[str, Any]]:
        from ...lifecycle.counts import check_by, hour_of

        group = check_by(by)
        if not collections:
            return []
        where, params = ["hour >= %s", "collection = ANY(%s)"], [hour_of(since), [_b(n) for n in sorted(collections)]]
        if until is not None:
            where.append("hour < %s")
            params.append(until)
        columns = "hour" + (f", {group}" if group else "")
        sums = ", ".join(f"sum({f})" for f in COUNT_FIELDS)
        sql = (f"SELECT {columns}, {sums} FROM pairio_counts WHERE {' AND '.join(where)} "
               f"GROUP BY {columns} ORDER BY {columns}")
        rows = self.database.run(lambda c: c.execute(sql, params).fetchall())
        names = ("hour", *((group,) if group else ()), *COUNT_FIELDS)
        out = []
        for row in rows:
            values = dict(zip(names, row, strict=True))
            if group == "collection":
                values["collection"] = bytes(values["collection"]).decode("utf-8")
            for f in ("hits", "misses", "bytes_up", "bytes_down"):
                values[f] = int(values[f])
            for f in ("seconds_saved", "seconds_computed"):
                values[f] = float(values[f])
            values["hour"] = int(values["hour"])
            out.append(values)
        return out

    def close(self) -> None:
        self.database.close()
