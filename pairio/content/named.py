"""A stored object under its file's name, and stored objects written back where they came from.

The content store names objects by hash only (``sha1/ab/cd/abcd...``): a tool that looks at a
file's name or suffix (``.csv``, ``.nwb``) cannot use such a path. :func:`named_path` gives
the object a name: ``<content dir>/named/ab/<sha1>/<name>``, a hard link to the object (a
read-only copy where links are impossible), so the object is never copied twice and the path
stays read-only like the object. :func:`restore_file` writes an object back to a path of the
user's, as a writable copy.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .. import files
from ..errors import ContentNotFoundError, InvalidPathError
from ..hashing import is_sha1_hex
from .store import ContentStore

NAMED_DIR = "named"


def _plain_name(name: object) -> bool:
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\0" not in name
            and (os.altsep is None or os.altsep not in name) and os.sep not in name)


def named_path(store: ContentStore, sha1: str, name: str) -> Path:
    """A read-only path named ``name`` holding the object ``sha1`` (ContentNotFoundError if absent)."""
    source = store.path(sha1)
    if source is None:
        raise ContentNotFoundError(f"file {name!r} (sha1 {sha1}) is not in the content store "
                                   f"{str(store.directory)!r}")
    directory = named_dir(store, sha1)
    target = directory / (name if _plain_name(name) else sha1)
    try:
        if os.path.samefile(target, source):
            return target  # made by an earlier hit
    except OSError:
        pass  # not made yet; or a copy, or a link to an object since replaced: made again
    try:
        files.ensure_dir(directory)
        if not files.try_link(source, target):
            with files.AtomicFile(directory) as af, open(source, "rb", buffering=0) as f:
                files.copy_fd(f.fileno(), af.file.fileno())
                af.commit(target, durable=False, chmod=0o444)
    except OSError as exc:
        raise InvalidPathError(f"cannot name object {sha1} {name!r} in {str(directory)!r}: "
                               f"{exc.strerror or exc}") from None
    return target


def named_dir(store: ContentStore, sha1: str) -> Path:
    """The directory holding the named links of object ``sha1``."""
    return store.directory / NAMED_DIR / sha1[:2] / sha1


def identity(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """``(device, inode)`` of the file at ``path``, or None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def remove_names(store: ContentStore, sha1: str, removed: tuple[int, int] | None) -> None:
    """Remove the named links to the removed object ``sha1``, whose :func:`identity` was ``removed``:
    they would keep its bytes. Only links to that very file go: the same content stored again since
    (a new file) may already have new links, which a reader may be about to open."""
    if removed is None:
        return
    directory = named_dir(store, sha1)
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
            if (st.st_dev, st.st_ino) == removed:
                os.unlink(entry.path)
        except OSError:
            continue
    with contextlib.suppress(OSError):
        os.rmdir(directory)  # only if empty


def sha1_of_named_path(path: str, content_dir: str) -> str | None:
    """The object a path made by :func:`named_path` under ``content_dir`` names, else None."""
    prefix = os.path.join(os.path.abspath(content_dir), NAMED_DIR, "")
    path = os.path.abspath(path)
    if not path.startswith(prefix):
        return None
    parts = path[len(prefix):].split(os.sep)
    if len(parts) == 3 and parts[1][:2] == parts[0] and is_sha1_hex(parts[1]):
        return parts[1]
    return None


def restore_file(store: ContentStore, sha1: str, destination: str | os.PathLike[str]) -> Path:
    """Write the object ``sha1`` to ``destination`` (a writable copy, made atomically), unless the file
    there already holds it; returns ``destination`` as a Path."""
    from ..config import get_config
    from .local import file_hash_cache

    target = Path(destination)
    source = store.path(sha1)
    if source is None:
        raise ContentNotFoundError(f"file {os.fspath(destination)!r} (sha1 {sha1}) is not in the content store "
                                   f"{str(store.directory)!r}")
    try:
        if target.is_file() and target.stat().st_size == source.stat().st_size \
                and file_hash_cache(get_config()).file_hash(target) == sha1:
            return target
        files.ensure_dir(target.parent if str(target.parent) else ".")
        files.copy_file(source, target, durable=False)
    except OSError as exc:
        raise InvalidPathError(f"cannot restore {os.fspath(destination)!r} (sha1 {sha1}): "
                               f"{exc.strerror or exc}") from None
    return target

