"""Why a store cannot be written: a full disk, a read-only file system, no permission.

SQLite reports these as "disk I/O error", "database or disk is full", "attempt to write a
readonly database" or "unable to open database file", without the errno; so the cause is
read from the OSError where there is one, else from the file system itself (``statvfs``,
``access``).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .errors import StoreNotWritableError
from .units import format_size

FULL = "full"
READ_ONLY = "read-only"
NO_PERMISSION = "no permission"
_BY_ERRNO = {errno.ENOSPC: FULL, errno.EROFS: READ_ONLY, errno.EACCES: NO_PERMISSION, errno.EPERM: NO_PERMISSION}
if hasattr(errno, "EDQUOT"):
    _BY_ERRNO[errno.EDQUOT] = FULL
# A disk with less than this free is taken as full when a write failed without saying why.
_NEARLY_FULL = 1 << 20


def _existing(path: str | os.PathLike[str]) -> Path:
    """``path`` or its nearest ancestor that exists."""
    p = Path(os.path.abspath(os.fspath(path)))
    while not p.exists() and p.parent != p:
        p = p.parent
    return p


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """The bytes this user may still write on the disk holding ``path`` (None if unknown)."""
    try:
        st = os.statvfs(_existing(path))
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def cause_of(path: str | os.PathLike[str], exc: BaseException | None = None) -> str | None:
    """``"full"``, ``"read-only"`` or ``"no permission"`` if a write under ``path`` fails (or
    failed with ``exc``) for that reason; None if it is something else."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _BY_ERRNO:
            return _BY_ERRNO[seen.errno]
        seen = seen.__cause__ or seen.__context__
    where = _existing(path)
    try:
        st = os.statvfs(where)
    except (OSError, AttributeError):
        return None
    if st.f_flag & getattr(os, "ST_RDONLY", 1):
        return READ_ONLY
    directory = where if where.is_dir() else where.parent
    if not os.access(directory, os.W_OK) or (where.is_file() and not os.access(where, os.W_OK)):
        return NO_PERMISSION
    if st.f_bavail * st.f_frsize < _NEARLY_FULL:
        return FULL
    return None


def describe(path: str | os.PathLike[str], cause: str, needed: int | None = None) -> str:
    """A phrase for ``cause`` at ``path``: ``the disk is full (12 kB free, 3 MB needed)``."""
    free = free_bytes(path)
    sizes = [f"{format_size(free)} free" if free is not None else "", f"{format_size(needed)} needed"
             if needed is not None else ""]
    detail = ", ".join(filter(None, sizes))
    detail = f" ({detail})" if detail else ""
    if cause == FULL:
        return f"the disk is full{detail}"
    if cause == READ_ONLY:
        return f"its file system is read-only{detail}"
    return f"this user ({_user()}) may not write there{detail}"


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError, AttributeError):
        return "this user"


def not_writable(what: str, path: str | os.PathLike[str], exc: BaseException | None = None,
                 detail: str = "") -> StoreNotWritableError | None:
    """The error for a failed write of the store ``what`` at ``path`` if it failed for want of
    space, of a writable file system or of permission; None if for another reason."""
    cause = cause_of(path, exc)
    if cause is None:
        return None
    extra = f" ({detail})" if detail and cause == NO_PERMISSION else ""
    return StoreNotWritableError(f"{what} {os.fspath(path)!r} cannot be written: {describe(path, cause)}{extra}",
                                 store=os.fspath(path), cause=cause, free=free_bytes(path))
