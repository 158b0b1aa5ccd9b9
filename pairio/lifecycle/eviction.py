"""Keeping the local store within ``max_size``: GreedyDual-Size-Frequency eviction.

Each entry's priority is ``L + (hits + 1) * seconds / size``: the seconds of
computing it saves per byte it takes, times how often it was used, plus the
store's inflation value ``L`` at its last use (:mod:`.records` keeps both).
Eviction removes entries lowest priority first until the recorded total is at
most ``max_size`` x 0.9 (the slack keeps the next misses from evicting again at
once), then raises ``L`` to the priority of the last entry removed. An entry
not used for a long time keeps its old, lower ``L`` and so goes before one
used recently with the same value: recency ages value, as in GDSF.

Eviction runs in the process whose miss took the total past the limit, in one
process at a time (``evict.lock``; another process finding it held waits, then
evicts only if the total is still over the limit). It holds the content directory exclusively
(:func:`directory_lock.removing`), so no writer is between storing content and setting
its pair; only entries recorded before it started are candidates, a pair is
removed only while it still names the entry's result, and an object is removed
only if no remaining entry or pair refers to it and no reader holds it open.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time

from ..config import Config
from ..content import content_store, directory_lock, named
from ..hashing import is_sha1_hex
from ..kv import local_store
from ..result_keys import side_keys
from ..units import format_size
from . import records

logger = logging.getLogger("pairio")

LOW_WATER = 0.9
LOCK_FILENAME = "evict.lock"


@dataclasses.dataclass
class EvictionReport:
    """What one eviction pass did: entries removed and their recorded bytes, objects removed
    and the bytes they freed, objects left because a reader held them, the seconds taken
    (and of those, the seconds writers of the content directory had to wait)."""

    entries: int = 0
    entry_bytes: int = 0
    objects: int = 0
    object_bytes: int = 0
    objects_in_use: int = 0
    total_before: int = 0
    total_after: int = 0
    seconds: float = 0.0
    seconds_holding_writers: float = 0.0
    # What went, lowest worth first: (function, key, bytes, seconds it saved per use, hits).
    evicted: list[tuple[str, str, int, float, int]] = dataclasses.field(default_factory=list)


def total_size(cfg: Config) -> int:
    """The bytes of the cached results recorded in the local store (0 for one that keeps no records)."""
    store = local_store(cfg)
    if not records.keeps_records(store):
        return 0
    with store.transaction() as connection:
        return int(records.total_size(connection))


def evict(cfg: Config, max_size: int | None = None, low_water: float = LOW_WATER,
          wait_s: float = 60.0) -> EvictionReport | None:
    """Evict entries until the local store's results take at most ``max_size`` x ``low_water`` bytes
    (``max_size`` defaults to the config's). None if another process kept evicting for ``wait_s``
    seconds, or writers kept the content directory busy."""
    limit = cfg.max_size if max_size is None else max_size
    if limit is None:
        return EvictionReport()
    began = time.perf_counter()
    store = local_store(cfg)
    if not records.keeps_records(store):
        records.warn_unrecorded(store)
        return EvictionReport()
    content = content_store(cfg)
    import filelock  # here: `import pairio` stays light

    lock = filelock.FileLock(cfg.database_dir / LOCK_FILENAME, thread_local=False)
    try:
        # Another process evicting now is making room already; waiting for it (rather than
        # leaving) lets this one see the total it left, and go on if it is still too much.
        lock.acquire(timeout=wait_s)
    except filelock.Timeout:
        return None
    trash: list[str] = []
    try:
        records.flush()
        started = time.time()
        with directory_lock.removing(content.directory) as held:
            holding = time.perf_counter()
            if not held:
                logger.warning("eviction skipped: writers kept %s busy", content.directory)
                return None
            report, candidates = _evict_entries(store, limit, limit * low_water, started)
            for sha1 in candidates:
                removed = named.identity(content.object_file(sha1))
                size = directory_lock.remove_unless_read(content.object_file(sha1), trash, str(content.temp_dir))
                if size is None:
                    size = content.small.remove(sha1)  # a small object kept as a row: no reader to wait for
                    if size is not None:
                        report.objects += 1
                        report.object_bytes += size
                        continue
                    if content.has(sha1):
                        report.objects_in_use += 1
                    continue
                named.remove_names(content, sha1, removed)  # hard links to the object: they would keep its bytes
                report.objects += 1
                report.object_bytes += size
            report.seconds_holding_writers = time.perf_counter() - holding
    finally:
        lock.release()
    directory_lock.empty_trash(trash)  # freeing the files' blocks, no longer holding writers up
    report.seconds = time.perf_counter() - began
    if report.entries:
        logger.info("evicted %d entries (%s recorded, %d objects removed) to keep %s within %s: %s",
                    report.entries, format_size(report.entry_bytes), report.objects, cfg.database_dir,
                    format_size(limit), _named(report.evicted))
    return report


def _evict_entries(store, limit: int, target: float, started: float) -> tuple[EvictionReport, list[str]]:

    report = EvictionReport()
    with store.transaction(immediate=True) as connection:
        total = records.total_size(connection)
        report.total_before = report.total_after = int(total)
        if total <= limit:
            return report, []
        chosen = []
        freed = 0
        cursor = records.by_priority(connection, started)
        for row in cursor:
            chosen.append(row)
            freed += row[4]
            if total - freed <= target:
                break
        cursor.close()
        if not chosen:
            return report, []
        records.delete_rows(connection, [(r[0], r[1]) for r in chosen])
        store.delete_unchanged(connection, [(r[0], r[1], r[2]) for r in chosen])
        store.delete_pairs(connection, [(r[0], k) for r in chosen for k in side_keys(r[1])])
        records.raise_inflation(connection, chosen[-1][5])
        objects = set()
        for r in chosen:
            objects.add(r[2])
            objects.update(json.loads(r[3]))
        objects -= _still_referenced(store, connection, objects)
        report.entries = len(chosen)
        report.evicted = [(r[6], r[1], int(r[4]), float(r[7]), int(r[8])) for r in chosen]
        report.entry_bytes = int(freed)
        report.total_after = int(total - freed)
    return report, sorted(objects)


def _seconds(s: float) -> str:
    return "<1 ms" if s < 1e-3 else f"{s * 1e3:.0f} ms" if s < 1 else f"{s:.3g} s"


_NAMED = 5  # entries named in the log line; the rest are counted


def _named(evicted: list[tuple[str, str, int, float, int]]) -> str:
    """The entries that went, readable: ``steps.smooth 1a2b3c4d (4.1 MB, saves 2.5 s a use, 3 hits)``."""
    named = [f"{function} {key[:8]} ({format_size(size)}, saves {_seconds(seconds)} a use, {hits} hit"
             f"{'' if hits == 1 else 's'})" for function, key, size, seconds, hits in evicted[:_NAMED]]
    more = len(evicted) - _NAMED
    return ", ".join(named) + (f" and {more} more" if more > 0 else "")


def _still_referenced(store, connection, objects: set[str]) -> set[str]:
    """Those of ``objects`` that a remaining entry or any pair refers to."""
    kept = records.referred(connection, objects)
    for _collection, _key, value in store.long_values(connection, 40):
        sha1 = value[7:47] if value.startswith("sha1://") else value
        if sha1 in objects and is_sha1_hex(sha1):
            kept.add(sha1)
    return kept
