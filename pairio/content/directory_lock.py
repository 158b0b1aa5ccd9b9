"""The locks that let content be removed while others write and read.

Writers and removers (``gc``, eviction) of one content directory meet at its
``gc.lock`` file. A writer holds it shared (``flock(LOCK_SH)``) from before it
stores a result until its pair is set; a remover holds it exclusively while it
decides what nothing references and removes it. So a remover never sees content
whose pair is about to be set: the writer is either done (the pair is seen) or
has not started (it will store the content again, as it is gone).

A reader that keeps an object open for a while (a large result being
unpickled, a file being streamed) holds a shared ``flock`` on the object
itself; a remover takes a non-blocking exclusive one first and leaves the
object if it cannot. (On POSIX an open file stays readable after it is removed;
the lock is what keeps the name for readers that have not opened it yet.)

Where ``fcntl`` does not exist (Windows) these locks are no-ops; there the
operating system refuses to remove an open file instead.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from ..errors import StoreUnavailableError
from ..files import TEMP_PREFIX, ensure_dir, lock_or_go_on
from ..write_faults import not_writable

GUARD_FILENAME = "gc.lock"
_POLL_S = 0.005


class _SharedGuard:
    """One descriptor per process holding the shared lock, counted across threads: flock is per
    open file, so the last thread out unlocks it for all. The context manager of :func:`writing`
    itself (every miss takes it: nothing is made per use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._name = str(path)
        self._mutex = threading.Lock()
        self._fd: int | None = None
        self._count = 0

    def __enter__(self) -> None:
        with self._mutex:
            if self._count == 0:
                if self._fd is None:
                    self._fd = _open(self.path)
                lock_or_go_on(self._fd, fcntl.LOCK_SH, self._name)
            self._count += 1

    def __exit__(self, *exc: object) -> None:
        with self._mutex:
            self._count -= 1
            if self._count == 0 and self._fd is not None:
                lock_or_go_on(self._fd, fcntl.LOCK_UN, self._name)

    def forget_after_fork(self) -> None:
        """In a child of fork(): the inherited descriptor shares the parent's lock (unlocking it
        would let go of the parent's), so it is left alone, and the child opens its own."""
        self._mutex, self._fd, self._count = threading.Lock(), None, 0


_guards: dict[Path, _SharedGuard] = {}
_guards_lock = threading.Lock()


def _forget_guards_after_fork() -> None:
    global _guards_lock
    _guards_lock = threading.Lock()
    for guard in _guards.values():
        guard.forget_after_fork()


os.register_at_fork(after_in_child=_forget_guards_after_fork)


def _open(path: Path) -> int:
    try:
        ensure_dir(path.parent)
        return os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as exc:
        raise (not_writable("content store", path.parent, exc, detail=f"its lock {str(path)!r}")
               or StoreUnavailableError(f"cannot open the content lock {str(path)!r}: {exc.strerror or exc}")) from exc


def writing(content_dir: Path) -> contextlib.AbstractContextManager[None]:
    """Hold the content directory shared while storing content and setting its pair."""
    if fcntl is None:
        return contextlib.nullcontext()
    guard = _guards.get(content_dir)
    if guard is None:
        with _guards_lock:
            guard = _guards.setdefault(content_dir, _SharedGuard(content_dir / GUARD_FILENAME))
    return guard


@contextlib.contextmanager
def removing(content_dir: Path, timeout: float = 60.0) -> Iterator[bool]:
    """Hold the content directory exclusively; yields False (holding nothing) if writers
    kept it for ``timeout`` seconds."""
    if fcntl is None:
        yield True
        return
    fd = _open(content_dir / GUARD_FILENAME)
    try:
        deadline = time.monotonic() + timeout
        # Polled rather than blocking: writers come and go, and a blocked exclusive
        # request must not wait behind a stream of them forever.
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    yield False
                    return
                time.sleep(_POLL_S)
        yield True
    finally:
        os.close(fd)


def mark_reading(fd: int) -> None:
    """Mark the open object ``fd`` as being read, so removers leave it (closing it ends that)."""
    if fcntl is not None:
        # Non-blocking: a remover holds its exclusive lock only for an instant before it
        # unlinks; a reader that meets it reads on, as an unlinked open file stays readable.
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)


def held_by_reader(path: str) -> bool:
    """True if a reader holds the object at ``path`` (so :func:`remove_unless_read` would leave it)."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # (closing lets go of the lock)
    return False


def remove_unless_read(path: str, trash: list[str] | None = None, temp_dir: str | None = None) -> int | None:
    """Remove the object at ``path`` unless a reader holds it; returns its size, or None if left.

    With ``trash`` (a list) and ``temp_dir``, the object is renamed into ``temp_dir`` as an
    abandoned temporary file and its new path appended to ``trash`` instead: a rename is
    cheap, while freeing a file's blocks is not, so a remover holding others up renames and
    calls :func:`empty_trash` once it lets go (a crash leaves files the next sweep of
    temporary files removes).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
        st = os.fstat(fd)
        try:
            # The object may have been stored again (a new file) since it was opened.
            if os.stat(path).st_ino != st.st_ino:
                return None
            if trash is None or temp_dir is None:
                os.unlink(path)
            else:
                target = os.path.join(temp_dir, f"{TEMP_PREFIX}{os.urandom(8).hex()}")
                try:
                    os.replace(path, target)
                except FileNotFoundError:
                    if os.path.exists(path):  # the temporary directory is missing: make it, go on
                        ensure_dir(Path(temp_dir))
                        os.replace(path, target)
                    else:
                        raise
                trash.append(target)
        except FileNotFoundError:
            return None
        return st.st_size
    finally:
        os.close(fd)


def empty_trash(trash: list[str]) -> None:
    """Remove the files :func:`remove_unless_read` renamed aside."""
    for path in trash:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    trash.clear()
