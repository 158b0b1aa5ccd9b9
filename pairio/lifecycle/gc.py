"""``pairio gc``: content no pair refers to, pairs whose content is gone, temporary files, idle locks.

Content is referenced by a pair whose value is its SHA-1 or a ``sha1://`` /
``sha1dir://`` URI naming it (a directory's manifest refers to its files), by a
record (a cached result and the files stored inside it), and, for a result
stored before records existed, by any SHA-1 written inside its pickle. An
unreferenced object is removed only once it is older than the grace period
(default a day), so content stored before its pair is set is never lost; storing
content that is already present refreshes its time. Removal happens while the
content directory is held exclusively (:func:`directory_lock.removing`): a cached call
holds it shared from storing its result to setting its pair, so a pair written
during gc always finds its content. Objects a reader holds open are left.

Only pairs that have a record (cached results) are removed when their content
is gone: other pairs may name content that lives elsewhere (on a server).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from collections.abc import Iterable
from typing import Any

from .. import files
from ..config import Config
from ..content import content_store, directory_lock, named
from ..content.directories import read_manifest
from ..content.store import ContentStore
from ..errors import ContentNotFoundError, CorruptContentError, PairioError
from ..hashing import is_sha1_hex
from ..key_lock_files import remove_idle_locks
from ..kv import local_store
from ..kv.directory import DirectoryLeases, DirectoryStore
from . import records

DEFAULT_GRACE_S = 24 * 3600.0
DEFAULT_LOCK_AGE_S = 3600.0
_SHA1_IN_BYTES = re.compile(rb"[0-9a-f]{40}")
_SCAN_CHUNK = 8 << 20


@dataclasses.dataclass
class GcReport:
    """What gc removed (or, with ``dry_run``, would remove), with counts and bytes."""

    dry_run: bool = False
    objects: int = 0
    object_bytes: int = 0
    objects_in_use: int = 0
    objects_kept_young: int = 0
    pairs: int = 0
    objects_referenced: int = 0  # old enough, but a pair or a record refers to them: kept
    temp_files: int = 0  # abandoned temporary files, and partial downloads whose object is complete
    temp_bytes: int = 0
    partials: int = 0  # of those, partial downloads whose object is complete
    partials_kept: int = 0  # partial downloads of objects still absent: kept, a later download resumes them
    partials_kept_bytes: int = 0
    locks: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def collect(cfg: Config, *, grace_s: float = DEFAULT_GRACE_S, dry_run: bool = False, content: bool = True,
            pairs: bool = True, temp: bool = True, idle_locks: bool = True,
            lock_age_s: float = DEFAULT_LOCK_AGE_S) -> GcReport:
    """Clean the store of ``cfg`` (its database directory and content directory)."""
    began = time.perf_counter()
    report = GcReport(dry_run=dry_run)
    store = content_store(cfg)
    if pairs or content:
        records.flush()
        candidates = _old_objects(store, report, grace_s) if content else []
        trash: list[str] = []
        with directory_lock.removing(store.directory) as held:
            if not held:
                raise PairioError(f"gc: writers kept the content directory {str(store.directory)!r} busy; try again")
            gone = _orphaned_pairs(cfg, store, report, dry_run) if pairs else []
            if content:
                # A dry run leaves the orphaned records in place: their objects count as the real run sees them.
                ignoring = {(e.collection, e.key) for e in gone} if dry_run else set()
                _unreferenced_content(cfg, store, report, grace_s, dry_run, candidates, trash, ignoring)
        directory_lock.empty_trash(trash)  # freeing the files' blocks, no longer holding writers up
    if temp:
        # Content being written, and the database directory's own atomic writes.
        for directory in (store.temp_dir, cfg.database_dir):
            sizes = _sizes(directory)
            for path in files.remove_stale_temp_files(directory, dry_run=dry_run):
                report.temp_files += 1
                report.temp_bytes += sizes.get(path.name, 0)
        _partials(store, report, dry_run)
    if idle_locks:
        report.locks = len(remove_idle_locks(cfg.database_dir, lock_age_s, dry_run=dry_run))
    kv = local_store(cfg)
    if isinstance(kv, DirectoryStore):  # its writers' leftovers and its old leases
        if temp:
            report.temp_files += kv.remove_temporary(dry_run=dry_run)
        if idle_locks:
            report.locks += DirectoryLeases(kv.directory).remove_expired(lock_age_s, dry_run=dry_run)
    report.seconds = time.perf_counter() - began
    return report


def _orphaned_pairs(cfg: Config, store: ContentStore, report: GcReport, dry_run: bool) -> list[records.Entry]:
    kv = local_store(cfg)
    if not kv.path.exists():
        return []
    gone = [e for e in records.entries(kv) if not all(store.has(s) for s in [e.sha1, *e.objects])]
    if dry_run:
        report.pairs = len(gone)
        return gone
    removed = records.remove(kv, gone)
    report.pairs = len(removed)
    return removed


def _partials(store: ContentStore, report: GcReport, dry_run: bool) -> None:
    """Partial downloads (``partial/``) whose object is complete go (unless a download holds them);
    the others are counted and kept, for a later download to resume."""
    try:
        found = list(os.scandir(store.partial_dir))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in found:
        try:
            size = entry.stat(follow_symlinks=False).st_size
        except FileNotFoundError:
            continue
        if is_sha1_hex(entry.name) and not store.has(entry.name):
            report.partials_kept += 1
            report.partials_kept_bytes += size
            continue
        if files.remove_if_unlocked(entry.path, dry_run):
            report.partials += 1
            report.temp_files += 1
            report.temp_bytes += size


def _sizes(directory: os.PathLike[str]) -> dict[str, int]:
    out = {}
    try:
        for entry in os.scandir(directory):
            try:
                out[entry.name] = entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                pass
    except (FileNotFoundError, NotADirectoryError):
        pass
    return out


def _old_objects(store: ContentStore, report: GcReport, grace_s: float) -> list[tuple[str, str | None]]:
    """(sha1, path, or None for a small object kept as a row) of the objects older than the grace
    period (listed before taking the lock: one stored after this is young, and not a candidate)."""
    now = time.time()
    candidates: list[tuple[str, str | None]] = []
    for info in store.iter_object_infos():
        if now - info.mtime < grace_s:
            report.objects_kept_young += 1
            continue
        candidates.append((info.sha1, info.path))
    return candidates


def _unreferenced_content(cfg: Config, store: ContentStore, report: GcReport, grace_s: float,
                          dry_run: bool, candidates: list[tuple[str, str | None]], trash: list[str],
                          ignoring: set[tuple[str, str]] | None = None) -> None:
    if not candidates:
        return
    referenced = references(cfg, store, ignoring)
    for sha1, path in candidates:
        if sha1 in referenced:
            report.objects_referenced += 1
            continue
        if path is None:
            _unreferenced_row(store, sha1, report, grace_s, dry_run)
            continue
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        if time.time() - st.st_mtime < grace_s:  # stored again meanwhile
            report.objects_kept_young += 1
            continue
        if dry_run:
            if directory_lock.held_by_reader(path):  # the real run leaves it
                report.objects_in_use += 1
                continue
            report.objects += 1
            report.object_bytes += st.st_size
            continue
        removed = named.identity(path)
        size = directory_lock.remove_unless_read(path, trash, str(store.temp_dir))
        if size is None:
            report.objects_in_use += 1
        else:
            named.remove_names(store, sha1, removed)  # hard links to the object: they would keep its bytes
            report.objects += 1
            report.object_bytes += size


def _unreferenced_row(store: ContentStore, sha1: str, report: GcReport, grace_s: float, dry_run: bool) -> None:
    older_than = time.time() - grace_s  # not one stored again meanwhile
    if dry_run:
        info = store.small.info(sha1)
        if info is not None and info[1] < older_than:
            report.objects += 1
            report.object_bytes += info[0]
        elif info is not None:
            report.objects_kept_young += 1
        return
    size = store.small.remove(sha1, older_than=older_than)
    if size is None:
        report.objects_kept_young += 1
    else:
        report.objects += 1
        report.object_bytes += size


def references(cfg: Config, store: ContentStore, ignoring: set[tuple[str, str]] | None = None) -> set[str]:
    """Every object a pair or a record of the local store refers to (but for the entries
    ``ignoring``, (collection, key): their records and pairs, as if removed)."""
    kv = local_store(cfg)
    out: set[str] = set()
    ignoring = ignoring or set()
    if not kv.path.exists():
        return out
    dirs: list[str] = []
    if not records.keeps_records(kv):  # the directory store: its pairs only
        values = (v for c in kv.collections() for k, v in kv.items(c)
                  if len(v) >= 40 and (c, k) not in ignoring)
        _values_references(store, values, set(), out, dirs)
    else:
        with kv.transaction() as connection:
            recorded = set()
            for collection, key, sha1, objects in records.results_and_objects(connection):
                if (collection, key) in ignoring:
                    continue
                recorded.add(sha1)
                out.update(json.loads(objects))
            out |= recorded
            values = (value for collection, key, value in kv.long_values(connection, 40)
                      if (collection, key) not in ignoring)
            _values_references(store, values, recorded, out, dirs)
    for sha1 in dirs:
        out.add(sha1)
        try:
            _manifest_files(read_manifest(store, sha1, f"sha1dir://{sha1}"), out)
        except PairioError:
            pass  # the manifest is gone or damaged: its files are not known, so nothing else is kept
    return out


def _values_references(store: ContentStore, values: Iterable[str], recorded: set[str], out: set[str],
                       dirs: list[str]) -> None:
    """The objects pair ``values`` refer to, into ``out`` (directories' manifests into ``dirs``)."""
    for value in values:
        if is_sha1_hex(value):
            out.add(value)
            if value not in recorded:
                out |= _sha1s_inside(store, value)
        elif value.startswith("sha1://") and is_sha1_hex(value[7:47].lower()):
            out.add(value[7:47].lower())
        elif value.startswith("sha1dir://") and is_sha1_hex(value[10:50].lower()):
            dirs.append(value[10:50].lower())


def _manifest_files(manifest: dict[str, Any], out: set[str]) -> None:
    for entry in manifest.get("files", {}).values():
        out.add(entry["sha1"])
    for sub in manifest.get("dirs", {}).values():
        _manifest_files(sub, out)


def _sha1s_inside(store: ContentStore, sha1: str) -> set[str]:
    """SHA-1s written inside object ``sha1`` if it is a pickle: the files stored inside a
    result made before records existed (any 40-hex string counts: keeping too much is safe)."""
    found: set[str] = set()
    try:
        with store.open_unchecked(sha1) as f:
            head = f.read(2)
            if head[:1] != b"\x80":  # not a pickle
                return found
            tail = head
            while chunk := f.read(_SCAN_CHUNK):
                data = tail + chunk
                found.update(m.decode() for m in _SHA1_IN_BYTES.findall(data))
                tail = data[-39:]
    except (ContentNotFoundError, CorruptContentError):
        pass
    return found
