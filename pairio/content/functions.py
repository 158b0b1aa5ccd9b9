"""The module-level content functions (``pa.store_file``, ``pa.load_text``, ...): thin calls on a ContentStore.

Every function takes config fields as keyword overrides, like ``pa.get``. With a server:
when ``set_to`` includes it, ``store_*`` also uploads what the server lacks (content is
always kept in the local store too); when ``get_from`` includes it, ``load_*`` of content
that is not in the local store downloads it, verified, into the local store. Content is
immutable, so a local copy is always used first, whatever the order ``get_from`` names.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import stat
from pathlib import Path
from typing import Any, BinaryIO

from .. import files
from ..config import Config, get_config
from ..errors import (
    ContentFormatError,
    ContentNotFoundError,
    CorruptContentError,
    InvalidManifestError,
    InvalidPathError,
    InvalidURIError,
    PairioError,
    RemoteError,
    UntrustedContentError,
)
from ..hashing import canonical_json
from . import directories, pickles
from .local import content_store, file_hash_cache
from .store import ContentStore
from .trust import safe_for
from .uri import dir_uri, file_uri, parse_uri

PICKLE_PROTOCOL = 5


def _where(overrides: dict[str, Any]) -> tuple[Config, ContentStore]:
    cfg = get_config(**overrides) if overrides else get_config()
    return cfg, content_store(cfg)


def uploader(cfg: Config) -> Any:
    """The server's content when ``set_to`` includes the server, else None.

    Resolved before anything is stored, so a missing server configuration stores nothing.
    """
    if cfg.set_to == "local":
        return None
    from .remote import remote_content  # the HTTP client is imported only where a server is used

    return remote_content(cfg)


def shared(remote: Any, cfg: Config, uri: str) -> str:
    """``uri``, once what the server lacks of it is uploaded (when ``remote`` is not None)."""
    if remote is not None:
        try:
            remote.push(uri)
        except RemoteError as exc:
            # Say exactly what happened: the same kind of error, which also tells what is stored.
            partial = copy.copy(exc)
            partial.args = (f"{uri} is stored in the local content store ({cfg.content_path}) "
                            f"but not on the server: {exc}",)
            raise partial from exc
    return uri


def fetch(cfg: Config, store: ContentStore, sha1: str) -> bool:
    """Download the object ``sha1`` into ``store`` if it is absent and ``get_from`` includes the server.

    True if the object is in ``store`` afterwards (False: the server lacks it too, or
    there is no server to ask).
    """
    if store.has(sha1):
        return True
    if cfg.get_from == "local":
        return False
    from .remote import remote_content

    try:
        remote_content(cfg).download(sha1)
    except ContentNotFoundError:
        return False
    return True


def _absent(cfg: Config, store: ContentStore, uri: str) -> ContentNotFoundError:
    server = f" nor on the server {cfg.url}" if cfg.get_from != "local" and cfg.url else ""
    return ContentNotFoundError(f"{uri!r} is not in the content store {str(store.directory)!r}{server}")


# --- storing -------------------------------------------------------------------------


def store_file(path: str | os.PathLike[str], name: str | None = None, link: bool = False,
               **overrides: Any) -> str:
    """Store the file at ``path``; returns ``sha1://<hash>/<name>`` (name defaults to the file's).

    With ``link`` the store hard links the file instead of copying it where it
    can; the file must then never be modified in place.
    """
    cfg, store = _where(overrides)
    remote = uploader(cfg)
    sha1 = store.put_file(path, link=link)
    return shared(remote, cfg, file_uri(sha1, Path(path).name if name is None else name))


def store_bytes(data: bytes | bytearray | memoryview, name: str | None = "file.dat", **overrides: Any) -> str:
    """Store ``data``; returns its ``sha1://`` URI."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"store_bytes takes bytes, got {type(data).__name__}")
    return _put_bytes(data, name, overrides)


def _put_bytes(data: bytes | bytearray | memoryview, name: str | None, overrides: dict[str, Any]) -> str:
    cfg, store = _where(overrides)
    remote = uploader(cfg)
    return shared(remote, cfg, file_uri(store.put_bytes(data), name))


def store_text(text: str, name: str | None = "file.txt", encoding: str = "utf-8", **overrides: Any) -> str:
    """Store ``text`` (encoded as ``encoding``); returns its ``sha1://`` URI."""
    if not isinstance(text, str):
        raise TypeError(f"store_text takes a str, got {type(text).__name__}")
    return _put_bytes(text.encode(encoding), name, overrides)


def store_object(obj: Any, name: str | None = "file.json", **overrides: Any) -> str:
    """Store ``obj`` as canonical JSON (equal objects, equal URIs); returns its ``sha1://`` URI."""
    try:
        text = canonical_json(obj)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"store_object: the object is not JSON-serialisable ({exc}); "
                        "use store_pickle for arbitrary objects") from None
    return _put_bytes(text.encode("utf-8"), name, overrides)


def store_pickle(obj: Any, name: str | None = "file.pkl", **overrides: Any) -> str:
    """Store ``obj`` pickled with cloudpickle (protocol 5), streamed into the store, large array
    buffers out of band (see :mod:`pairio.content.pickles`); returns its URI."""
    cfg, store = _where(overrides)
    remote = uploader(cfg)
    sha1, _ = pickles.dump(store, obj)
    return shared(remote, cfg, file_uri(sha1, name))


def store_dir(path: str | os.PathLike[str], name: str | None = None, link: bool = False,
              **overrides: Any) -> str:
    """Store a directory tree; returns ``sha1dir://<manifest hash>.<name>`` (name defaults to the dir's)."""
    cfg, store = _where(overrides)
    remote = uploader(cfg)
    sha1, _ = directories.put_dir(store, path, link=link)
    # The whole directory travels: one request asks which of its files the server lacks.
    return shared(remote, cfg, dir_uri(sha1, Path(os.path.abspath(path)).name if name is None else name))


def get_file_hash(path: str | os.PathLike[str], **overrides: Any) -> str:
    """The SHA-1 hex of a file, from the hash cache when the file is unchanged."""
    return file_hash_cache(get_config(**overrides) if overrides else get_config()).file_hash(path)


# --- loading -------------------------------------------------------------------------


def resolve_sha1(store: ContentStore, uri: str, verify: bool, cfg: Config | None = None) -> str:
    """The hash of the file ``uri`` names; ContentNotFoundError if a manifest or path is missing.

    With ``cfg``, a directory's manifest and the file that are not in ``store`` are
    downloaded when ``cfg.get_from`` includes the server.
    """
    parsed = parse_uri(uri)
    if cfg is not None:
        fetch(cfg, store, parsed.sha1)
    if not parsed.is_dir:
        return parsed.sha1
    manifest = directories.read_manifest(store, parsed.sha1, uri, verify)
    kind, entry = directories.lookup(manifest, parsed.path, uri)
    if kind == "dir":
        raise InvalidURIError(f"{uri!r} names a directory, not a file (read it with read_dir)")
    if cfg is not None:
        fetch(cfg, store, entry["sha1"])
    return entry["sha1"]


def open_uri(uri: str, verify: bool = False, **overrides: Any) -> BinaryIO:
    """The content of ``uri`` opened for binary reading, checked against its hash (see
    :meth:`ContentStore.open`; ``verify`` re-hashes it in any case).

    ContentNotFoundError if not stored, CorruptContentError (naming ``uri``) if damaged.
    """
    cfg, store = _where(overrides)
    sha1 = resolve_sha1(store, uri, verify, cfg)
    try:
        return _open_checked(store, sha1, uri, verify)
    except ContentNotFoundError:
        raise _absent(cfg, store, uri) from None


def _open_checked(store: ContentStore, sha1: str, uri: str, verify: bool) -> BinaryIO:
    try:
        return store.open(sha1, verify=verify)
    except CorruptContentError as exc:
        raise CorruptContentError(f"{uri!r}: {exc}") from None


def _undecodable(store: ContentStore, uri: str, what: str, exc: Exception) -> PairioError:
    """The error for content of ``uri`` that could not be read as ``what``: CorruptContentError if a
    full check finds it damaged (a change its file signature did not show), else ContentFormatError."""
    sha1 = resolve_sha1(store, uri, False)
    try:
        _open_checked(store, sha1, uri, True).close()
    except (CorruptContentError, ContentNotFoundError) as damaged:
        return damaged
    return ContentFormatError(f"{uri!r} is not {what} ({type(exc).__name__}: {exc})")


def load_file(uri: str, dest: str | os.PathLike[str] | None = None, link: bool = False,
              verify: bool = False, durable: bool = False, **overrides: Any) -> str | None:
    """The local path of the content ``uri`` names, or None if it is not stored.

    With ``dest`` the content is copied there atomically (hard linked with
    ``link`` where possible: the link is read-only and must stay so) and ``dest``
    is returned; a ``dest`` that is a directory receives a file named after the URI,
    and one that cannot be written is an InvalidPathError naming it.
    The copy is not fsync'd, as ``cp`` does not (the store keeps the original);
    ``durable`` fsyncs it before it takes its name.
    With ``verify`` the content is re-hashed first (CorruptContentError on a mismatch).
    """
    cfg, store = _where(overrides)
    try:
        sha1 = resolve_sha1(store, uri, verify, cfg)
        # Checked against its hash before its path is handed out, as every read is.
        _open_checked(store, sha1, uri, verify).close()
    except ContentNotFoundError:
        return None
    path = store.path(sha1)
    if path is None:
        return None
    if dest is None:
        return str(path)
    return copy_to(path, uri, dest, link=link, durable=durable)


def load_dir(uri: str, dest: str | os.PathLike[str], link: bool = False, verify: bool = False,
             durable: bool = False, progress: files.Progress | None = None, **overrides: Any) -> str:
    """Recreate the directory tree a ``sha1dir://`` URI names (or a subdirectory of it) at ``dest``.

    ``dest`` is created if needed; files already there under the same names are replaced
    (each atomically), others are left alone. Every file's content must be in the store:
    if one is missing nothing is written, and ContentNotFoundError names it. ``link``,
    ``verify`` and ``durable`` are as for :func:`load_file`. Returns ``dest``.
    """
    cfg, store = _where(overrides)
    manifest = read_dir(uri, verify, **overrides)
    target = Path(dest)
    if os.fspath(dest) == "":
        raise InvalidPathError("load_dir: dest is empty")
    if target.exists() and not target.is_dir():
        raise InvalidPathError(f"cannot recreate {uri!r} at {str(target)!r}: it is a file, not a directory")
    plan = []  # (object path, destination) for every file, checked before anything is written
    missing = []
    for relative, entry in directories.walk_files(manifest, uri):
        fetch(cfg, store, entry["sha1"])  # the whole tree travels, when get_from includes the server
        path = store.path(entry["sha1"])
        if path is None:
            missing.append("/".join(relative))
            continue
        _open_checked(store, entry["sha1"], uri, verify).close()
        size = store.size(entry["sha1"])
        if size != entry["size"]:
            raise InvalidManifestError(f"directory {uri!r}: file {'/'.join(relative)!r} is declared "
                                       f"{entry['size']} bytes, but its object {entry['sha1']} has {size}")
        plan.append((path, relative))
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ContentNotFoundError(f"{len(missing)} file(s) of directory {uri!r} are not in the content store "
                                   f"{str(store.directory)!r}: {', '.join(missing[:3])}{more}")
    # What is already at dest is looked at without following a symbolic link: a link where the tree
    # has a directory is refused (it would lead the files out of dest), a link where it has a file is
    # replaced (a rename replaces the link itself), and a directory where it has a file is refused.
    for relative_dir in directories.walk_dirs(manifest):
        _check_existing(target, relative_dir, uri, "directory")
    for _, relative in plan:
        _check_existing(target, relative, uri, "file")
    try:
        target.mkdir(parents=True, exist_ok=True)
        for relative_dir in directories.walk_dirs(manifest):
            _make_dir(target, relative_dir)
    except OSError as exc:
        raise InvalidPathError(f"cannot recreate {uri!r} at {str(target)!r}: {exc.strerror or exc}"
                               f"{f': {exc.filename!r}' if exc.filename else ''}") from None
    for path, relative in plan:
        _check_existing(target, relative, uri, "file")  # made since? Checked again just before
        destination = target.joinpath(*relative)
        try:
            files.copy_file(path, destination, link=link, durable=durable, progress=progress)
        except OSError as exc:
            raise InvalidPathError(f"cannot copy {uri!r} to {str(destination)!r}: {exc.strerror or exc}") from None
    return str(target)


def _check_existing(target: Path, relative: tuple[str, ...], uri: str, kind: str) -> None:
    """Refuse (InvalidPathError naming it) a ``relative`` path under ``target`` that cannot become
    a ``kind`` of ``uri``'s tree without leaving ``target``: a parent, or a directory, that is a
    symbolic link; a non-directory where a directory goes; a directory where a file goes."""
    for depth in range(1, len(relative) + 1):
        here = target.joinpath(*relative[:depth])
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            return  # nothing below it either
        except OSError as exc:
            raise InvalidPathError(f"cannot recreate {uri!r} at {str(target)!r}: {str(here)!r}: "
                                   f"{exc.strerror}") from None
        last = depth == len(relative)
        if stat.S_ISLNK(st.st_mode):
            if last and kind == "file":
                return  # replaced by the file, never followed
            raise InvalidPathError(f"cannot recreate {uri!r} at {str(target)!r}: {str(here)!r} is a symbolic "
                                   f"link where the directory {'/'.join(relative[:depth])!r} goes (it is not "
                                   "followed: remove it first)")
        if last and kind == "file":
            if stat.S_ISDIR(st.st_mode):
                raise InvalidPathError(f"cannot recreate {uri!r} at {str(target)!r}: {str(here)!r} is a "
                                       f"directory where the file {'/'.join(relative)!r} goes")
        elif not stat.S_ISDIR(st.st_mode):
            raise InvalidPathError(f"cannot recreate {uri!r} at {str(target)!r}: {str(here)!r} is a file "
                                   f"where the directory {'/'.join(relative[:depth])!r} goes")


def _make_dir(target: Path, relative: tuple[str, ...]) -> None:
    """Make ``target/relative`` (its parents exist), refusing one that became a symbolic link meanwhile."""
    path = target.joinpath(*relative)
    try:
        os.mkdir(path)
    except FileExistsError:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise InvalidPathError(f"{str(path)!r} is not a directory (a symbolic link or a file)") from None


def copy_to(path: Path, uri: str, dest: str | os.PathLike[str], link: bool = False, durable: bool = False,
            progress: files.Progress | None = None) -> str:
    """Copy the object at ``path`` (the content of ``uri``) to ``dest`` as :func:`load_file` does."""
    target = Path(dest)
    if target.is_dir():
        parsed = parse_uri(uri)
        name = parsed.path[-1] if parsed.path else (parsed.name or "").rsplit("/", 1)[-1]
        target = target / (name if name not in ("", ".", "..") else parsed.sha1)
    try:
        files.copy_file(path, target, link=link, durable=durable, progress=progress)
    except OSError as exc:
        # Name the path at fault (a file where a parent directory should be), not a temporary file.
        culprit = exc.filename if exc.filename and files.TEMP_PREFIX not in os.fspath(exc.filename) else None
        where = f": {os.fspath(culprit)!r}" if culprit else ""
        raise InvalidPathError(f"cannot copy {uri!r} to {str(target)!r}: "
                               f"{exc.strerror or exc}{where}") from None
    return str(target)


def load_bytes(uri: str, start: int | None = None, end: int | None = None, verify: bool = False,
               **overrides: Any) -> bytes:
    """The bytes of ``uri`` (``start``..``end``, like a slice); ContentNotFoundError if not stored."""
    for label, value in (("start", start), ("end", end)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ValueError(f"load_bytes: {label} must be a non-negative int, got {value!r}")
    with open_uri(uri, verify, **overrides) as f:
        if start:
            f.seek(start)
        if end is None:
            return f.read()
        return f.read(max(end - (start or 0), 0))


def load_text(uri: str, encoding: str = "utf-8", verify: bool = False, **overrides: Any) -> str:
    """The text of ``uri``; ContentNotFoundError if not stored, ContentFormatError if not ``encoding``."""
    data = load_bytes(uri, verify=verify, **overrides)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise _undecodable(_where(overrides)[1], uri, f"{encoding} text", exc) from None


def load_object(uri: str, verify: bool = False, **overrides: Any) -> Any:
    """The JSON value stored at ``uri``; ContentNotFoundError if not stored, ContentFormatError if not JSON."""
    with open_uri(uri, verify, **overrides) as f:
        try:
            return json.load(f)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            error = exc
    raise _undecodable(_where(overrides)[1], uri, "JSON", error) from None


def load_pickle(uri: str, verify: bool = False, mmap: bool = False, **overrides: Any) -> Any:
    """The object pickled at ``uri`` (read straight into its arrays); ContentNotFoundError if not
    stored, CorruptContentError if damaged, ContentFormatError if it is not a pickle.

    With ``mmap`` its large arrays are read-only views of a memory map of the stored object.
    A pickle that came from a server is loaded as data only (see :mod:`pairio.content.safe_pickle`):
    UntrustedContentError, naming what it would call, if it is more than data (``trust="all"`` runs it).
    """
    cfg, store = _where(overrides)
    sha1 = resolve_sha1(store, uri, verify, cfg)
    try:
        if verify:
            _open_checked(store, sha1, uri, True).close()
        # Checked against its hash as it is read (or by its file's signature); any failure to
        # unpickle is checked against the hash too, so what is left is a pickle that is intact.
        return pickles.load(store, sha1, mmap=mmap, safe=safe_for(cfg, store, sha1))
    except UntrustedContentError as exc:
        raise UntrustedContentError(
            f"{uri!r} came from a server, with no trusted writer vouching for it, and would call {exc.refused}: "
            "it was not run (pairio.add_safe_globals allows a class or function, trust='all' runs any)",
            refused=exc.refused, writer=exc.writer) from None
    except ContentNotFoundError:
        raise _absent(cfg, store, uri) from None
    except CorruptContentError as exc:
        raise CorruptContentError(f"{uri!r}: {exc}") from None
    except (pickle.UnpicklingError, EOFError) as exc:
        raise ContentFormatError(f"{uri!r} is not a pickle ({type(exc).__name__}: {exc})") from None


def read_dir(uri: str, verify: bool = False, **overrides: Any) -> dict[str, Any]:
    """The manifest of the ``sha1dir://`` URI (or of the subdirectory its path names)."""
    parsed = parse_uri(uri)
    if not parsed.is_dir:
        raise InvalidURIError(f"read_dir needs a sha1dir:// URI, got {uri!r}")
    cfg, store = _where(overrides)
    fetch(cfg, store, parsed.sha1)
    manifest = directories.read_manifest(store, parsed.sha1, uri, verify)
    kind, node = directories.lookup(manifest, parsed.path, uri)
    if kind == "file":
        raise InvalidURIError(f"{uri!r} names a file, not a directory (load it with load_file)")
    return node
