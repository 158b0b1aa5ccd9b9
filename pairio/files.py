"""Atomic file writes, written down once: everything in pairio that writes a file uses this.

A write goes to a temporary file in the target's directory (or another directory
on the same file system), is flushed and fsync'd, and only then renamed into
place, so a reader sees the old file or the whole new one, never a part.

Temporary files are named ``.pairio-tmp-<random>`` and are locked (``flock``)
for as long as their writer lives. A writer killed mid-write leaves its
temporary file behind, unlocked; :func:`remove_stale_temp_files` removes exactly
those, and never the file of a writer that is still running.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, BinaryIO

try:
    import fcntl
except ImportError:  # Windows: stale temp files are recognised by age instead.
    fcntl = None  # type: ignore[assignment]

TEMP_PREFIX = ".pairio-tmp-"
COPY_CHUNK = 64 << 20
# Without flock, a temp file untouched for this long is taken to be abandoned.
_STALE_AGE_WITHOUT_LOCKS = 24 * 3600
# What a file system that keeps no locks answers (NFS without its lock manager, Lustre mounted
# without -o flock, some FUSE file systems).
NO_LOCKS_ERRNOS = frozenset({errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL})
_said_no_locks: set[str] = set()


def lock_or_go_on(fd: int, operation: int, what: str) -> bool:
    """``flock(fd, operation)``; False, with one warning per ``what``, where the file system keeps
    no locks: the caller goes on unlocked (a file it marks in use may then be taken for
    abandoned after a day, a step computed twice). A held lock raises BlockingIOError as before."""
    try:
        fcntl.flock(fd, operation)
    except BlockingIOError:
        raise
    except OSError as exc:
        if exc.errno not in NO_LOCKS_ERRNOS:
            raise
        if what not in _said_no_locks:
            _said_no_locks.add(what)
            import logging

            logging.getLogger("pairio").warning(
                "pairio: %s cannot be locked (%s): going on without the lock", what, exc.strerror or exc)
        return False
    return True
_CREATE_ATTEMPTS = 20
# Errors from os.link that mean "this file system or this pair of paths cannot hard link".
_NO_LINK_ERRNOS = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES}

Progress = Callable[[int], None]


def ensure_dir(directory: str | os.PathLike[str]) -> None:
    """Create ``directory`` and its parents; a clear error if a file is in the way."""
    path = os.fspath(directory)
    try:
        os.mkdir(path)
        return
    except FileExistsError:
        if os.path.isdir(path):
            return
    except FileNotFoundError:
        parent = os.path.dirname(path)
        if parent and parent != path:
            ensure_dir(parent)
            try:
                os.mkdir(path)
                return
            except FileExistsError:
                if os.path.isdir(path):
                    return
        else:
            raise
    raise NotADirectoryError(errno.ENOTDIR, "exists but is not a directory", path)


def make_private_dir(directory: str | os.PathLike[str]) -> None:
    """Create ``directory`` (if missing) readable by its owner only (0700), its parents as the
    umask says: for the default store, which holds a user's results."""
    path = os.fspath(directory)
    if os.path.isdir(path):
        return
    parent = os.path.dirname(os.path.abspath(path))
    with contextlib.suppress(OSError):  # what cannot be made is reported where it is used
        ensure_dir(parent)
        os.mkdir(path, 0o700)


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the rename is still atomic
    finally:
        os.close(fd)


class AtomicFile:
    """A locked temporary file in ``directory`` that becomes another path only on :meth:`commit`.

    ``file`` is the open binary file. Exactly one of :meth:`commit` and
    :meth:`discard` ends its life; using it as a context manager discards it
    unless it was committed.
    """

    def __init__(self, directory: str | os.PathLike[str], mode: int = 0o666) -> None:
        # Paths are kept as str: a cache miss writes one of these, and Path objects cost.
        self.directory = os.fspath(directory)
        fd, self._temp = _create_locked_temp(self.directory, mode)
        self.file: BinaryIO = os.fdopen(fd, "wb", buffering=1 << 20)
        self.done = False

    @property
    def temp_path(self) -> Path:
        """Where the file is while it is being written."""
        return Path(self._temp)

    @classmethod
    def resume(cls, path: str | os.PathLike[str], mode: int = 0o666) -> AtomicFile:
        """The file at ``path`` (created if absent) as the temporary file, locked, positioned at its end.

        For a write that may outlive its writer (a download resumed later): leave it
        with :meth:`close` to keep what was written, or :meth:`commit` / :meth:`discard` it.
        Waits while another process holds the file.
        """
        self = cls.__new__(cls)
        self._temp = os.fspath(path)
        self.directory = os.path.dirname(self._temp)
        for _ in range(_CREATE_ATTEMPTS):
            ensure_dir(self.directory)
            fd = os.open(self._temp, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), mode)
            if fcntl is not None:
                lock_or_go_on(fd, fcntl.LOCK_EX, self.directory)
            # The previous holder may have committed or removed the file while we waited.
            try:
                same = os.stat(self._temp).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.file = os.fdopen(fd, "ab", buffering=1 << 20)
                self.done = False
                return self
            os.close(fd)
        raise OSError(errno.EAGAIN, "could not open a resumable file (it keeps disappearing)", str(path))

    def close(self) -> None:
        """Flush and close the file, keeping it (and releasing its lock) for a later :meth:`resume`."""
        if self.done:
            return
        self.done = True
        with contextlib.suppress(OSError):
            self.file.close()

    def commit(self, target: str | os.PathLike[str], *, durable: bool = True, chmod: int | None = None) -> None:
        """Flush, fsync (unless ``durable`` is False) and rename the file onto ``target``."""
        target = os.fspath(target)
        try:
            self.file.flush()
            if chmod is not None:
                os.fchmod(self.file.fileno(), chmod)
            if durable:
                os.fsync(self.file.fileno())
            for attempt in range(_CREATE_ATTEMPTS):
                try:
                    os.replace(self._temp, target)
                    break
                except (FileNotFoundError, NotADirectoryError):
                    # The target's directory is missing: not made yet, or removed by another
                    # process (even between our ensure_dir and the rename); the temp file
                    # itself is locked and so never removed while we live. Make it and retry.
                    if attempt == _CREATE_ATTEMPTS - 1 or not os.path.exists(self._temp):
                        raise
                    ensure_dir(os.path.dirname(target))
            if durable:
                fsync_dir(Path(target).parent)
        except BaseException:
            self.discard()
            raise
        self.done = True
        self.file.close()  # releases the lock

    def discard(self) -> None:
        """Close and remove the temporary file (safe to call more than once)."""
        if self.done:
            return
        self.done = True
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._temp)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.discard()


def _create_locked_temp(directory: str, mode: int) -> tuple[int, str]:
    for _ in range(_CREATE_ATTEMPTS):
        path = os.path.join(directory, f"{TEMP_PREFIX}{os.urandom(8).hex()}")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
        except (FileNotFoundError, NotADirectoryError):
            # The directory is missing: not made yet, or removed by another process (gc,
            # a user's rm -r), even between an ensure_dir and the open; make it and retry.
            # (A file in its place is an error naming that file, from ensure_dir.)
            ensure_dir(directory)
            continue
        if fcntl is None or not lock_or_go_on(fd, fcntl.LOCK_EX, directory):
            return fd, path
        # A cleaner may have locked and unlinked the file in the instant between our
        # open and our flock; then the name is gone (or is another file), so retry.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd, path
        os.close(fd)
    raise OSError(errno.EAGAIN, "could not create a temporary file (directory keeps disappearing)", directory)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], text: bool = False, encoding: str = "utf-8",
                 durable: bool = True) -> Iterator[IO]:
    """Write ``path`` atomically: yields a file; the file replaces ``path`` when the block ends.

    On an exception nothing changes at ``path`` and the temporary file is removed.
    """
    path = Path(path)
    with AtomicFile(path.parent) as af:
        if text:
            wrapper = io.TextIOWrapper(af.file, encoding=encoding, newline="")
            yield wrapper
            wrapper.flush()
            wrapper.detach()
        else:
            yield af.file
        af.commit(path, durable=durable)


def write_bytes(path: str | os.PathLike[str], data: bytes, durable: bool = True) -> None:
    """Replace ``path`` atomically with ``data``."""
    with atomic_write(path, durable=durable) as f:
        f.write(data)


def write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8", durable: bool = True) -> None:
    """Replace ``path`` atomically with ``text``."""
    with atomic_write(path, text=True, encoding=encoding, durable=durable) as f:
        f.write(text)


def copy_file(src: str | os.PathLike[str], dest: str | os.PathLike[str], *, link: bool = False,
              durable: bool = True, progress: Progress | None = None) -> bool:
    """Copy ``src`` to ``dest`` atomically, or hard link it when ``link`` and the file system allows.

    Returns True if ``dest`` is a hard link to ``src``.
    """
    dest = Path(dest)
    if link and try_link(src, dest):
        return True
    with AtomicFile(dest.parent) as af, open(src, "rb", buffering=0) as source:
        copy_fd(source.fileno(), af.file.fileno(), progress)
        af.commit(dest, durable=durable)
    return False


def try_link(src: str | os.PathLike[str], dest: Path) -> bool:
    """Atomically make ``dest`` a hard link to ``src``; False where hard links are impossible."""
    temp = link_temp(src, dest.parent)
    if temp is None:
        return False
    try:
        os.replace(temp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return True


def link_temp(src: str | os.PathLike[str], directory: Path) -> Path | None:
    """A new hard link to ``src``, named as a temporary file in ``directory``; None where links are impossible."""
    ensure_dir(directory)
    temp = directory / f"{TEMP_PREFIX}{os.urandom(8).hex()}"
    try:
        os.link(src, temp)
    except OSError as exc:
        if exc.errno in _NO_LINK_ERRNOS:
            return None
        raise
    return temp


def copy_fd(src_fd: int, dest_fd: int, progress: Progress | None = None) -> int:
    """Copy everything from ``src_fd`` to ``dest_fd`` in the kernel where possible; returns bytes copied."""
    done = 0
    use_kernel = hasattr(os, "copy_file_range")
    while True:
        if use_kernel:
            try:
                n = os.copy_file_range(src_fd, dest_fd, COPY_CHUNK)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
                    raise
                use_kernel = False
                continue
        else:
            chunk = os.read(src_fd, 1 << 20)
            n = len(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(dest_fd, view):]
        if not n:
            return done
        done += n
        if progress is not None:
            progress(done)


def remove_stale_temp_files(directory: str | os.PathLike[str], dry_run: bool = False) -> list[Path]:
    """Remove temporary files in ``directory`` whose writer is gone; returns the paths removed
    (with ``dry_run``, those that would be, removing nothing)."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        if entry.name.startswith(TEMP_PREFIX) and entry.is_file(follow_symlinks=False) and _remove_if_stale(entry.path, dry_run):
            removed.append(Path(entry.path))
    return removed


def remove_if_unlocked(path: str, dry_run: bool = False) -> bool:
    """Remove the file at ``path`` unless a live writer holds its lock; True if removed (or, with
    ``dry_run``, if it would be)."""
    return _remove_if_stale(path, dry_run)


def _remove_if_stale(path: str, dry_run: bool = False) -> bool:
    if fcntl is None:
        try:
            if time.time() - os.stat(path).st_mtime < _STALE_AGE_WITHOUT_LOCKS:
                return False
            if not dry_run:
                os.unlink(path)
            return True
        except FileNotFoundError:
            return False
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its writer is alive
        # Hard links made by try_link share the prefix but never carry a lock; they
        # live for an instant, so leave any that are younger than a minute.
        st = os.fstat(fd)
        if st.st_nlink > 1 and time.time() - st.st_ctime < 60:
            return False
        try:
            if os.stat(path).st_ino != st.st_ino:
                return False
            if not dry_run:
                os.unlink(path)
        except FileNotFoundError:
            return False
        return True
    finally:
        os.close(fd)
