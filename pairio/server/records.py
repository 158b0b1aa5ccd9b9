"""Records and counts on the server: a miss's record arrives with its pair (the ``records`` field of
``set`` and ``set_many``), a get of a key that has a record counts a hit, and two signed endpoints
read them back (``POST /api/v1/records``, ``POST /api/v1/counts``), filtered by the channel's rights.

A record is written in the request that sets its pair, in the same transaction (so that a hit on
another replica a moment later finds it, and a crash leaves both or neither); its miss, hits and
bytes are queued in memory (:class:`Recorder`) and
written in batches by the one deferred writer (:mod:`pairio.deferred`) at most a second later,
when the server stops, and before this process answers a read of them: a get writes nothing. A channel sees the records and counts only of collections it may get,
and sends records only with pairs it may set.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from ..deferred import DeferredWriter
from ..errors import PairioError
from ..kv.base import KeyValueStore
from ..kv.embedded import EmbeddedStore
from ..lifecycle.counts import GROUPS, KEEP_S, by_group, hour_of, totals
from .auth import ApiError
from .backends.records import BYTES_FUNCTION, SORTS, CountRow, EmbeddedRecords, RecordStore, ServerRecord
from .responses import API, Handler, json_response
from .settings import ServerSettings

log = logging.getLogger("pairio.server")

MAX_FUNCTION_CHARS = 1000
MAX_CODE_CHARS = 200
MAX_HOST_CHARS = 255
MAX_NAME_CHARS = 200
MAX_TEXT_CHARS = 1000
MAX_DEPENDENCIES = 500
MAX_ARGUMENTS = 200
MAX_SECONDS = 1e9
MAX_CREATED = 1e11  # Unix seconds: the year 5138
MAX_SIZE = 1 << 62
MAX_LIST_LIMIT = 1000
MAX_INPUTS = 200
MAX_URI_CHARS = 1000
MAX_KEY_CHARS = 1000
RECORD_FIELDS = ("function", "code", "dependencies", "arguments", "size", "seconds", "host", "created", "inputs")
_FLUSH_INTERVAL_S = 1.0


def readable_collections(settings: ServerSettings, channel: str) -> list[str]:
    """The collections whose records and counts ``channel`` may see: those it may get."""
    return sorted(name for name, c in settings.channels[channel].collections.items() if c.max_gets_per_minute > 0)


def settable_collections(settings: ServerSettings, channel: str) -> list[str]:
    """The collections ``channel`` may set (records go only with their pairs)."""
    return sorted(name for name, c in settings.channels[channel].collections.items() if c.max_sets_per_minute > 0)


def open_records(store: object, coordination: object = None) -> RecordStore | None:
    """The records beside the server's pairs ``store``: in its database (embedded or PostgreSQL);
    None for a store that cannot keep them.

    A set with records commits its pairs and records in one transaction of the pairs' database
    (:meth:`RecordStore.set_with_records`); their misses are queued with the hits. On PostgreSQL
    the counts commit without waiting for the disk, as the coordination does (over its pool, when
    it is in the same database): a crash of the database server loses at most its last moment of
    counts, never a pair or its record."""
    if isinstance(store, EmbeddedStore):
        return EmbeddedRecords(store)
    from .backends.postgres import PostgresCoordination, PostgresDatabase, PostgresRecords, PostgresStore

    if isinstance(store, PostgresStore):
        shared = getattr(coordination, "database", None)
        if isinstance(coordination, PostgresCoordination) and shared.url == store.database.url \
                and not shared.synchronous_commit:
            return PostgresRecords(shared, pairs=store.database)
        return PostgresRecords(PostgresDatabase(store.database.url, synchronous_commit=False), pairs=store.database)
    return None


def content_counter(settings: ServerSettings, recorder: Recorder) -> Callable[[str, int, int], None]:
    """What counts the bytes of content a channel moves: content is not of a collection, so bytes up
    count for the first collection (in pairio.json's order) the channel may set, bytes down for the
    first it may get (none: not counted)."""

    def moved(channel: str, up: int, down: int) -> None:
        collections = settings.channels[channel].collections.values()
        if up:
            target = next((c.name for c in collections if c.max_sets_per_minute > 0), None)
            if target is not None:
                recorder.moved(target, up=up)
        if down:
            target = next((c.name for c in collections if c.max_gets_per_minute > 0), None)
            if target is not None:
                recorder.moved(target, down=down)

    return moved


# --- the records field of set and set_many --------------------------------------------------


def parse_records(value: object, values: Mapping[str, str | None], collection: str, channel: str,
                  field: str = "records") -> list[ServerRecord]:
    """The records of request field ``field`` (an object: key -> record), each for a key of ``values``
    (the pairs the request sets, not deleting) in ``collection``, written by ``channel``. Absent
    (None): no records. A 400 naming the field for anything else."""
    if value is None:
        return []
    if not isinstance(value, dict):
        raise ApiError(400, f"field {field} must be an object mapping keys set to their records")
    out = []
    for key, record in value.items():
        if values.get(key) is None:
            raise ApiError(400, f"field {field}[{key!r}]: a record goes only with a pair the request sets; "
                                "this key is not among them")
        plain = None
        if type(record) is dict and record.keys() <= _FIELD_SET and record.keys() >= _REQUIRED:
            plain = _plain_record(record, collection, key, channel, field)
        out.append(plain if plain is not None else parse_record(record, collection, key, channel,
                                                                f"{field}[{key!r}]"))
    return out


def parse_record(obj: object, collection: str, key: str, channel: str, where: str) -> ServerRecord:
    """One record of a request, every field checked (a 400 naming ``where`` and the field)."""
    if not isinstance(obj, dict):
        raise ApiError(400, f"field {where} must be an object with {', '.join(RECORD_FIELDS)}")
    unknown = sorted(obj.keys() - _FIELD_SET)
    if unknown:
        raise ApiError(400, f"field {where}: unknown field(s) {', '.join(map(repr, unknown))}; a record holds "
                            f"{', '.join(RECORD_FIELDS)}")
    missing = [f for f in RECORD_FIELDS if f in _REQUIRED and f not in obj]
    if missing:
        raise ApiError(400, f"field {where}: missing {', '.join(map(repr, missing))}")
    return ServerRecord(
        collection=collection, key=key,
        function=_text(obj["function"], f"{where}.function", MAX_FUNCTION_CHARS, empty=False),
        code=_text(obj.get("code", ""), f"{where}.code", MAX_CODE_CHARS),
        dependencies=_names(obj.get("dependencies", {}), f"{where}.dependencies", MAX_DEPENDENCIES, MAX_NAME_CHARS),
        arguments=_names(obj.get("arguments", {}), f"{where}.arguments", MAX_ARGUMENTS, MAX_TEXT_CHARS),
        size=_integer(obj["size"], f"{where}.size", MAX_SIZE),
        seconds=_number(obj["seconds"], f"{where}.seconds", MAX_SECONDS),
        host=_text(obj.get("host", ""), f"{where}.host", MAX_HOST_CHARS),
        created=_number(obj["created"], f"{where}.created", MAX_CREATED),
        channel=channel, hits=0, last_used=0.0,
        inputs=_inputs(obj.get("inputs", []), f"{where}.inputs"),
    )


_FIELD_SET = frozenset(RECORD_FIELDS)
_REQUIRED = frozenset(("function", "size", "seconds", "created"))


def _plain_record(obj: dict, collection: str, key: str, channel: str, field: str) -> ServerRecord | None:
    """The record of ``obj`` (of :data:`RECORD_FIELDS` only, the required ones there) if every field
    is plainly valid (ASCII text, so no lone surrogate; no NUL; within its limits), checked with a
    few C calls in all and no message made; None if any is not (then :func:`parse_record` checks
    field by field, as strictly, and says which). ``field``: the request's field, for the inputs."""
    get = obj.get
    function, code, host = obj["function"], get("code", ""), get("host", "")
    dependencies, arguments = get("dependencies", _NONE), get("arguments", _NONE)
    size, seconds, created = obj["size"], obj["seconds"], obj["created"]
    if type(dependencies) is not dict or type(arguments) is not dict or len(dependencies) > MAX_DEPENDENCIES \
            or len(arguments) > MAX_ARGUMENTS:
        return None
    try:  # joining fails on anything but strings
        text = "".join((function, code, host, *dependencies, *dependencies.values(), *arguments, *arguments.values()))
    except TypeError:
        return None
    if not (text.isascii() and "\0" not in text and function and len(function) <= MAX_FUNCTION_CHARS
            and len(code) <= MAX_CODE_CHARS and len(host) <= MAX_HOST_CHARS
            and (not dependencies or (max(map(len, dependencies)) <= MAX_NAME_CHARS
                                      and max(map(len, dependencies.values())) <= MAX_NAME_CHARS))
            and (not arguments or (max(map(len, arguments)) <= MAX_NAME_CHARS
                                   and max(map(len, arguments.values())) <= MAX_TEXT_CHARS))
            and type(size) is int and 0 <= size <= MAX_SIZE
            # a number (NaN compares false; infinity is over the limit)
            and type(seconds) in _NUMBERS and 0 <= seconds <= MAX_SECONDS
            and type(created) in _NUMBERS and 0 <= created <= MAX_CREATED):
        return None
    links = get("inputs")
    inputs = () if links is None or links == [] else _inputs(links, f"{field}[{key!r}].inputs")
    return ServerRecord.checked(collection=collection, key=key, function=function, code=code,
                                dependencies={} if dependencies is _NONE else dependencies,
                                arguments={} if arguments is _NONE else arguments, size=size, seconds=float(seconds),
                                host=host, created=float(created), channel=channel, hits=0, last_used=0.0,
                                inputs=inputs)


_NONE: dict = {}
_NUMBERS = (int, float)


def _inputs(value: object, field: str) -> tuple[dict[str, str], ...]:
    """The inputs of a record: a list of at most :data:`MAX_INPUTS` links, each ``{"argument",
    "collection", "key"}`` (another cached result) or ``{"argument", "uri"}`` (content)."""
    if not isinstance(value, list):
        raise ApiError(400, f"field {field} must be a list of links ({{argument, collection, key}} or {{argument, uri}})")
    if len(value) > MAX_INPUTS:
        raise ApiError(400, f"field {field} has {len(value)} entries; the limit is {MAX_INPUTS}")
    out = []
    for i, link in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(link, dict) or set(link) not in ({"argument", "collection", "key"}, {"argument", "uri"}):
            raise ApiError(400, f"field {where} must be an object of exactly argument, collection and key, "
                                "or of argument and uri")
        checked = {"argument": _text(link["argument"], f"{where}.argument", MAX_NAME_CHARS, empty=False)}
        if "uri" in link:
            uri = _text(link["uri"], f"{where}.uri", MAX_URI_CHARS, empty=False)
            if not uri.startswith(("sha1://", "sha1dir://")):
                raise ApiError(400, f"field {where}.uri must be a sha1:// or sha1dir:// URI")
            checked["uri"] = uri
        else:
            checked["collection"] = _text(link["collection"], f"{where}.collection", MAX_NAME_CHARS, empty=False)
            checked["key"] = _text(link["key"], f"{where}.key", MAX_KEY_CHARS, empty=False)
        out.append(checked)
    return tuple(out)


def _text(value: object, field: str, limit: int, empty: bool = True) -> str:
    if type(value) is str and len(value) <= limit and value.isascii() and "\0" not in value and (empty or value):
        return value  # the usual case, at the cost of three C calls (ASCII: no lone surrogate)
    if not isinstance(value, str) or (not empty and not value):
        raise ApiError(400, f"field {field} must be a{'' if empty else ' non-empty'} string")
    if len(value) > limit:
        raise ApiError(400, f"field {field} has {len(value)} characters; the limit is {limit}")
    if "\0" in value:
        raise ApiError(400, f"field {field} may not contain a NUL character (U+0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, f"field {field} is not valid Unicode (a lone surrogate)") from None
    return value


def _names(value: object, field: str, count: int, chars: int) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ApiError(400, f"field {field} must be an object mapping names to strings")
    if len(value) > count:
        raise ApiError(400, f"field {field} has {len(value)} entries; the limit is {count}")
    return {_text(k, f"{field} name", MAX_NAME_CHARS): _text(v, f"{field}[{k!r}]", chars) for k, v in value.items()}


def _integer(value: object, field: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise ApiError(400, f"field {field} must be a whole number from 0 to {limit}")
    return value


def _number(value: object, field: str, limit: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= limit:
        raise ApiError(400, f"field {field} must be a number from 0 to {limit:g}")
    return float(value)


# --- batching ---------------------------------------------------------------------------------


class Recorder:
    """The records, hits and bytes of requests, for ``backend`` (a :class:`RecordStore`; None keeps
    nothing): records written at once (:meth:`put`), hits and bytes queued (a dictionary update:
    cheap enough for the hit path) and written in batches by the deferred writer."""

    def __init__(self, backend: RecordStore | None, interval_s: float = _FLUSH_INTERVAL_S) -> None:
        self.backend = backend
        self._lock = threading.Lock()
        self._hits: dict[tuple[str, str], int] = {}
        self._bytes: dict[tuple[int, str], list[int]] = {}
        self._misses: dict[tuple[int, str, str], list] = {}  # (hour, collection, function) -> [n, seconds]
        self._writer = DeferredWriter("pairio-server-records", self._write, self._has_work,
                                      interval_s=interval_s, forget=self._forget)

    def set_with_records(self, store: KeyValueStore, collection: str, pairs: Mapping[str, str | None],
                         records: list[ServerRecord]) -> None:
        """Set ``pairs`` in ``collection`` of ``store`` (the pairs beside :attr:`backend`) with their
        ``records``, in one transaction when there are records and a backend to keep them, and
        queue their misses (written with the hits). A failure is raised: then neither the pairs
        nor their records are set, nor their misses counted."""
        if self.backend is None or not records:
            store.set_many(collection, pairs)
            return
        self.backend.set_with_records(collection, pairs, records)
        self.missed(records)

    def missed(self, records: Iterable[ServerRecord]) -> None:
        """Queue a miss of each of ``records`` (just set with its pair), its seconds computed."""
        hour = hour_of(time.time())
        with self._lock:
            misses = self._misses  # read under the lock: the writer swaps it for an empty one
            for r in records:
                row = misses.get((hour, r.collection, r.function))
                if row is None:
                    row = misses[hour, r.collection, r.function] = [0, 0.0]
                row[0] += 1
                row[1] += r.seconds
        self._writer.notify()

    def put(self, records: list[ServerRecord]) -> None:
        """Write ``records`` (set with their pairs just now: each a miss). A failure is logged, not
        raised: the pairs are stored, and the request that set them succeeded."""
        if self.backend is None or not records:
            return
        try:
            self.backend.put(records)
        except PairioError as exc:
            log.warning("%d record(s) of pairs set in %s not kept: %s", len(records), records[0].collection, exc)

    def hit(self, collection: str, keys: Iterable[str]) -> None:
        """Queue a hit of each of ``keys`` (found by a get): counted where the key has a record."""
        if self.backend is None:
            return
        with self._lock:
            hits = self._hits  # read under the lock: the writer swaps it for an empty one
            for key in keys:
                ident = (collection, key)
                hits[ident] = hits.get(ident, 0) + 1
        self._writer.notify()

    def moved(self, collection: str, up: int = 0, down: int = 0) -> None:
        """Queue ``up`` bytes received and ``down`` bytes sent for ``collection`` (content)."""
        if self.backend is None or not (up or down):
            return
        ident = (hour_of(time.time()), collection)
        with self._lock:
            row = self._bytes.setdefault(ident, [0, 0])
            row[0] += up
            row[1] += down
        self._writer.notify()

    def flush(self) -> None:
        """Write what is queued now (errors are logged by the writer, never raised)."""
        self._writer.flush()

    def _has_work(self) -> bool:
        return bool(self._hits or self._bytes or self._misses)

    def _write(self) -> None:
        with self._lock:
            hits, moved, misses = self._hits, self._bytes, self._misses
            self._hits, self._bytes, self._misses = {}, {}, {}
        backend = self.backend
        if backend is None:
            return
        rows = [CountRow(hour, collection, function, misses=n, seconds_computed=seconds)
                for (hour, collection, function), (n, seconds) in misses.items()]
        rows += [CountRow(hour, collection, BYTES_FUNCTION, bytes_up=up, bytes_down=down)
                 for (hour, collection), (up, down) in moved.items()]
        try:
            if hits:
                backend.add_hits(hits)
        finally:  # the misses and bytes, even if the hits could not be written
            if rows:
                backend.add_counts(rows)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._hits, self._bytes, self._misses = {}, {}, {}


# --- the endpoints ------------------------------------------------------------------------------


class _Reads:
    """``POST /api/v1/records`` and ``POST /api/v1/counts``."""

    def __init__(self, settings: ServerSettings, recorder: Recorder) -> None:
        self.settings = settings
        self.recorder = recorder

    def _collections(self, channel: str, obj: dict) -> list[str]:
        readable = readable_collections(self.settings, channel)
        wanted = obj.get("collection")
        if wanted is None:
            return readable
        if not isinstance(wanted, str):
            raise ApiError(400, "field 'collection' must be a collection name")
        if wanted not in readable:
            raise ApiError(403, f"channel {channel!r} may not read collection {wanted!r}")
        return [wanted]

    def records(self, channel: str, obj: dict) -> Response:
        collections = self._collections(channel, obj)
        sort = obj.get("sort", "created")
        if sort not in SORTS:
            raise ApiError(400, f"field 'sort' must be one of {', '.join(SORTS)}")
        limit = obj.get("limit", 100)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
            raise ApiError(400, f"field 'limit' must be a whole number from 1 to {MAX_LIST_LIMIT}")
        function = obj.get("function")
        if function is not None and (not isinstance(function, str) or not function):
            raise ApiError(400, "field 'function' must be a non-empty string (a name, its dotted tail or a glob)")
        backend = self.recorder.backend
        if backend is None:
            return json_response({"records": []})
        self.recorder.flush()
        found = backend.records(collections, function=function, sort=sort, limit=limit)
        return json_response({"records": [r.as_dict() for r in found]})

    def counts(self, channel: str, obj: dict) -> Response:
        collections = self._collections(channel, obj)
        now = time.time()
        since = obj.get("since", now - 7 * 86_400)
        until = obj.get("until")
        for name, value in (("since", since), ("until", until)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value < 0):
                raise ApiError(400, f"field {name!r} must be a time in Unix seconds")
        since = max(float(since), now - KEEP_S)
        by = obj.get("by", "function")
        if by is not None and by not in GROUPS:
            raise ApiError(400, f"field 'by' must be one of {', '.join(GROUPS)} or null")
        backend = self.recorder.backend
        rows: list[dict[str, Any]] = []
        if backend is not None:
            self.recorder.flush()
            rows = backend.counts(collections, since, until, by)
        out: dict[str, Any] = {"since": hour_of(since), "until": until, "by": by, "counts": rows,
                               "totals": totals(rows)}
        if by is not None:
            out["groups"] = by_group(rows, by)
        return json_response(out)


def record_routes(endpoint: Callable[[Callable[[str, Any], Response]], Handler], settings: ServerSettings,
                  recorder: Recorder) -> list[Route]:
    """The read endpoints of records and counts, each wrapped by ``endpoint`` (body size, signature, errors)."""
    reads = _Reads(settings, recorder)
    return [
        Route(f"{API}/records", endpoint(reads.records), methods=["POST"]),
        Route(f"{API}/counts", endpoint(reads.counts), methods=["POST"]),
    ]
