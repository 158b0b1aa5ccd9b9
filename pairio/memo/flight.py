"""Single flight: one computation per key at a time, across threads and processes.

A computer holds an OS lock on its key while it computes and stores. Others wait
on the same lock, then find the result stored. The OS releases the locks of a
process that dies, so a crashed computer never blocks a waiter for good: the
waiter takes over.

On Linux the lock is a one-byte range, at an offset taken from the key, of one
shared file (``<database dir>/locks/keys.ranges``), locked as an open file
description lock (``F_OFD_SETLK``): like ``flock`` it belongs to the open file, so
threads exclude each other as processes do, each through its own descriptor of the
file, kept open between claims: a claim costs an ``fstat`` (is the file still there?)
and two ``fcntl`` (lock, unlock); no file per key is made. (Coroutines, which share a
thread, open a descriptor per claim.) Elsewhere each key has
its own lock file, ``<database dir>/locks/<key>.lock``, locked with ``flock`` (with
the ``filelock`` package where ``fcntl`` is missing, on Windows).

Per-key lock files stay after use (removing one while another process may be opening
it would let two computers in at once); ``key_lock_files.remove_idle_locks`` (``pairio gc
--locks``) clears old ones. A computer that locked a file that was removed meanwhile
notices (the path no longer leads to the file it holds) and locks the new one.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

from ..deferred import DeferredWriter
from ..files import NO_LOCKS_ERRNOS, ensure_dir
from ..key_lock_files import (
    OPEN_FLAGS,
    RANGES_FILENAME,
    USE_RANGES,
    KeyLockFile,
    range_offset,
    range_request,
    remove_holder,
    write_holder,
)

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("pairio")
_ASYNC_POLL_S = 0.01
_USE_RANGES = USE_RANGES


_ranges_paths: dict[Path, str] = {}  # database dir -> its ranges file


class _ThreadFiles(threading.local):
    """This thread's descriptors of ranges files, kept open between claims: path -> descriptor."""

    def __init__(self) -> None:
        self.fds: dict[str, int] = {}


_thread_files = _ThreadFiles()


def _forget_thread_files_after_fork() -> None:
    # The child's copies share their open file descriptions, and so their locks, with the
    # parent's: never used; closed (the parent's locks stay, held by its own descriptors).
    global _thread_files
    inherited, _thread_files = _thread_files, _ThreadFiles()
    for fd in inherited.fds.values():
        with contextlib.suppress(OSError):
            os.close(fd)


os.register_at_fork(after_in_child=_forget_thread_files_after_fork)


class _RangeLock:
    """The lock of one key: a byte of the shared ranges file, locked through a descriptor of its own
    (``kept``: through this thread's descriptor of the file, kept open between claims; threads
    exclude each other as processes do, as each has its own. Not for coroutines: two of one thread
    would share it, and so the lock)."""

    def __init__(self, path: str, key: str, kept: bool = False) -> None:
        self.path = path
        self.key = key
        self._offset = range_offset(key)
        self._fd: int | None = None
        self._kept = kept

    def _request(self, lock_type: int) -> bytes:
        return range_request(lock_type, self.key)

    def try_acquire(self) -> bool:
        return self._lock(fcntl.F_OFD_SETLK)

    def acquire(self) -> None:
        self._lock(fcntl.F_OFD_SETLKW)

    def _open(self) -> int:
        if self._kept:
            fds = _thread_files.fds
            fd = fds.get(self.path)
            if fd is not None:
                if os.fstat(fd).st_nlink:
                    return fd
                del fds[self.path]  # the file was removed: others lock the one made in its place
                os.close(fd)
        try:
            fd = os.open(self.path, OPEN_FLAGS, 0o666)
        except FileNotFoundError:
            ensure_dir(Path(self.path).parent)
            fd = os.open(self.path, OPEN_FLAGS, 0o666)
        if self._kept:
            _thread_files.fds[self.path] = fd
        return fd

    def _let_go(self, fd: int) -> None:
        """Give up ``fd`` (not locked by us now) after a failure: a kept one too."""
        if self._kept and _thread_files.fds.get(self.path) == fd:
            del _thread_files.fds[self.path]
        os.close(fd)

    def _lock(self, command: int) -> bool:
        fd = self._open()
        try:
            fcntl.fcntl(fd, command, self._request(fcntl.F_WRLCK))
        except OSError as exc:
            if command == fcntl.F_OFD_SETLK and exc.errno in (errno.EAGAIN, errno.EACCES):
                if not self._kept:
                    os.close(fd)
                return False
            self._let_go(fd)
            raise
        except BaseException:
            self._let_go(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            if self._kept:
                try:
                    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, self._request(fcntl.F_UNLCK))
                    return
                except OSError:
                    pass  # closed instead (which lets go of every lock of this thread's descriptor)
                self._let_go(fd)
                return
            os.close(fd)  # closing the descriptor releases its locks


def _lock(database_dir: Path, key: str, kept: bool = False) -> KeyLockFile | _RangeLock:
    if _USE_RANGES:
        path = _ranges_paths.get(database_dir)
        if path is None:
            if len(_ranges_paths) >= 64:
                _ranges_paths.clear()
            path = _ranges_paths[database_dir] = os.path.join(database_dir, "locks", RANGES_FILENAME)
        return _RangeLock(path, key, kept)
    return KeyLockFile(os.path.join(database_dir, "locks", f"{key}.lock"))


class _Unlisted:
    """The claims held now without a holder file (``listed=False``: a quick step's), each with the
    time it took its lock: a background thread lists those held past :data:`_LIST_AFTER_S`, so a
    step quick until now that runs long is in flight on the status page as any other."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.claims: set[_Claim] = set()

    def list_overdue(self) -> None:
        due = time.time() - _LIST_AFTER_S
        with self.lock:  # a claim let go meanwhile is not listed; one let go after takes its listing
            for held in self.claims:
                if held._holder is None and held._began <= due:
                    held._holder = write_holder(held._database_dir, held._key, held._label, held._collection,
                                                started=held._began)

    def forget(self) -> None:
        self.lock = threading.Lock()  # a forked child holds none of its parent's claims
        self.claims = set()


# An unlisted claim held this long is listed (by the thread below, every so often while one is held).
_LIST_AFTER_S = 0.01
_unlisted = _Unlisted()
_lister = DeferredWriter("pairio-flight", _unlisted.list_overdue, lambda: bool(_unlisted.claims),
                         interval_s=_LIST_AFTER_S, forget=_unlisted.forget)


class _Claim:
    """:func:`claim`'s hold of one key (a plain context manager: every miss takes one)."""

    __slots__ = ("_database_dir", "_key", "_label", "_collection", "_listed", "_lock", "_holder", "_began")

    def __init__(self, database_dir: Path, key: str, label: str, collection: str, listed: bool = True) -> None:
        self._database_dir, self._key, self._label, self._collection = database_dir, key, label, collection
        self._listed = listed
        self._lock: KeyLockFile | _RangeLock | None = None
        self._holder: tuple[str, int] | None = None
        self._began = 0.0

    def __enter__(self) -> bool:
        database_dir, key, label = self._database_dir, self._key, self._label
        lock = _lock(database_dir, key, kept=True)
        waited = False
        try:
            if not lock.try_acquire():
                waited = True
                logger.info("waiting for %s %s being computed elsewhere", label, key[:8])
                lock.acquire()
        except OSError as exc:
            _unlocked(database_dir, label, key, exc)
            return False
        if self._listed:
            try:
                self._holder = write_holder(database_dir, key, label, self._collection)
            except BaseException:
                lock.release()
                raise
        else:
            self._began = time.time()
            unlisted = _unlisted
            with unlisted.lock:
                unlisted.claims.add(self)
            _lister.notify()
        self._lock = lock
        return waited

    def __exit__(self, *exc: object) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            if not self._listed:
                unlisted = _unlisted
                with unlisted.lock:
                    unlisted.claims.discard(self)
            remove_holder(self._holder)  # before the lock goes: a file whose key is free is a dead holder's
            lock.release()


def claim(database_dir: Path, key: str, label: str, collection: str = "",
          listed: bool = True) -> contextlib.AbstractContextManager[bool]:
    """Hold the lock of ``key`` for the block, saying who holds it (see
    :func:`pairio.key_lock_files.write_holder`: ``label`` is the function, computing for ``collection``;
    with ``listed=False`` only once held past 10 ms, for a computation usually over before anyone
    could look);
    yields True if another holder had to be waited for."""
    return _Claim(database_dir, key, label, collection, listed)


_NO_LOCKS = NO_LOCKS_ERRNOS


def _unlocked(database_dir: Path, label: str, key: str, exc: OSError) -> None:
    """A lock that cannot be made: on a file system that keeps no locks, said once per directory;
    on a full disk, a read-only store or another user's lock file, the call goes on without one
    (its result cannot be stored there either). Any other OSError is raised."""
    if exc.errno in _NO_LOCKS:
        if str(database_dir) not in _said_unlocked:
            _said_unlocked.add(str(database_dir))
            logger.warning("pairio: %s cannot lock files (%s): a step may be computed by two processes at "
                           "once (a duplicate computation, never a wrong result)", database_dir / "locks",
                           exc.strerror or exc)
        return
    from ..write_faults import cause_of

    if cause_of(database_dir / "locks", exc) is None:
        raise exc
    logger.debug("%s %s computed without its lock in %s: %s", label, key[:8], database_dir, exc)


_said_unlocked: set[str] = set()


async def _sleep(seconds: float) -> None:
    import asyncio  # only coroutines need it; `import pairio` stays light

    await asyncio.sleep(seconds)


@contextlib.asynccontextmanager
async def claim_async(database_dir: Path, key: str, label: str, collection: str = "") -> AsyncIterator[bool]:
    """:func:`claim` for coroutines: waits without blocking the event loop."""
    lock = _lock(database_dir, key)
    waited = False
    try:
        while not lock.try_acquire():
            if not waited:
                logger.info("waiting for %s %s being computed elsewhere", label, key[:8])
            waited = True
            await _sleep(_ASYNC_POLL_S)
    except OSError as exc:
        _unlocked(database_dir, label, key, exc)
        yield False
        return
    holder = write_holder(database_dir, key, label, collection)
    try:
        yield waited
    finally:
        remove_holder(holder)  # before the lock goes: a file whose key is free is a dead holder's
        lock.release()
