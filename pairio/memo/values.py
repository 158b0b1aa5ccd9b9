"""A cached result in the content store: pickled straight in, verified on the way out.

Results are pickled (cloudpickle, protocol 5) straight into a content-store
writer, large array buffers out of band (:mod:`pairio.content.pickles`): they go to
the file without a copy in memory, and come back read straight into the arrays,
or, with ``mmap``, as read-only views of a memory map of the stored object.
An existing file named by a ``pathlib.Path`` anywhere in the result is stored
by content, and the pickle refers to it by hash and name: loading gives a ``Path`` to a
read-only copy in the store that keeps the file's name and suffix (or, with
``restore_paths``, the file written back where the function wrote it). ``pairio.load_pickle``
reads these objects too.

Every load checks the object against its hash: small objects are hashed whole,
large ones unless the store verified their file under the same signature (size,
mtime, ctime, inode); a corrupt object is quarantined and reported as
:class:`CorruptContentError`.
"""

from __future__ import annotations

import collections
import contextvars
import functools
import os
import pickle
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import Config, get_config
from ..content import content_store, named, pickles, safe_pickle
from ..content.store import ContentStore
from ..content.trust import safe_for
from ..errors import ContentNotFoundError, UnstorableResultError
from ..units import format_size

PICKLE_PROTOCOL = pickles.PROTOCOL
# The bytes of small results, by SHA-1, kept in this process: content never changes under its
# hash, so a repeated hit unpickles these instead of reading the file again.
_RECENT_MAX_OBJECT = 256 << 10
_RECENT_MAX_TOTAL = 32 << 20


# Set while a result is loaded for @cached(restore_paths=True): files go back where they were written.
_restore_paths: contextvars.ContextVar[bool] = contextvars.ContextVar("pairio_restore_paths", default=False)
# While a result is loaded, how to fetch a file of it that is not in the local store (from a
# server; see pairio.memo.remote): given its sha1, it is brought into the local store.
fetch_missing_file: contextvars.ContextVar[Callable[[str], None] | None] = contextvars.ContextVar(
    "pairio_fetch_missing_file", default=None)


def stored_file(sha1: str, name: str, original: str | None = None) -> Path:
    """Unpickling a file stored with a result: a read-only path in the content store that keeps
    the file's name and suffix or, when restoring paths, the file written back at ``original``.
    A file not in the store is fetched first where a server is configured (``fetch_missing_file``)."""
    store = content_store(get_config())
    for fetched in (False, True):
        try:
            if original is not None and _restore_paths.get():
                return named.restore_file(store, sha1, original)
            return named.named_path(store, sha1, name)
        except ContentNotFoundError:
            fetch = fetch_missing_file.get()
            if fetched or fetch is None:
                raise ContentNotFoundError(f"file {name!r} (sha1 {sha1}) of a cached result is not in the content "
                                           f"store {str(store.directory)!r}") from None
            fetch(sha1)
    raise AssertionError("unreachable")


def _stored_file_as_data(sha1: str, name: str, original: str | None = None) -> Path:
    """:func:`stored_file` for content loaded as data only: the file is named in the store, never
    written back where the writer says (``restore_paths`` is the writer's choice of path: not trusted)."""
    return stored_file(sha1, name)


safe_pickle.replace_global(__name__, "stored_file", _stored_file_as_data)


@functools.lru_cache(maxsize=1)
def _pickler_class() -> type:
    # Made at the first store: cloudpickle costs `import pairio` a fifth of its time.
    import cloudpickle

    class ResultPickler(cloudpickle.CloudPickler):
        def __init__(self, file: Any, store: ContentStore, buffer_callback: Any) -> None:
            super().__init__(file, protocol=PICKLE_PROTOCOL, buffer_callback=buffer_callback)
            self._store = store
            self.files: dict[str, int] = {}

        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, Path) and obj.is_file():
                sha1 = self._store.put_file(obj)
                self.files[sha1] = obj.stat().st_size
                # Where the function wrote it too, as it wrote it (relative or not): restore_paths=True
                # writes the file back there.
                return stored_file, (sha1, obj.name, os.fspath(obj))
            return super().reducer_override(obj)

    return ResultPickler


class StoredResult:
    """A result in the content store: its object, the files stored with it, their total bytes.
    (A plain class: a dataclass costs ``import pairio`` its generated code.)"""

    __slots__ = ("sha1", "files", "size")

    def __init__(self, sha1: str, files: tuple[str, ...], size: int) -> None:
        self.sha1, self.files, self.size = sha1, files, size

    def __repr__(self) -> str:
        return f"StoredResult({self.sha1!r}, {self.files!r}, {self.size!r})"

    def __eq__(self, other: object) -> bool:
        return (type(other) is StoredResult
                and (self.sha1, self.files, self.size) == (other.sha1, other.files, other.size))

    def __hash__(self) -> int:
        return hash((self.sha1, self.files, self.size))


# Results pickled without a ResultPickler (bytes are written in band only under OUT_OF_BAND_MIN:
# a large bytes value goes through the pickler, which writes it out of band).
_SCALARS = frozenset({int, float, bool, type(None), str, complex})


def store_result(store: ContentStore, value: Any, label: str = "result") -> str:
    """Pickle ``value`` into ``store``; returns the object's SHA-1.

    UnstorableResultError if it cannot be pickled (nothing is stored then).
    """
    return store_result_described(store, value, label).sha1


def store_result_described(store: ContentStore, value: Any, label: str = "result") -> StoredResult:
    """:func:`store_result`, also saying which files went in with it and how many bytes in all."""
    if type(value) in _SCALARS:
        # Pickled as the result pickler would (its reducer_override is never asked about these
        # types), without making one: on a miss of a small step, making it costs more than the rest.
        data = pickle.dumps(value, protocol=PICKLE_PROTOCOL)
        return StoredResult(store.put_inline(data), (), len(data))
    made = []

    def pickler(f: Any, buffer_callback: Any) -> Any:
        made.append(_pickler_class()(f, store, buffer_callback))
        return made[-1]

    try:
        # Not fsync'd: every load verifies the hash, and a result lost or truncated by a power
        # cut is a miss that is recomputed and repaired. The fsync would double a large store.
        # A small one is a row of the store's small-object table: no file to create.
        sha1, size = pickles.dump(store, value, pickler, durable=False, inline=True)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise UnstorableResultError(f"the {label} (of type {type(value).__name__}) cannot be pickled "
                                    f"into the content store: {exc}; {what_to_return(value, exc)}") from exc
    files = made[-1].files
    return StoredResult(sha1, tuple(files), size + sum(files.values()))


def not_stored_message(label: str, key: str, value: Any, exc: Exception) -> str:
    """The warning for a result ``value`` of ``label`` computed but not stored because of ``exc``:
    the store, the cause, and the bytes the result needs."""
    needed = pickled_size(value)
    size = f"; the result needs {format_size(needed)}" if needed is not None else ""
    return (f"{label}: the result of key {key[:8]} was computed but not stored: {exc}{size}. "
            "It is returned uncached (PAIRIO_STRICT_STORE=1 raises instead)")


def pickled_size(value: Any) -> int | None:
    """The bytes ``value`` takes pickled (files it names not counted), or None if it cannot be pickled."""
    import cloudpickle

    class _Counter:
        n = 0

        def write(self, data: Any) -> int:
            n = memoryview(data).nbytes
            self.n += n
            return n

    counter = _Counter()
    try:
        cloudpickle.CloudPickler(counter, protocol=PICKLE_PROTOCOL).dump(value)
    except Exception:  # noqa: BLE001 - whatever stops the pickler, the size is unknown
        return None
    return counter.n


_LAZY = ("generator", "coroutine", "async_generator", "map", "filter", "zip", "itertools", "iterator",
         "dict_keys", "dict_values", "dict_items")
_HANDLES = {"lock": "leave the lock out of the result (make it where it is used)",
            "textiowrapper": "return the file's contents, or its pathlib.Path (the file is stored with the result)",
            "buffered": "return the file's contents, or its pathlib.Path (the file is stored with the result)",
            "socket": "return the data read through it, not the socket",
            "connection": "return the data read through it, not the connection",
            "cursor": "return the rows (cursor.fetchall()), not the cursor",
            "thread": "return what the thread computed, not the thread"}


def what_to_return(value: Any, exc: BaseException) -> str:
    """What a function whose result ``value`` could not be pickled (``exc``) should return instead."""
    text = f"{type(value).__module__}.{type(value).__name__} {exc}".lower()
    if any(name in text for name in _LAZY) and not isinstance(value, (dict, list, tuple, set)):
        return "return a list (list(...)) or a tuple instead of a lazy iterator"
    for name, hint in _HANDLES.items():
        if name in text:
            return hint
    return ("return plain data (numbers, strings, lists, dicts, arrays, a pathlib.Path of a file), or give "
            "the class a __reduce__ method")


def keep_recent_bytes(sha1: str, data: bytes) -> None:
    """Keep a small object's bytes, already verified against ``sha1``, for :func:`load_result`."""
    if len(data) <= _RECENT_MAX_OBJECT:
        _recent.put(sha1, data)


def load_result(store: ContentStore, sha1: str, restore_paths: bool = False, mmap: bool = False,
                row: bytes | None = None, cfg: Config | None = None, trusted: bool = False) -> Any:
    """The result stored as object ``sha1`` (with ``mmap``, its large arrays mapped read-only).

    A ``Path`` in it to a file stored with it comes back as a read-only path in the store with
    the file's name, or with ``restore_paths`` as the path the function returned, the file
    written back there. Raises ContentNotFoundError if it (or a file it refers to) is missing,
    and CorruptContentError (after quarantining it) if its bytes do not match its hash. ``row``:
    the bytes of the object's row in the small-object table, if the caller read them already.

    A result from elsewhere (see :mod:`pairio.content.trust`; ``trusted`` is what the pair naming it
    says, if signed) is loaded as data only: UntrustedContentError if it would call anything else.
    """
    # The bytes of a small object, if here already: a row just read (checked, not kept), or kept
    # verified in this process.
    recent = None if row is not None or mmap else _recent.get(sha1)
    safe = safe_for(cfg or get_config(), store, sha1, trusted, row if recent is None else recent)
    if restore_paths:
        token = _restore_paths.set(True)
        try:
            return _load_result(store, sha1, mmap, row, safe, recent)
        finally:
            _restore_paths.reset(token)
    return _load_result(store, sha1, mmap, row, safe, recent)


def _load_result(store: ContentStore, sha1: str, mmap: bool, row: bytes | None, safe: pickles.Safe,
                 recent: bytes | None) -> Any:
    if row is not None:  # the bytes are here already: only checked, not kept
        return pickles.loads(store.check_row(sha1, row), safe)
    if recent is not None:
        return pickles.loads(recent, safe)
    try:
        return pickles.load(store, sha1, mmap=mmap, remember=keep_recent_bytes, safe=safe)
    except ContentNotFoundError:
        raise ContentNotFoundError(f"cached result {sha1} is not in the content store") from None


class _RecentObjects:
    """A small LRU of object bytes by SHA-1, bounded in total size; thread-safe."""

    def __init__(self, max_total: int) -> None:
        self._items: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._total = 0
        self._max_total = max_total
        self._lock = threading.Lock()

    def get(self, sha1: str) -> bytes | None:
        with self._lock:
            data = self._items.get(sha1)
            if data is not None:
                self._items.move_to_end(sha1)
            return data

    def put(self, sha1: str, data: bytes) -> None:
        with self._lock:
            if sha1 in self._items:
                return
            self._items[sha1] = data
            self._total += len(data)
            while self._total > self._max_total:
                _, old = self._items.popitem(last=False)
                self._total -= len(old)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._total = 0


_recent = _RecentObjects(_RECENT_MAX_TOTAL)
