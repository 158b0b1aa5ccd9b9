"""The per-key lock files of single flight (``<database dir>/locks/<key>.lock``, where byte-range
locks of one shared file are not available) and the removal of idle ones (``pairio gc --locks``).

Below memo and lifecycle: the decorator's single flight locks them, gc clears old ones.
"""

from __future__ import annotations

import os
import time
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


def locks_dir(database_dir: Path) -> Path:
    """The directory of the keys' lock files under ``database_dir``."""
    return database_dir / "locks"


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
    return removed
