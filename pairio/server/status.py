"""The status page's views as plain dicts, over one small interface to what a cache knows.

A :class:`StatusSource` gives records (one dict per cached result), hourly counts, leases in flight
and health. Two implement it: :class:`LocalSource`, the embedded store of this machine (what
``pairio ui`` shows), and :class:`ServerSource`, the server's store (what ``pairio serve`` shows at
``/``). Every view takes ``collections``, the names the viewer may read (None: every one), and
never shows a record, count or lease of another collection.

A record dict has ``collection``, ``key``, ``function``, ``code`` (the code digest),
``dependencies`` (name -> version), ``arguments`` (name -> short summary), ``size`` (bytes),
``seconds`` (to compute), ``host``, ``created``, ``last_used`` and ``hits``; a local record also has
``sha1``, ``version``, ``code_parts`` and ``argument_hashes``, which the reason of a miss compares.
"""

from __future__ import annotations

import abc
import json
import os
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import InvalidInputError, PairioError
from ..hashing import is_sha1_hex
from ..kv import EmbeddedStore
from ..lifecycle import misses, provenance, records

HOUR_S = 3_600
DAY_S = 86_400
WEEK_S = 7 * DAY_S
# How many records the views read at most (newest first): the page summarises, `pairio ls` lists.
MAX_RECORDS = 20_000
STEP_ORDERS = {"saved": "seconds_saved", "computed": "seconds_computed", "size": "size"}
# How many of a function's older entries a miss is compared with (the newest), as `explain` does.
COMPARED = 500
COUNT_FIELDS = ("hits", "misses", "seconds_saved", "seconds_computed", "bytes_up", "bytes_down")
# The most steps deep and in all that the server's provenance tree of an entry shows.
MAX_LINEAGE_DEPTH = 12
MAX_LINEAGE_NODES = 200
HIDDEN = "in a collection you may not read"


class StatusSource(abc.ABC):
    """What the status views read: records, hourly counts, leases and health of one cache."""

    kind = "local"

    @abc.abstractmethod
    def records(self, collections: Collection[str] | None, limit: int | None = None) -> list[dict[str, Any]]:
        """At most ``limit`` (default :data:`MAX_RECORDS`) record dicts of ``collections`` (None: all),
        newest first."""

    @abc.abstractmethod
    def record(self, collection: str, key: str) -> dict[str, Any] | None:
        """The record dict of ``key`` in ``collection``, or None."""

    @abc.abstractmethod
    def lineage(self, collection: str, key: str, collections: Collection[str] | None = None) -> dict[str, Any] | None:
        """The provenance tree of an entry (see :func:`pairio.lifecycle.provenance.lineage`), or None;
        an input in a collection not among ``collections`` (None: every one) is shown as hidden."""

    @abc.abstractmethod
    def counts(self, collections: Collection[str] | None, since: float) -> list[dict[str, Any]]:
        """The hourly counts since ``since``: dicts of ``hour`` and :data:`COUNT_FIELDS`, oldest first."""

    @abc.abstractmethod
    def leases(self, collections: Collection[str] | None, now: float) -> list[dict[str, Any]]:
        """The leases held now: dicts of ``collection``, ``key``, ``function``, ``host``, ``pid``,
        ``channel``, ``acquired_at``, ``expires_at`` (None where unknown)."""

    @abc.abstractmethod
    def size_limit(self) -> int | None:
        """The most bytes the cache may hold, or None without a limit."""

    @abc.abstractmethod
    def problems(self) -> list[str]:
        """What cannot be used now, one cause each (empty: healthy)."""

    def fetch_command(self, record: dict[str, Any]) -> str:
        """The shell command that gets the entry's result onto this machine."""
        sha1 = record.get("sha1")
        return f"pairio load sha1://{sha1}" if sha1 else f"pairio get {record['key']} --collection {record['collection']}"


class LocalSource(StatusSource):
    """This machine's embedded store: its records, counts and the directory store's lease files."""

    kind = "local"

    def __init__(self, store: EmbeddedStore, max_size: int | None = None,
                 lease_directories: Iterable[str | os.PathLike[str]] = (),
                 database_dir: str | os.PathLike[str] | None = None) -> None:
        self.store = store
        self.max_size = max_size
        self.lease_directories = [Path(d) for d in lease_directories]
        # Where the keys' locks of this machine's computations are (their holders are in flight).
        self.database_dir = None if database_dir is None else Path(database_dir)

    def records(self, collections: Collection[str] | None, limit: int | None = None) -> list[dict[str, Any]]:
        limit = MAX_RECORDS if limit is None else limit
        found = records.entries(self.store, limit=None if collections is not None else limit)
        if collections is not None:
            found = [e for e in found if e.collection in collections][:limit]
        return [local_record(e) for e in found]

    def record(self, collection: str, key: str) -> dict[str, Any] | None:
        entry = records.get(self.store, collection, key)
        return None if entry is None else local_record(entry)

    def lineage(self, collection: str, key: str, collections: Collection[str] | None = None) -> dict[str, Any] | None:
        entry = records.get(self.store, collection, key)
        return None if entry is None else provenance.lineage(self.store, entry)

    def counts(self, collections: Collection[str] | None, since: float) -> list[dict[str, Any]]:
        from ..lifecycle import counts

        if collections is None:
            return counts.read(self.store, since, by=None)
        rows = [row for name in collections for row in counts.read(self.store, since, by=None, collection=name)]
        return merge_hours(rows)

    def leases(self, collections: Collection[str] | None, now: float) -> list[dict[str, Any]]:
        from ..kv.directory import DirectoryLeases

        out = []
        for directory in self.lease_directories:
            for lease in DirectoryLeases(directory).leases(now):
                collection, _, key = lease.name.partition("/")
                if collections is not None and collection not in collections:
                    continue
                out.append({"collection": collection, "key": key, "function": lease.info.get("function"),
                            "host": lease.info.get("host"), "pid": lease.info.get("pid"), "channel": None,
                            "acquired_at": lease.acquired_at, "expires_at": lease.expires_at})
        if self.database_dir is not None:
            from ..key_lock_files import holders

            for held in holders(self.database_dir):
                collection = held.get("collection") or ""
                if collections is not None and collection not in collections:
                    continue
                out.append({"collection": collection, "key": held["key"], "function": held.get("function"),
                            "host": held.get("host"), "pid": held.get("pid"), "channel": None,
                            "acquired_at": float(held.get("started") or now), "expires_at": None})
        return out

    def size_limit(self) -> int | None:
        return self.max_size

    def problems(self) -> list[str]:
        try:
            self.store.check()
        except (PairioError, OSError) as exc:
            return [f"local store: {exc}"]
        return []


def local_record(entry: records.Entry) -> dict[str, Any]:
    """A local record as a record dict (see the module)."""
    return {"collection": entry.collection, "key": entry.key, "function": entry.function,
            "code": entry.code.get("digest", ""), "dependencies": dict(entry.dependencies),
            "arguments": dict(entry.summary), "size": entry.size, "seconds": entry.seconds,
            "host": entry.host, "created": entry.created, "last_used": entry.last_used, "hits": entry.hits,
            "sha1": entry.sha1, "version": entry.version, "code_parts": dict(entry.code),
            "argument_hashes": dict(entry.arguments)}


class ServerSource(StatusSource):
    """The server's store: the records and counts beside its pairs, the leases of its coordination.

    ``records`` is the server's record store (``pairio.server.backends.records``: ``get``,
    ``records``, ``counts``), None where the pairs store keeps none; ``problems`` probes the backends;
    ``flush`` writes the records and counts still queued (called before each read of them);
    ``pairs``, the pairs store, gives an entry's result (its pair's value).
    """

    kind = "server"

    def __init__(self, records_store: Any, coordination: Any, problems: Callable[[], list[str]],
                 flush: Callable[[], None] | None = None, pairs: Any = None) -> None:
        self.records_store = records_store
        self.coordination = coordination
        self._problems = problems
        self._flush = flush
        self.pairs = pairs

    def _flushed(self) -> Any:
        if self._flush is not None:
            self._flush()
        return self.records_store

    @staticmethod
    def _names(collections: Collection[str] | None) -> list[str]:
        # A viewer of the server always names what they may read: None reads nothing, never everything.
        return sorted(collections or ())

    def records(self, collections: Collection[str] | None, limit: int | None = None) -> list[dict[str, Any]]:
        limit = MAX_RECORDS if limit is None else limit
        if self.records_store is None:
            return []
        found = self._flushed().records(self._names(collections), sort="created", limit=limit)
        return [server_record(r) for r in found]

    def record(self, collection: str, key: str) -> dict[str, Any] | None:
        if self.records_store is None:
            return None
        found = self._flushed().get(collection, key)
        if found is None:
            return None
        out = server_record(found)
        value = None if self.pairs is None else self.pairs.get(collection, key)
        if value is not None and is_sha1_hex(value):
            out["sha1"] = value
        return out

    def lineage(self, collection: str, key: str, collections: Collection[str] | None = None) -> dict[str, Any] | None:
        if self.records_store is None:
            return None
        store = self._flushed()
        found = store.get(collection, key)
        if found is None:
            return None
        allowed = set(self._names(collections)) | {collection}
        shown = {(collection, key)}
        return self._node(store, found, allowed, frozenset(shown), 1, shown)

    def _node(self, store: Any, found: Any, allowed: set[str], seen: frozenset[tuple[str, str]], level: int,
              shown: set[tuple[str, str]]) -> dict[str, Any]:
        """The tree of record ``found``: ``seen`` the steps on the path to it, ``shown`` every step in
        the tree so far (a step met again, as two inputs that share a step, is shown once)."""
        value = None if self.pairs is None else self.pairs.get(found.collection, found.key)
        node: dict[str, Any] = {"function": found.function, "key": found.key, "collection": found.collection,
                                "uri": f"sha1://{value}" if value is not None and is_sha1_hex(value) else "",
                                "code": found.code, "dependencies": dict(found.dependencies),
                                "arguments": dict(found.arguments), "created": found.created, "host": found.host,
                                "inputs": []}
        for link in found.inputs:
            argument = link.get("argument", "")
            if "uri" in link:
                node["inputs"].append({"argument": argument, "uri": link["uri"], "note": "content"})
                continue
            ident = (link.get("collection", ""), link.get("key", ""))
            if ident[0] not in allowed:
                # Never its key, collection or record: only that it exists.
                node["inputs"].append({"argument": argument, "note": HIDDEN})
                continue
            cut = level >= MAX_LINEAGE_DEPTH or len(shown) >= MAX_LINEAGE_NODES
            child = None if ident in shown or cut else store.get(*ident)
            if child is not None:
                shown.add(ident)
                node["inputs"].append({"argument": argument,
                                       **self._node(store, child, allowed, seen | {ident}, level + 1, shown)})
            else:
                note = ("cycle" if ident in seen else "shown above" if ident in shown else
                        "not shown (the tree is cut here)" if cut else "no record (forgotten or evicted)")
                node["inputs"].append({"argument": argument, "key": ident[1], "collection": ident[0], "note": note})
        return node

    def counts(self, collections: Collection[str] | None, since: float) -> list[dict[str, Any]]:
        if self.records_store is None:
            return []
        return self._flushed().counts(self._names(collections), since, by=None)

    def leases(self, collections: Collection[str] | None, now: float) -> list[dict[str, Any]]:
        allowed = set(self._names(collections))
        out = []
        for lease in self.coordination.leases(now):
            info = dict(lease.info)
            if info.get("collection") not in allowed:
                continue
            out.append({"collection": info.get("collection"), "key": info.get("key"),
                        "function": info.get("function"), "host": info.get("host"), "pid": info.get("pid"),
                        "channel": info.get("channel"), "acquired_at": lease.acquired_at,
                        "expires_at": lease.expires_at})
        return out

    def size_limit(self) -> int | None:
        return None

    def problems(self) -> list[str]:
        return self._problems()

    def fetch_command(self, record: dict[str, Any]) -> str:
        where = "  # with this server in pairio's config (PAIRIO_URL, PAIRIO_CHANNEL)"
        if record.get("sha1"):
            return f"pairio load sha1://{record['sha1']}{where}"
        return f"pairio get {record['key']} --collection {record['collection']}{where}"


def server_record(record: Any) -> dict[str, Any]:
    """A server record (``ServerRecord``) as a record dict."""
    out = record.as_dict() if hasattr(record, "as_dict") else dict(record)
    return {"collection": out["collection"], "key": out["key"], "function": out["function"],
            "code": out.get("code", ""), "dependencies": dict(out.get("dependencies", {})),
            "arguments": dict(out.get("arguments", {})), "size": out.get("size", 0),
            "seconds": out.get("seconds", 0.0), "host": out.get("host", ""), "created": out.get("created", 0.0),
            "last_used": out.get("last_used", 0.0), "hits": out.get("hits", 0), "channel": out.get("channel", "")}


# --- the views ------------------------------------------------------------------------------


def merge_hours(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Hourly count rows summed per hour, oldest first."""
    hours: dict[int, dict[str, Any]] = {}
    for row in rows:
        into = hours.setdefault(int(row["hour"]), {"hour": int(row["hour"]), **{f: 0 for f in COUNT_FIELDS}})
        for f in COUNT_FIELDS:
            into[f] += row.get(f, 0)
    return [hours[h] for h in sorted(hours)]


def _period(rows: Iterable[dict[str, Any]], since: float) -> dict[str, Any]:
    out: dict[str, Any] = {f: 0 for f in COUNT_FIELDS}
    for row in rows:
        if row["hour"] + HOUR_S > since:
            for f in COUNT_FIELDS:
                out[f] += row[f]
    calls = out["hits"] + out["misses"]
    out["hit_rate"] = out["hits"] / calls if calls else None
    return out


def overview(source: StatusSource, collections: Collection[str] | None, now: float | None = None) -> dict[str, Any]:
    """Entries and bytes against the limit; hits, hit rate and time saved today (since midnight
    UTC) and in the last 7 days; one point per hour of the last 7 days for the chart."""
    now = time.time() if now is None else now
    found = source.records(collections)
    size = sum(r["size"] for r in found)
    limit = source.size_limit()
    start = int(now // HOUR_S) * HOUR_S - (7 * 24 - 1) * HOUR_S
    hourly = merge_hours(source.counts(collections, start))
    by_hour = {row["hour"]: row for row in hourly}
    chart = [{"hour": h, **{f: by_hour.get(h, {}).get(f, 0) for f in ("hits", "misses", "seconds_saved")}}
             for h in range(start, start + 7 * 24 * HOUR_S, HOUR_S)]
    # Past MAX_RECORDS entries, the views count the newest MAX_RECORDS (``capped``): `pairio ls` lists all.
    return {"source": source.kind, "entries": len(found), "capped": len(found) >= MAX_RECORDS, "bytes": size,
            "limit": limit,
            "used": None if not limit else size / limit, "functions": len({r["function"] for r in found}),
            "today": _period(hourly, now - now % DAY_S), "week": _period(hourly, now - WEEK_S),
            "chart": chart, "now": now}


def steps(source: StatusSource, collections: Collection[str] | None, by: str = "saved") -> dict[str, Any]:
    """One row per function: its entries, bytes, compute spent (seconds of its entries), hits and
    time saved (each entry's hits times its seconds), most first by ``by`` (saved, computed or size)."""
    if by not in STEP_ORDERS:
        raise InvalidInputError(f"by must be one of {', '.join(STEP_ORDERS)}, not {by!r}")
    rows: dict[str, dict[str, Any]] = {}
    for r in source.records(collections):
        row = rows.setdefault(r["function"], {"function": r["function"], "entries": 0, "size": 0, "hits": 0,
                                              "seconds_computed": 0.0, "seconds_saved": 0.0})
        row["entries"] += 1
        row["size"] += r["size"]
        row["hits"] += r["hits"]
        row["seconds_computed"] += r["seconds"]
        row["seconds_saved"] += r["hits"] * r["seconds"]
    order = STEP_ORDERS[by]
    return {"by": by, "steps": sorted(rows.values(), key=lambda row: (-row[order], row["function"]))}


def _parts(record: dict[str, Any]) -> dict[str, Any]:
    """What a key was made of, as :func:`pairio.lifecycle.misses.differences` compares it."""
    return {"code": record.get("code_parts") or {"digest": record["code"]}, "version": record.get("version", ""),
            "dependencies": record["dependencies"], "arguments": record.get("argument_hashes") or record["arguments"],
            "summary": record["arguments"]}


def recent_misses(source: StatusSource, collections: Collection[str] | None, limit: int = 50) -> dict[str, Any]:
    """The newest entries (each one a miss that computed), each with why it missed: what differs from
    the closest older entry of the same function (fewest differences, the newest on a tie)."""
    found = source.records(collections)
    by_function: dict[str, list[dict[str, Any]]] = {}
    for r in found:
        by_function.setdefault(r["function"], []).append(r)  # newest first
    out = []
    for r in found[:limit]:
        older = [o for o in by_function[r["function"]] if o["created"] < r["created"] and o["key"] != r["key"]]
        older = older[:COMPARED]
        best: tuple[dict[str, Any] | None, list[str]] = (None, [])
        for o in older:
            diff = misses.differences(_parts(o), _parts(r))
            if best[0] is None or len(diff) < len(best[1]):
                best = (o, diff)
        closest, diff = best
        if closest is None:
            reason = "first call: " + misses.NOTHING_TO_COMPARE
        else:
            reason = "missed because " + (" and ".join(diff) if diff else "nothing recorded differs")
        out.append({"collection": r["collection"], "key": r["key"], "function": r["function"],
                    "created": r["created"], "seconds": r["seconds"], "size": r["size"], "host": r["host"],
                    "reason": reason, "differences": diff,
                    "closest": None if closest is None else {"collection": closest["collection"], "key": closest["key"],
                                                             "created": closest["created"]}})
    return {"misses": out}


def entry(source: StatusSource, collections: Collection[str] | None, collection: str, key: str) -> dict[str, Any] | None:
    """One entry's record, its provenance tree and the command that fetches it; None if the viewer
    may not read ``collection`` or the entry has no record."""
    if collections is not None and collection not in collections:
        return None
    record = source.record(collection, key)
    if record is None:
        return None
    tree = source.lineage(collection, key, collections)
    if tree is not None and collections is not None:
        tree = _prune(tree, collections)
    return {"record": record, "lineage": tree, "fetch": source.fetch_command(record)}


def _prune(node: dict[str, Any], collections: Collection[str]) -> dict[str, Any]:
    """A lineage tree without the steps of collections the viewer may not read (named as hidden)."""
    inputs = []
    for child in node.get("inputs", []):
        if ("function" in child or "collection" in child) and child.get("collection") not in collections:
            inputs.append({"argument": child.get("argument"), "note": HIDDEN})
        elif "function" in child:
            inputs.append(_prune(child, collections))
        else:
            inputs.append(child)
    return {**node, "inputs": inputs}


def leases(source: StatusSource, collections: Collection[str] | None, now: float | None = None) -> dict[str, Any]:
    """The leases in flight: who computes what, since when, for how long so far."""
    now = time.time() if now is None else now
    held = [{**lease, "age": now - lease["acquired_at"]} for lease in source.leases(collections, now)]
    return {"now": now, "leases": sorted(held, key=lambda lease: lease["acquired_at"])}


def health(source: StatusSource) -> dict[str, Any]:
    """The version and whether every backend can be used now."""
    causes = source.problems()
    return {"status": "unavailable" if causes else "ok", "causes": causes, "version": __version__,
            "source": source.kind}


def as_json(view: dict[str, Any] | None) -> bytes:
    """A view as compact JSON."""
    return json.dumps(view, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
