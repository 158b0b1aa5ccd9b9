"""The per-key lock files of single flight (``<database dir>/locks/<key>.lock``, where byte-range
locks of one shared file are not available) and the removal of idle ones (``pairio gc --locks``).

And who holds a key's lock: each process that computes keeps one small JSON file,
``<database dir>/locks/holders/<host>-<pid>.json``, listing the key locks it holds (key, collection,
function, host, pid, started), rewritten in place when it takes one (a lock let go is dropped
from the list at the next write: the file may list keys no longer held); :func:`holders` lists the
keys whose lock is held now, each with its newest claim (a dead holder's list, its locks gone with
it, is not listed; ``pairio gc --locks`` removes such files).

Below memo, lifecycle and server: the decorator's single flight locks them, gc clears old ones, the
status page lists the holders.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import struct
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .files import ensure_dir

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

# How often a waiter looks at the lock: a step worth caching takes far longer than this.
POLL_S = 0.005
OPEN_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
_ATTEMPTS = 20
# The file whose byte ranges are the keys' locks on Linux (its name does not end in .lock: gc keeps it).
RANGES_FILENAME = "keys.ranges"
USE_RANGES = sys.platform == "linux" and fcntl is not None and hasattr(fcntl, "F_OFD_SETLK")
HOLDERS_DIRNAME = "holders"
_HOLDER_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
_MAX_HOLDER_BYTES = 1 << 20


def locks_dir(database_dir: Path) -> Path:
    """The directory of the keys' lock files under ``database_dir``."""
    return database_dir / "locks"


def range_offset(key: str) -> int:
    """The byte of the ranges file that is ``key``'s lock: 60 bits of the key (distinct keys share a
    byte with odds of 2**-60)."""
    return int(key[:15], 16)


def range_request(lock_type: int, key: str) -> bytes:
    """A ``struct flock`` for ``key``'s byte: l_type, l_whence, l_start, l_len, l_pid (0 for an OFD lock)."""
    return struct.pack("hhqqi4x", lock_type, os.SEEK_SET, range_offset(key), 1, 0)


# --- who holds a key's lock -------------------------------------------------------------------


def _host() -> str:
    """This machine's name, as ``socket.gethostname()`` gives it (without importing socket on POSIX)."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket

    return socket.gethostname()


class _Holders:
    """This process's holder file in each database directory (``holders/<host>-<pid>.json``, kept
    open) and the key locks it holds there. A claim rewrites it in place with one ``pwrite``, padded
    with spaces to its longest length so far (JSON ignores them; shrinking a file costs more than
    the write); a release writes nothing, as a key listed but not locked is not in flight."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.pid = os.getpid()
        self.host = _host()
        self.files: dict[str, list] = {}  # database dir -> [descriptor, length written]
        self.held: dict[str, dict[int, str]] = {}  # database dir -> token -> its info, as JSON
        self.next = 0
        self.host_json = json.dumps(self.host)

    def _file(self, directory: str) -> list:
        found = self.files.get(directory)
        if found is not None and os.fstat(found[0]).st_nlink:
            return found
        if found is not None:  # removed meanwhile: a new file
            os.close(found[0])
        path = os.path.join(directory, "locks", HOLDERS_DIRNAME, f"{self.host}-{self.pid}.json")
        try:
            fd = os.open(path, _HOLDER_FLAGS, 0o666)
        except FileNotFoundError:
            ensure_dir(Path(path).parent)
            fd = os.open(path, _HOLDER_FLAGS, 0o666)
        found = self.files[directory] = [fd, 0]
        return found

    def _write(self, directory: str) -> None:
        data = ("[" + ", ".join(self.held.get(directory, {}).values()) + "]").encode("utf-8")
        file = self._file(directory)
        os.pwrite(file[0], data.ljust(file[1]), 0)
        file[1] = max(file[1], len(data))

    def add(self, directory: str, key: str, collection: str, function: str, started: float | None = None) -> int | None:
        with self.lock:
            if os.getpid() != self.pid:  # a forked child: its parent's files are not its own
                self._reset()
            self.next += 1
            token = self.next
            # As json.dumps writes the object {key, collection, function, host, pid, started} (its
            # strings escaped by it), at a fraction of its cost: this runs on every miss.
            info = (f'{{"key": {_json_text(key)}, "collection": {_json_text(collection)}, '
                    f'"function": {_json_text(function)}, "host": {self.host_json}, "pid": {self.pid}, '
                    f'"started": {time.time() if started is None else started!r}}}')
            self.held.setdefault(directory, {})[token] = info
            try:
                self._write(directory)
            except OSError:
                del self.held[directory][token]
                return None
            return token

    def remove(self, directory: str, token: int) -> None:
        with self.lock:
            if os.getpid() == self.pid:
                self.held.get(directory, {}).pop(token, None)


_holders = _Holders()
def _json_text(text: str) -> str:
    """``text`` as a JSON string (letters and digits, as a key, without json's escaping pass)."""
    if text.isascii() and text.isalnum():
        return f'"{text}"'
    return _json_texts(text)


@functools.lru_cache(maxsize=256)
def _json_texts(text: str) -> str:
    return json.dumps(text)


def write_holder(database_dir: Path, key: str, function: str, collection: str = "",
                 started: float | None = None) -> tuple[str, int] | None:
    """Say that this process holds ``key``'s lock to compute ``function`` (for ``collection``), in its
    holder file: one small write in place (no fsync). ``started``: when it took the lock (default:
    now). Returns what :func:`remove_holder` takes, or None if it cannot be written (the computation
    goes on: only the status page's list misses it)."""
    directory = os.fspath(database_dir)
    token = _holders.add(directory, key, collection, function, started)
    return None if token is None else (directory, token)


def remove_holder(held: tuple[str, int] | None) -> None:
    """Say that the lock :func:`write_holder` said is held is let go."""
    if held is not None:
        _holders.remove(*held)


def key_is_locked(database_dir: Path, key: str) -> bool:
    """Whether some process holds ``key``'s lock now (tested without taking it where the OS allows;
    elsewhere taken and let go at once)."""
    directory = locks_dir(database_dir)
    if USE_RANGES:
        try:
            fd = os.open(directory / RANGES_FILENAME, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return False
        try:
            answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, range_request(fcntl.F_WRLCK, key))
        except OSError:
            return False
        finally:
            os.close(fd)
        return struct.unpack("hhqqi4x", answer)[0] != fcntl.F_UNLCK
    path = directory / f"{key}.lock"
    if not path.exists():
        return False
    lock = KeyLockFile(str(path))
    try:
        if lock.try_acquire():
            lock.release()
            return False
    except OSError:
        return False
    return True


def _alive(info: Mapping[str, Any]) -> bool:
    """False for a holder of this host whose process is gone; True otherwise (as far as can be told)."""
    if info.get("host") != _host() or not isinstance(info.get("pid"), int):
        return True
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return False
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def _holder_files(database_dir: Path) -> list[os.DirEntry]:
    try:
        return [e for e in os.scandir(locks_dir(database_dir) / HOLDERS_DIRNAME) if e.name.endswith(".json")]
    except FileNotFoundError:
        return []


def _read_holder(path: str) -> list[dict[str, Any]]:
    try:
        with open(path, "rb") as f:
            infos = json.loads(f.read(_MAX_HOLDER_BYTES))
    except (OSError, ValueError):
        return []  # gone, or being written
    if not isinstance(infos, list):
        return []
    return [i for i in infos if isinstance(i, dict) and isinstance(i.get("key"), str)]


def holders(database_dir: Path) -> list[dict[str, Any]]:
    """The computations in flight on the keys of ``database_dir``: one dict per key whose lock is held
    now (``key``, ``collection``, ``function``, ``host``, ``pid``, ``started``), oldest first."""
    newest: dict[str, dict[str, Any]] = {}  # a file may still list a key its process let go
    for entry in _holder_files(database_dir):
        for info in _read_holder(entry.path):
            seen = newest.get(info["key"])
            if (seen is None or (info.get("started") or 0.0) > (seen.get("started") or 0.0)) and _alive(info):
                newest[info["key"]] = info
    out = [info for key, info in newest.items() if key_is_locked(database_dir, key)]
    return sorted(out, key=lambda i: i.get("started") or 0.0)


class KeyLockFile:
    """An exclusive lock on one lock file; ``try_acquire`` never blocks, ``acquire`` waits."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._fallback: Any = None

    def try_acquire(self) -> bool:
        if fcntl is None:
            return self._fallback_acquire(timeout=0)
        return self._lock(fcntl.LOCK_EX | fcntl.LOCK_NB)

    def acquire(self) -> None:
        if fcntl is None:
            self._fallback_acquire(timeout=-1)
        else:
            self._lock(fcntl.LOCK_EX)

    def _lock(self, operation: int) -> bool:
        for _ in range(_ATTEMPTS):
            fd = self._open()
            try:
                fcntl.flock(fd, operation)
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            # remove_idle_locks may have unlinked the file between our open and our flock:
            # a lock on a file no longer at the path excludes no one, so lock the new one.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return True
            os.close(fd)
        raise OSError(f"could not lock {self.path} (the lock file keeps being removed)")

    def _open(self) -> int:
        try:
            return os.open(self.path, OPEN_FLAGS, 0o666)
        except FileNotFoundError:
            ensure_dir(Path(self.path).parent)
            return os.open(self.path, OPEN_FLAGS, 0o666)

    def _fallback_acquire(self, timeout: float) -> bool:
        import filelock

        ensure_dir(Path(self.path).parent)
        # thread_local=False: the lock belongs to this call, which may hop threads only in async code.
        self._fallback = filelock.FileLock(self.path, thread_local=False)
        try:
            self._fallback.acquire(timeout=timeout, poll_interval=POLL_S)
        except filelock.Timeout:
            return False
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor releases the flock
        elif self._fallback is not None:
            self._fallback.release()


def remove_idle_locks(database_dir: Path, min_age_s: float = 3600.0, dry_run: bool = False) -> list[Path]:
    """Remove lock files older than ``min_age_s`` that no one holds; returns the paths removed
    (with ``dry_run``, those that would be, removing nothing).

    Each is removed while this process holds it, so no computer loses its claim: one that
    opened the file just before locks it only after the removal, sees that the path no
    longer leads to it, and locks the file at the path instead.
    """
    directory = locks_dir(database_dir)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    now = time.time()
    for entry in entries:
        if not entry.name.endswith(".lock"):
            continue
        try:
            if now - entry.stat().st_mtime < min_age_s:
                continue
        except FileNotFoundError:
            continue
        lock = KeyLockFile(entry.path)
        if not lock.try_acquire():
            continue  # claimed right now
        try:
            if not dry_run:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except FileNotFoundError:
            pass
        finally:
            lock.release()
    for entry in _holder_files(database_dir):
        # A process's holder file that lists no key locked now, unchanged for ``min_age_s``: its
        # process is gone or idle (an idle one makes a new file at its next claim).
        try:
            if now - entry.stat().st_mtime < min_age_s or any(
                    _alive(i) and key_is_locked(database_dir, i["key"]) for i in _read_holder(entry.path)):
                continue
            if not dry_run:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except FileNotFoundError:
            continue
    return removed
