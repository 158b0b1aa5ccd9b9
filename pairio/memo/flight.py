"""Single flight: one computation per key at a time, across threads and processes.

A computer holds an OS file lock (``filelock``) on ``<database dir>/locks/<key>.lock``
while it computes and stores. Others wait on the same lock, then find the
result stored. The OS releases the lock of a process that dies, so a crashed
computer never blocks a waiter for good: the waiter takes over.

Lock files stay after use (removing one while another process may be opening it
would let two computers in at once); :func:`remove_idle_locks` (``pairio gc --locks``)
clears old ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import filelock

from ..files import ensure_dir

logger = logging.getLogger("pairio")
# How often a waiter looks at the lock: a step worth caching takes far longer than this.
_POLL_S = 0.005
_ASYNC_POLL_S = 0.01


def _lock(database_dir: Path, key: str) -> filelock.FileLock:
    directory = database_dir / "locks"
    ensure_dir(directory)
    # thread_local=False: the lock belongs to this call, which may hop threads only in async code.
    return filelock.FileLock(directory / f"{key}.lock", thread_local=False)


@contextlib.contextmanager
def claim(database_dir: Path, key: str, label: str) -> Iterator[bool]:
    """Hold the lock of ``key`` for the block; yields True if another holder had to be waited for."""
    lock = _lock(database_dir, key)
    waited = False
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        waited = True
        logger.info("waiting for %s %s being computed elsewhere", label, key[:8])
        lock.acquire(poll_interval=_POLL_S)
    try:
        yield waited
    finally:
        lock.release()


@contextlib.asynccontextmanager
async def claim_async(database_dir: Path, key: str, label: str) -> AsyncIterator[bool]:
    """:func:`claim` for coroutines: waits without blocking the event loop."""
    lock = _lock(database_dir, key)
    waited = False
    while True:
        try:
            lock.acquire(timeout=0)
            break
        except filelock.Timeout:
            if not waited:
                logger.info("waiting for %s %s being computed elsewhere", label, key[:8])
            waited = True
            await asyncio.sleep(_ASYNC_POLL_S)
    try:
        yield waited
    finally:
        lock.release()


def remove_idle_locks(database_dir: Path, min_age_s: float = 3600.0) -> list[Path]:
    """Remove lock files older than ``min_age_s`` that no one holds; returns the paths removed.

    Each is removed while this process holds it, so no computer loses its claim. A waiter
    that opened one just before may then lock a file that is gone while a newcomer locks
    a new one; as every computer looks the result up once it holds its lock, the worst
    case is a step computed twice, never a wrong result.
    """
    directory = database_dir / "locks"
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
        lock = filelock.FileLock(entry.path, thread_local=False)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            continue  # claimed right now
        try:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except FileNotFoundError:
            pass
        finally:
            lock.release()
    return removed
