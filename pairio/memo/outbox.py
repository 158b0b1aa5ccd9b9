"""Results made during an outage reach the server: the outbox, and ``pairio sync``.

A cached result stored locally because the server was unreachable or refused it is
written to the outbox (``<database_path>/outbox/``, one small JSON file per key,
written then renamed into place and fsync'd: it survives the process's exit and a
crash). When the server answers again, a later call of this process starts a
background thread (:func:`kick`) that uploads each waiting result, content first and
then its pairs, and removes its file; a call never waits for it. :func:`sync`
(``pairio sync``) does the same at once, and also pushes every recorded local entry the
server lacks. A pair the server holds with another value is never overwritten (a
teammate's result for the same key): it is counted as ``differing`` and left.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import files
from ..config import Config, get_config
from ..content import content_store
from ..errors import BadRequestError, PermissionDeniedError, RemoteError
from ..hashing import is_sha1_hex
from ..kv import local_store, remote_store
from ..result_keys import side_keys

if TYPE_CHECKING:
    from ..content.remote import RemoteContent
    from ..kv.remote import RemoteStore

logger = logging.getLogger("pairio")

OUTBOX_DIR = "outbox"
_SUFFIX = ".json"


@dataclasses.dataclass(frozen=True)
class Waiting:
    """A result waiting in the outbox: its pairs (key -> sha1 and its seconds) and its objects,
    files first."""

    collection: str
    key: str
    pairs: dict[str, str]
    sha1s: tuple[str, ...]
    created: float
    path: Path | None = None
    records: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # key -> its record for the server


@dataclasses.dataclass
class SyncReport:
    """What :func:`sync` did (or, with ``dry_run``, would do)."""

    dry_run: bool = False
    entries: int = 0  # local entries looked at (the outbox's and the recorded ones)
    pushed: int = 0  # entries the server lacked, now sent (with dry_run: to send)
    on_server: int = 0  # entries the server has already
    differing: int = 0  # keys the server holds with another value (left as they are)
    missing_content: int = 0  # entries whose content is no longer in the local store
    refused: int = 0  # entries the server refuses (an object over the channel's size limit, a collection
    # the channel may not use)
    objects: int = 0  # objects the server lacked, uploaded (with dry_run: to upload)
    bytes: int = 0  # their bytes
    collections_refused: list[str] = dataclasses.field(default_factory=list)  # the channel may not use these
    outbox_left: int = 0  # results still waiting in the outbox
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def outbox_dir(cfg: Config) -> Path:
    """The outbox of the local store of ``cfg``."""
    return cfg.database_dir / OUTBOX_DIR


def _name(collection: str, key: str) -> str:
    return hashlib.sha1(f"{collection}\0{key}".encode()).hexdigest() + _SUFFIX


def add(cfg: Config, collection: str, pairs: dict[str, str | None], sha1s: Iterable[str],
        records: dict[str, dict[str, Any]] | None = None) -> None:
    """Remember durably that ``pairs`` (a result's, stored locally) and the objects ``sha1s`` should
    be on the server, with ``records`` (key -> its record for the server). Logged, not raised, if
    the outbox cannot be written (the result is kept)."""
    key = next(iter(pairs))
    entry = {"collection": collection, "key": key, "pairs": {k: v for k, v in pairs.items() if v is not None},
             "sha1s": list(dict.fromkeys(sha1s)), "created": time.time()}
    if records:
        entry["records"] = records
    directory = outbox_dir(cfg)
    try:
        files.ensure_dir(directory)
        files.write_text(directory / _name(collection, key), json.dumps(entry), durable=True)
    except OSError as exc:
        logger.warning("pairio: the result of key %s is stored locally, but the outbox %s cannot remember to "
                       "upload it (%s): `pairio sync` pushes it later", key[:8], directory, exc)
        return
    with _lock:
        _pending[directory] = True


def waiting(cfg: Config) -> list[Waiting]:
    """The results in the outbox of ``cfg``'s local store, oldest first (unreadable files skipped)."""
    directory = outbox_dir(cfg)
    found = []
    try:
        names = [e.name for e in os.scandir(directory) if e.name.endswith(_SUFFIX)]
    except OSError:
        return []
    for name in names:
        path = directory / name
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            entry = Waiting(collection=str(raw["collection"]), key=str(raw["key"]),
                            pairs={str(k): str(v) for k, v in raw["pairs"].items()},
                            sha1s=tuple(str(s) for s in raw["sha1s"]), created=float(raw["created"]), path=path,
                            records={str(k): dict(v) for k, v in (raw.get("records") or {}).items()})
        except FileNotFoundError:
            continue  # sent by another process meanwhile
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.warning("pairio: outbox file %s cannot be read (%s); left as it is", path, exc)
            continue
        found.append(entry)
    found.sort(key=lambda e: e.created)
    return found


def _done(entry: Waiting) -> None:
    if entry.path is not None:
        try:
            entry.path.unlink()
        except FileNotFoundError:
            pass


# --- pushing ---------------------------------------------------------------------------


def push(cfg: Config, entries: list[Waiting], *, dry_run: bool = False,
         progress: Callable[[int], None] | None = None, report: SyncReport | None = None) -> SyncReport:
    """Send ``entries`` to the server of ``cfg``: for each collection, one request asks which keys it
    has; then what it lacks of their objects is uploaded (files first, each object before the pairs
    naming it), then their pairs. An outbox entry is removed once sent, or once the server has its key
    or the local store no longer holds its pair. RemoteError if the server fails (what was sent stays sent)."""
    report = report or SyncReport(dry_run=dry_run)
    server: RemoteStore = remote_store(cfg)  # type: ignore[assignment]
    local = local_store(cfg)
    store = content_store(cfg)
    content = _remote_content(cfg)
    by_collection: dict[str, list[Waiting]] = {}
    for entry in entries:
        by_collection.setdefault(entry.collection, []).append(entry)
    uploaded_bytes = 0
    for collection, group in by_collection.items():
        keys = list(dict.fromkeys(entry.key for entry in group))
        here = local.get_many(collection, keys)
        try:
            there = server.get_many(collection, keys)
        except (PermissionDeniedError, BadRequestError) as exc:  # a collection the channel may not use
            logger.warning("pairio sync: collection %r skipped: %s", collection, exc)
            report.entries += len(group)
            report.refused += len(group)
            report.collections_refused.append(collection)
            continue
        sending: list[Waiting] = []
        for entry in group:
            report.entries += 1
            value = entry.pairs.get(entry.key)
            if here.get(entry.key) != value:  # forgotten or recomputed since: not this result's to send
                _done(entry)
                continue
            if entry.key in there:
                if there[entry.key] == value:
                    report.on_server += 1
                else:
                    report.differing += 1
                if not dry_run:
                    _done(entry)
                continue
            if not all(store.has(s) for s in entry.sha1s):
                report.missing_content += 1
                continue
            sending.append(entry)
        report.pushed += len(sending)
        sha1s = list(dict.fromkeys(s for entry in sending for s in entry.sha1s))
        lacking = content.missing(sha1s) if sha1s else []
        report.objects += len(lacking)
        if dry_run:
            report.bytes += sum(store.size(s) or 0 for s in lacking)
            continue
        refused: set[str] = set()
        for sha1 in lacking:
            try:
                size = content.upload(sha1)
            except BadRequestError as exc:  # this object (over the channel's size limit), not the channel
                logger.warning("pairio sync: the server refused object %s (%s)", sha1, exc)
                refused.add(sha1)
                continue
            report.bytes += size
            uploaded_bytes += size
            if progress is not None:
                progress(uploaded_bytes)
        if refused:
            kept = [e for e in sending if refused.isdisjoint(e.sha1s)]
            report.refused += len(sending) - len(kept)
            report.pushed -= len(sending) - len(kept)
            for entry in sending:
                if entry not in kept:
                    _done(entry)  # it never will take it: asking again each time would only repeat this
            sending = kept
        pairs: dict[str, str | None] = {}
        records: dict[str, dict[str, Any]] = {}
        for entry in sending:
            pairs.update(entry.pairs)
            records.update(entry.records)
        if pairs and records:
            server.set_many(collection, pairs, records=records)
        elif pairs:
            server.set_many(collection, pairs)
        for entry in sending:
            _done(entry)
    return report


def _remote_content(cfg: Config) -> RemoteContent:
    from ..content.remote import remote_content  # the HTTP client only where a server is used

    return remote_content(cfg)


def recorded(cfg: Config, collection: str | None = None) -> list[Waiting]:
    """The recorded cached results of the local store (of ``collection``, if given) as entries to push."""
    from ..lifecycle import calls, records

    out = []
    for entry in records.entries(local_store(cfg), collection=collection):
        if not is_sha1_hex(entry.sha1):
            continue
        out.append(Waiting(collection=entry.collection, key=entry.key, pairs={entry.key: entry.sha1},
                           sha1s=(*entry.objects, entry.sha1), created=entry.created,
                           records={entry.key: calls.shared_record(entry)}))
    return out


def sync(*, dry_run: bool = False, collection: str | None = None,
         progress: Callable[[int, int], None] | None = None, **overrides: Any) -> SyncReport:
    """Upload to the configured server what it lacks of this store's results: the outbox (results
    stored here while it was unreachable or refused them) and every recorded entry (of ``collection``,
    if given) whose key it does not hold; content first, then pairs. ``dry_run`` counts without
    sending. ``progress(done_bytes, total_bytes)`` is called as objects go. Returns the counts."""
    from ..errors import ConfigurationError

    cfg = get_config().replace(**overrides) if overrides else get_config()
    if not cfg.url:
        raise ConfigurationError("pairio sync needs a server: set PAIRIO_URL (or --url)")
    began = time.perf_counter()
    report = SyncReport(dry_run=dry_run)
    outbox = [e for e in waiting(cfg) if collection is None or e.collection == collection]
    queued = {(e.collection, e.key) for e in outbox}
    local = [e for e in recorded(cfg, collection) if (e.collection, e.key) not in queued]
    # Each recorded result goes with the seconds it took, as a cached call stores it.
    seconds = _seconds_pairs(cfg, local)
    entries = outbox + [dataclasses.replace(e, pairs={**e.pairs, **seconds.get((e.collection, e.key), {})})
                        for e in local]
    total = 0
    if progress is not None and not dry_run:
        store = content_store(cfg)
        total = sum(store.size(s) or 0 for s in {s for e in entries for s in e.sha1s})
    push(cfg, entries, dry_run=dry_run, report=report,
         progress=(lambda done: progress(done, total)) if progress is not None else None)
    report.outbox_left = len(waiting(cfg))
    if report.outbox_left == 0:
        with _lock:
            _pending[outbox_dir(cfg)] = False
    report.seconds = time.perf_counter() - began
    return report


def _seconds_pairs(cfg: Config, entries: list[Waiting]) -> dict[tuple[str, str], dict[str, str]]:
    """The pairs stored beside each entry's pair (its seconds, its argument digest and types)."""
    local = local_store(cfg)
    out: dict[tuple[str, str], dict[str, str]] = {}
    by_collection: dict[str, list[str]] = {}
    for e in entries:
        by_collection.setdefault(e.collection, []).extend(side_keys(e.key))
    for collection, skeys in by_collection.items():
        found = local.get_many(collection, skeys)
        for e in entries:
            if e.collection == collection:
                mine = {k: found[k] for k in side_keys(e.key) if k in found}
                if mine:
                    out[(collection, e.key)] = mine
    return out


# --- in the background of later calls ----------------------------------------------------

_lock = threading.Lock()
_pending: dict[Path, bool] = {}  # outbox directory -> results may be waiting there (absent: not looked yet)
_threads: dict[Path, threading.Thread] = {}
_retry_after: dict[Path, float] = {}  # after a failed upload, not tried again before this (monotonic)
RETRY_S = 30.0


def kick(cfg: Config) -> None:
    """The server of ``cfg`` answers (or is not known to be down): if results wait in the outbox,
    upload them in a background thread (one per outbox at a time; after a failure, not again for
    RETRY_S seconds). Cheap when the outbox is empty: it is looked at once per process, then only
    after this process adds to it."""
    directory = outbox_dir(cfg)
    pending = _pending.get(directory)
    if pending is False or time.monotonic() < _retry_after.get(directory, 0.0):
        return
    with _lock:
        if pending is None:
            try:
                pending = _pending[directory] = any(e.name.endswith(_SUFFIX) for e in os.scandir(directory))
            except OSError:
                pending = _pending[directory] = False
            if not pending:
                return
        thread = _threads.get(directory)
        if thread is not None and thread.is_alive():
            return
        _pending[directory] = False  # cleared before the drain: what is added during it kicks again
        thread = _threads[directory] = threading.Thread(target=_drain, args=(cfg, directory), name="pairio-outbox",
                                                        daemon=True)
        thread.start()


def _drain(cfg: Config, directory: Path) -> None:
    try:
        entries = waiting(cfg)
        if entries:
            report = push(cfg, entries)
            logger.info("pairio: %d result(s) stored during an outage uploaded to %s (%d object(s), %d bytes)",
                        report.pushed, cfg.url, report.objects, report.bytes)
    except RemoteError as exc:  # still away: the files stay for the next time it answers
        logger.debug("pairio: outbox not sent yet: %s", exc)
        with _lock:
            _pending[directory] = True
            _retry_after[directory] = time.monotonic() + RETRY_S
    except Exception:  # a background thread has no caller to raise to
        logger.exception("pairio: uploading the outbox %s failed", directory)


def wait_for_uploads(timeout: float | None = None) -> None:
    """Wait for the background uploads of the outbox started so far (at exit, a few seconds at most)."""
    for thread in list(_threads.values()):
        thread.join(timeout)


def _forget_after_fork() -> None:
    # The threads did not follow the fork; the files on disk say what still waits.
    _pending.clear()
    _threads.clear()
    _retry_after.clear()


atexit.register(wait_for_uploads, 5.0)
os.register_at_fork(after_in_child=_forget_after_fork)
