"""What the server keeps of the results it holds: their records (what computed each, its cost, its
hits) and the hourly counts of hits, misses, seconds saved and bytes moved (kept
:data:`~pairio.lifecycle.counts.KEEP_DAYS` days), behind one narrow interface, :class:`RecordStore`.

Two implementations pass one conformance suite (tests/test_backend_records.py): the embedded
store's database (:class:`EmbeddedRecords`, tables ``server_records`` and lifecycle's ``counts``)
and PostgreSQL (:class:`pairio.server.backends.postgres.PostgresRecords`).
"""

from __future__ import annotations

import abc
import dataclasses
import json
import sqlite3
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from ...kv.embedded import EmbeddedStore, register_schema
from ...lifecycle import counts as local_counts
from ...lifecycle.records import matches_function

SORTS = ("created", "size", "seconds", "hits")
COUNT_FIELDS = local_counts.FIELDS
BYTES_FUNCTION = ""  # the "function" of bytes moved that no call names (content up and down)


@dataclasses.dataclass(frozen=True)
class ServerRecord:
    """One result's record as the server keeps it: its pair (collection, key), what computed it
    (``function``, ``code`` digest, ``dependencies`` name -> version, ``arguments`` name -> short
    summary), its ``size`` in bytes and compute ``seconds``, the ``host`` and time (``created``,
    Unix seconds) it was computed, the ``channel`` that set it, its ``hits`` on the server, and its
    ``inputs``: the cached results and content it was made from, each ``{"argument", "collection",
    "key"}`` or ``{"argument", "uri"}`` (as local records keep them)."""

    collection: str
    key: str
    function: str
    code: str
    dependencies: Mapping[str, str]
    arguments: Mapping[str, str]
    size: int
    seconds: float
    host: str
    created: float
    channel: str = ""
    hits: int = 0
    last_used: float = 0.0
    inputs: Sequence[Mapping[str, str]] = ()

    @classmethod
    def checked(cls, **fields: Any) -> ServerRecord:
        """The record of ``fields`` (every field, each already checked), made without the frozen
        ``__init__``'s one ``object.__setattr__`` a field (most of the cost of parsing a record)."""
        record = object.__new__(cls)
        record.__dict__.update(fields)
        return record

    def as_dict(self) -> dict[str, Any]:
        """Every field, for JSON."""
        return {**dataclasses.asdict(self), "dependencies": dict(self.dependencies), "arguments": dict(self.arguments),
                "inputs": [dict(i) for i in self.inputs]}


@dataclasses.dataclass(frozen=True)
class CountRow:
    """Deltas for one hour (Unix seconds of its start), collection and function."""

    hour: int
    collection: str
    function: str
    hits: int = 0
    misses: int = 0
    seconds_saved: float = 0.0
    seconds_computed: float = 0.0
    bytes_up: int = 0
    bytes_down: int = 0

    def values(self) -> tuple:
        return (self.hour, self.collection, self.function, self.hits, self.misses, self.seconds_saved,
                self.seconds_computed, self.bytes_up, self.bytes_down)


class RecordStore(abc.ABC):
    """The records and hourly counts of a server, shared by its replicas. Each method is atomic."""

    @abc.abstractmethod
    def put(self, records: Sequence[ServerRecord], now: float | None = None) -> None:
        """Write ``records`` (each replaces the record of its key, hits included: a result set again is a
        new result), and count each as a miss (its seconds computed) in the hour of ``now``."""

    @abc.abstractmethod
    def set_with_records(self, collection: str, pairs: Mapping[str, str | None],
                         records: Sequence[ServerRecord]) -> None:
        """Set ``pairs`` (key -> value; None deletes) in ``collection`` of the pairs these records sit
        beside and write ``records`` (each replacing the record of its key), in ONE transaction: it
        commits all of them or none (a record that cannot be written fails the set). Their misses
        are not counted here: the caller counts them (:meth:`add_counts` of :func:`miss_counts`),
        as the server does in batches, with the hits."""

    @abc.abstractmethod
    def add_hits(self, hits: Mapping[tuple[str, str], int], now: float | None = None) -> None:
        """Add ``hits`` ((collection, key) -> number) to the records of those keys that have one (their
        ``last_used`` set to ``now``), and count them in the hour of ``now``: hits, and the record's
        seconds as seconds saved by each. Keys without a record are left out."""

    @abc.abstractmethod
    def add_counts(self, rows: Sequence[CountRow]) -> None:
        """Add ``rows`` to the hourly counts (bytes moved, or counts of any kind); drops the hours
        older than :data:`~pairio.lifecycle.counts.KEEP_DAYS` days."""

    @abc.abstractmethod
    def get(self, collection: str, key: str) -> ServerRecord | None:
        """The record of ``key`` in ``collection``, or None."""

    @abc.abstractmethod
    def _ordered(self, collections: Collection[str], sort: str, limit: int | None) -> Iterator[ServerRecord]:
        """The records of ``collections`` (at most ``limit``, if given), most first by ``sort`` (newest
        first by ``created``)."""

    @abc.abstractmethod
    def counts(self, collections: Collection[str], since: float, until: float | None = None,
               by: str | None = "function") -> list[dict[str, Any]]:
        """The hourly counts of ``collections`` from the hour of ``since`` to before ``until``, as
        :func:`pairio.lifecycle.counts.read_in` gives them (one dict per hour and group)."""

    def records(self, collections: Collection[str], *, function: str | None = None, sort: str = "created",
                limit: int = 100) -> list[ServerRecord]:
        """At most ``limit`` records of ``collections``, most first by ``sort`` (one of :data:`SORTS`),
        of ``function`` (as :func:`pairio.lifecycle.records.matches_function` takes it) if given."""
        if sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
        out: list[ServerRecord] = []
        if not collections or limit <= 0:
            return out
        for record in self._ordered(collections, sort, None if function is not None else limit):
            if function is not None and not matches_function(record.function, function):
                continue
            out.append(record)
            if len(out) >= limit:
                break
        return out

    def check(self) -> None:
        """Raise a PairioError if the records cannot be used now (a cheap probe)."""
        self.get("pairio.health", "0" * 40)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and other resources."""


# --- the embedded store -------------------------------------------------------------------

FAMILY = "server_records"
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS server_records (
            collection TEXT NOT NULL,
            key TEXT NOT NULL,
            function TEXT NOT NULL,
            code TEXT NOT NULL,
            dependencies TEXT NOT NULL,
            arguments TEXT NOT NULL,
            size INTEGER NOT NULL,
            seconds REAL NOT NULL,
            host TEXT NOT NULL,
            created REAL NOT NULL,
            channel TEXT NOT NULL,
            hits INTEGER NOT NULL DEFAULT 0,
            last_used REAL NOT NULL,
            PRIMARY KEY (collection, key)
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS server_records_by_created ON server_records (created)",
    ),
    # 2: the inputs of each record (its provenance), JSON: a list of links.
    ("ALTER TABLE server_records ADD COLUMN inputs TEXT NOT NULL DEFAULT '[]'",),
    # 3: no index on created. Keeping it cost a set with a record a third of its write (a second
    # b-tree changed in every set); listing newest first scans the collections' records and keeps
    # the newest (a top-N sort), as listing by size, seconds or hits always did. An older pairio
    # works on the migrated database (its queries name no index).
    ("DROP INDEX IF EXISTS server_records_by_created",),
)
# Registered on import: only a process that imports the server's backends makes these tables.
register_schema(FAMILY, MIGRATIONS, optional=True)

COLUMNS = ("collection", "key", "function", "code", "dependencies", "arguments", "size", "seconds", "host",
           "created", "channel", "hits", "last_used", "inputs")
_JSON_COLUMNS = frozenset({"dependencies", "arguments", "inputs"})
_UPSERT = (
    f"INSERT INTO server_records ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
    "ON CONFLICT (collection, key) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[2:])
)
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM server_records"
_HIT = ("UPDATE server_records SET hits = hits + ?, last_used = max(last_used, ?) "
        "WHERE collection = ? AND key = ? RETURNING function, seconds")


_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)
_ENCODE = _ENCODER.encode
# The C encoder itself, made once: ``encode`` makes one a call (half the cost of encoding a record's
# dependencies). No check for cycles: a column holds plain text objects and lists of them.
_C_ENCODE = None if c_make_encoder is None else c_make_encoder(
    None, _ENCODER.default, encode_basestring_ascii, None, ":", ",", True, False, True)


def record_row(record: ServerRecord) -> tuple:
    """``record`` as a row of :data:`COLUMNS` (JSON columns as text)."""
    r = record
    return (r.collection, r.key, r.function, r.code, json_column(r.dependencies), json_column(r.arguments), r.size,
            r.seconds, r.host, r.created, r.channel, r.hits, r.last_used, json_column(r.inputs) if r.inputs else "[]")


def json_column(value: Any) -> str:
    """A JSON column's text: an object (dependencies, arguments) or a list of links (inputs)."""
    if type(value) is not dict:
        value = dict(value) if isinstance(value, Mapping) else [dict(i) for i in value]
    elif not value:
        return "{}"
    return _ENCODE(value) if _C_ENCODE is None else "".join(_C_ENCODE(value, 0))


def record_from_row(row: Sequence[Any]) -> ServerRecord:
    """The record of a row of :data:`COLUMNS`."""
    values = {c: (json.loads(v) if isinstance(v, str) else v) if c in _JSON_COLUMNS else v
              for c, v in zip(COLUMNS, row, strict=True)}
    values["inputs"] = tuple(values["inputs"] or ())
    return ServerRecord(**values)


def miss_counts(records: Sequence[ServerRecord], now: float | None = None) -> list[CountRow]:
    """The counts of ``records`` set at ``now`` (default: now): one miss each, its seconds computed."""
    hour = local_counts.hour_of(time.time() if now is None else now)
    summed: dict[tuple[str, str], list] = {}
    for r in records:
        row = summed.setdefault((r.collection, r.function), [0, 0.0])
        row[0] += 1
        row[1] += r.seconds
    return [CountRow(hour, c, f, misses=n, seconds_computed=s) for (c, f), (n, s) in summed.items()]


def miss_rows(records: Sequence[ServerRecord], now: float) -> list[tuple]:
    """:func:`miss_counts` as rows of values."""
    return [row.values() for row in miss_counts(records, now)]


class EmbeddedRecords(RecordStore):
    """The records and counts in the database of the server's embedded store."""

    def __init__(self, store: EmbeddedStore) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"EmbeddedRecords({self.store!r})"

    def put(self, records: Sequence[ServerRecord], now: float | None = None) -> None:
        if not records:
            return
        now = time.time() if now is None else now
        with self.store.transaction(immediate=True) as connection:
            connection.executemany(_UPSERT, [record_row(r) for r in records])
            local_counts.write_in(connection, miss_rows(records, now), now)

    def set_with_records(self, collection: str, pairs: Mapping[str, str | None],
                         records: Sequence[ServerRecord]) -> None:
        # One transaction (rolled back on any failure: neither the pairs nor the records).
        self.store.set_many_with(collection, pairs, _UPSERT, [record_row(r) for r in records])

    def add_hits(self, hits: Mapping[tuple[str, str], int], now: float | None = None) -> None:
        if not hits:
            return
        now = time.time() if now is None else now
        hour = local_counts.hour_of(now)
        summed: dict[tuple[str, str], list] = {}
        with self.store.transaction(immediate=True) as connection:
            for (collection, key), n in hits.items():
                found = connection.execute(_HIT, (n, now, collection, key)).fetchone()
                if found is not None:
                    row = summed.setdefault((collection, found[0]), [0, 0.0])
                    row[0] += n
                    row[1] += n * found[1]
            local_counts.write_in(connection, [CountRow(hour, c, f, hits=n, seconds_saved=s).values()
                                               for (c, f), (n, s) in summed.items()], now)

    def add_counts(self, rows: Sequence[CountRow]) -> None:
        if not rows:
            return
        with self.store.transaction(immediate=True) as connection:
            local_counts.write_in(connection, [r.values() for r in rows])

    def get(self, collection: str, key: str) -> ServerRecord | None:
        try:
            with self.store.transaction() as connection:
                row = connection.execute(_SELECT + " WHERE collection = ? AND key = ?", (collection, key)).fetchone()
        except sqlite3.OperationalError as exc:
            if local_counts.missing_table(exc):  # a store made before records, read as it is
                return None
            raise
        return None if row is None else record_from_row(row)

    def _ordered(self, collections: Collection[str], sort: str, limit: int | None) -> Iterator[ServerRecord]:
        sql = (_SELECT + " WHERE collection IN (SELECT value FROM json_each(?)) "
               f"ORDER BY {sort} DESC, created DESC, key LIMIT ?")
        try:
            with self.store.transaction() as connection:
                rows = connection.execute(sql, (json.dumps(sorted(collections)), -1 if limit is None else limit)).fetchall()
        except sqlite3.OperationalError as exc:
            if not local_counts.missing_table(exc):  # a store made before records, read as it is: none
                raise
            rows = []
        for row in rows:
            yield record_from_row(row)

    def counts(self, collections: Collection[str], since: float, until: float | None = None,
               by: str | None = "function") -> list[dict[str, Any]]:
        if not collections:
            local_counts.check_by(by)
            return []
        with self.store.transaction() as connection:
            return local_counts.read_in(connection, since, until, by, collections)

