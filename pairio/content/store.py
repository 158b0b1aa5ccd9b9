"""The local content store: immutable files named by their SHA-1.

Layout under the content directory::

    sha1/ab/cd/abcd...      objects, sharded by the first two bytes of the hash, read-only
    tmp/.pairio-tmp-...     objects being written (locked by their writer), or an instant-old
                            hard link (``link=True``) checked before it takes its name
    partial/abcd...         downloads cut short, kept to be resumed (locked while one runs)
    quarantine/abcd....N    objects found corrupt, moved aside by verify or fsck
    small-objects.sqlite3   small objects written with ``inline=True`` (cached results), as rows
                            (:mod:`.small`)

An object appears only by an atomic rename of a complete, fsync'd file (or the
commit of its row) whose hash was computed from the very bytes written, so a
reader never sees a partial object. Storing content that is already present
writes nothing.

Every read is checked against the hash (:meth:`ContentStore.open`): a small object
is hashed whole, each time (cheaper than looking anything up); an object of
``SIGNATURE_MIN_SIZE`` or more is hashed only if its file's signature (size, mtime,
ctime, inode, device) differs from the one recorded, in the hash cache, when it was
last verified or written. ``verify=True`` (and :meth:`fsck`) hash it whatever its
signature says.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from .. import files
from ..content_layout import OBJECTS_DIRNAME
from ..errors import (
    ContentNotFoundError,
    CorruptContentError,
    InvalidPathError,
    InvalidURIError,
    StoreUnavailableError,
)
from ..filesystems import shared_file_system
from ..hashing import CHUNK_SIZE, is_sha1_hex, sha1_of_stream
from ..write_faults import not_writable
from .directory_lock import mark_reading
from .hash_cache import HashCache, signature, stat_regular_file
from .small import INLINE_MAX, SmallObjects

_OBJECT_MODE = 0o444
# Objects at least this large are re-hashed on a read only when their file changed since they
# were last verified; hashing a smaller one costs less than looking its signature up.
SIGNATURE_MIN_SIZE = 256 << 10
# A write at least this large is hashed on a second thread while it is written.
_PARALLEL_HASH_MIN = 4 << 20
# A store looks for temporary files abandoned by killed writers at most this often.
_TEMP_SWEEP_INTERVAL_S = 60.0


def _check_sha1(sha1: str) -> str:
    if not is_sha1_hex(sha1):
        raise InvalidURIError(f"{sha1!r} is not a SHA-1 (40 lowercase hex digits)")
    return sha1


class ObjectWriter:
    """A binary sink that hashes what it writes; see :meth:`ContentStore.writer`.

    After the ``with`` block, ``sha1`` and ``size`` describe the stored object.
    """

    def __init__(self, temp: files.AtomicFile | None, store: ContentStore, inline_max: int = 0) -> None:
        # Without a temporary file (an inline writer) the bytes are kept in memory until they
        # pass ``inline_max``; then the file is made and they go there.
        self._temp = temp
        self._store = store
        self._hash = hashlib.sha1()
        self._inline_max = inline_max
        self._buffer = bytearray()
        self.size = 0
        self.sha1: str | None = None

    @property
    def hexdigest(self) -> str:
        """The SHA-1 hex of what was written so far."""
        return self._hash.hexdigest()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data`` to the object; returns its length."""
        view = memoryview(data)
        if view.nbytes >= _PARALLEL_HASH_MIN:
            # A large buffer (an array's data) is hashed on a second thread while this one
            # writes it: both release the GIL, so the store costs the slower of the two, not both.
            hasher = threading.Thread(target=self._hash.update, args=(view,), name="pairio-hash")
            hasher.start()
            try:
                n = self._write(view)
            finally:
                hasher.join()
        else:
            self._hash.update(view)
            n = self._write(view)
        self.size += n
        return n

    def _write(self, data: memoryview) -> int:
        if self._temp is None:
            if len(self._buffer) + data.nbytes <= self._inline_max:
                self._buffer += data
                return data.nbytes
            self._temp = self._store._temp_file()
            self._write(memoryview(self._buffer))
            self._buffer = bytearray()
        try:
            return self._temp.file.write(data)
        except OSError as exc:
            raise self._store._unavailable(exc) from exc

    def _discard(self) -> None:
        if self._temp is not None:
            self._temp.discard()

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        pass  # the object is flushed and fsync'd once, when it is committed


class ObjectInfo:
    """An object of the store: its SHA-1, bytes, mtime, and file (None for a row of the
    small-object table). (A plain class: a dataclass costs ``import pairio`` its generated code.)"""

    __slots__ = ("sha1", "size", "mtime", "path")

    def __init__(self, sha1: str, size: int, mtime: float, path: str | None) -> None:
        self.sha1, self.size, self.mtime, self.path = sha1, size, mtime, path

    def __repr__(self) -> str:
        return f"ObjectInfo({self.sha1!r}, {self.size!r}, {self.mtime!r}, {self.path!r})"

    def _fields(self) -> tuple[str, int, float, str | None]:
        return self.sha1, self.size, self.mtime, self.path

    def __eq__(self, other: object) -> bool:
        return type(other) is ObjectInfo and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())


@dataclasses.dataclass
class FsckReport:
    """What :meth:`ContentStore.fsck` found: objects checked, corrupt ones and where they went,
    and objects that could not be read (with the reason)."""

    checked: int = 0
    corrupt: list[tuple[str, Path]] = dataclasses.field(default_factory=list)
    unreadable: list[tuple[str, str]] = dataclasses.field(default_factory=list)


class ContentStore:
    """Files by SHA-1 in ``directory``; thread- and process-safe, no locks needed.

    ``hash_cache``, if given, lets :meth:`put_file` skip reading a file that is
    unchanged since it was last hashed and whose object is already present.
    """

    def __init__(self, directory: str | os.PathLike[str], hash_cache: HashCache | None = None) -> None:
        self.directory = Path(directory)
        self.objects_dir = self.directory / OBJECTS_DIRNAME
        self.temp_dir = self.directory / "tmp"
        self.quarantine_dir = self.directory / "quarantine"
        self.partial_dir = self.directory / "partial"
        # The objects that came from a server (see mark_foreign).
        self._foreign_log = os.path.join(self.directory, "foreign.log")
        self._foreign_lock = threading.Lock()
        self._foreign_state: tuple[int, int, set[str]] = (0, -1, set())
        self.hash_cache = hash_cache
        self._last_sweep = -_TEMP_SWEEP_INTERVAL_S
        self._objects_prefix = os.path.join(self.objects_dir, "")
        self.small = SmallObjects(self.directory)
        # On a network or FUSE file system small results are files too (written then renamed):
        # the small-object table is SQLite, whose locks such file systems do not keep across hosts.
        self.inline_max = INLINE_MAX if shared_file_system(self.directory) is None else 0

    def __repr__(self) -> str:
        return f"ContentStore({str(self.directory)!r})"

    # --- reading -----------------------------------------------------------------

    def object_path(self, sha1: str) -> Path:
        """Where the object ``sha1`` lives (whether or not it is present)."""
        _check_sha1(sha1)
        return self.objects_dir / sha1[0:2] / sha1[2:4] / sha1

    def object_file(self, sha1: str) -> str:
        """:meth:`object_path` as a str, without building a Path: for the hot path of a cache hit."""
        _check_sha1(sha1)
        return f"{self._objects_prefix}{sha1[0:2]}{os.sep}{sha1[2:4]}{os.sep}{sha1}"

    def has(self, sha1: str) -> bool:
        """True if the object ``sha1`` is present."""
        return self.object_path(sha1).is_file() or self.small.info(sha1) is not None

    def path(self, sha1: str) -> Path | None:
        """The local path of the object ``sha1``, or None if absent (a small object kept as a row
        is written out as a file first)."""
        p = self.object_path(sha1)
        if p.is_file():
            return p
        data = self.read_row(sha1)
        if data is None:
            return p if p.is_file() else None  # written out by another process meanwhile
        temp = self._temp_file()
        with temp:
            try:
                temp.file.write(data)
                temp.commit(p, durable=False, chmod=_OBJECT_MODE)
            except OSError as exc:
                raise self._unavailable(exc) from exc
        # A reader that found no file looks for the row, then for the file again: none misses it.
        self.small.remove(sha1)
        return p

    # --- where an object came from ---------------------------------------------------
    # A log of lines "+<sha1>" (came from a server) and "-<sha1>" (made here since), appended
    # atomically (O_APPEND, one short write): cheaper than a file per object, read incrementally.

    def mark_foreign(self, sha1: str) -> None:
        """Record that the object ``sha1`` comes from elsewhere (a server), before it is written: a
        pickle of it is loaded as data only unless a trusted writer vouches for it."""
        self._append_foreign(f"+{_check_sha1(sha1)}\n")

    def is_foreign(self, sha1: str) -> bool:
        """True if the object ``sha1`` came from a server and was not also made here since."""
        return sha1 in self._foreign_set()

    def mark_own(self, sha1: str) -> None:
        """The object ``sha1`` was made here (pickled by this user): no longer foreign."""
        if self.is_foreign(sha1):
            try:
                self._append_foreign(f"-{sha1}\n")
            except StoreUnavailableError:  # a store this user may not change: it stays foreign (data only)
                pass

    def _append_foreign(self, line: str) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        try:
            try:
                fd = os.open(self._foreign_log, flags, 0o666)
            except FileNotFoundError:
                self.directory.mkdir(parents=True, exist_ok=True)
                fd = os.open(self._foreign_log, flags, 0o666)
        except OSError as exc:
            raise self._unavailable(exc) from exc
        try:
            os.write(fd, line.encode())
        except OSError as exc:
            raise self._unavailable(exc) from exc
        finally:
            os.close(fd)

    def _foreign_set(self) -> frozenset[str] | set[str]:
        # Asked at every hit, where there is mostly no log: access() says so without an exception.
        if not os.access(self._foreign_log, os.F_OK):
            return frozenset()
        try:
            st = os.stat(self._foreign_log)
        except FileNotFoundError:
            return frozenset()
        with self._foreign_lock:
            read, inode, found = self._foreign_state
            if inode != st.st_ino or st.st_size < read:
                read, found = 0, set()  # a new log (the store was cleared): read from the start
            if st.st_size > read:
                with open(self._foreign_log, "rb") as f:
                    f.seek(read)
                    data = f.read(st.st_size - read)
                data = data[:data.rfind(b"\n") + 1]  # complete lines only: the rest is read next time
                for line in data.decode("ascii", "replace").splitlines():
                    if line[:1] == "+":
                        found.add(line[1:])
                    elif line[:1] == "-":
                        found.discard(line[1:])
                read += len(data)
            self._foreign_state = (read, st.st_ino, found)
            return found

    def read_row(self, sha1: str) -> bytes | None:
        """The bytes of the small object ``sha1`` kept as a row, checked against its hash, or None
        if there is no such row; CorruptContentError (after quarantining it) if they do not match."""
        data = self.small.get(_check_sha1(sha1))
        return data if data is None else self.check_row(sha1, data)

    def check_row(self, sha1: str, data: bytes) -> bytes:
        """``data``, read from the row ``sha1`` elsewhere (see ``EmbeddedStore.get_with_object``),
        if it matches the hash; CorruptContentError (after quarantining the row) if not."""
        actual = hashlib.sha1(data).hexdigest()
        if actual != sha1:
            raise self._corrupt(sha1, actual, row=data)
        return data

    def _has_size(self, sha1: str, size: int, files_only: bool = False) -> bool:
        """True if the object ``sha1`` is present and ``size`` bytes long.

        Asked before storing content again: a present object's time is refreshed, so
        ``pairio gc`` counts it as just written (its grace period starts again).
        """
        path = self.object_file(sha1)
        # Most objects asked about are new: os.access says so without an exception to make, which
        # costs a small miss more than the look itself.
        if not os.access(path, os.F_OK):
            return self._has_row(sha1, size, files_only)
        try:
            if os.stat(path).st_size != size:
                return False
        except FileNotFoundError:  # removed meanwhile
            return self._has_row(sha1, size, files_only)
        with contextlib.suppress(OSError):  # another user's object: its age stays
            os.utime(path)
        return True

    def _has_row(self, sha1: str, size: int, files_only: bool) -> bool:
        """:meth:`_has_size` of an object that is no file: a row of ``size`` bytes of the small-object
        table (its time refreshed), unless ``files_only``."""
        if files_only or size > INLINE_MAX:
            return False
        try:
            return self.small.touch(sha1, size)
        except StoreUnavailableError:
            return False  # the table cannot be used: the object is written as a file

    def size(self, sha1: str) -> int:
        """The size in bytes of the object ``sha1``; ContentNotFoundError if absent."""
        try:
            return self.object_path(sha1).stat().st_size
        except FileNotFoundError:
            info = self.small.info(sha1)
            if info is None:
                raise self._not_found(sha1) from None
            return info[0]

    def open(self, sha1: str, verify: bool = False) -> BinaryIO:
        """The object ``sha1`` opened for binary reading, checked against its hash first.

        It is hashed whole unless it is large and its file is unchanged since it was last
        verified (see the module's docstring); with ``verify`` it is hashed whole in any
        case. A mismatch quarantines it and raises CorruptContentError. While it is open,
        ``pairio gc`` and eviction leave the object in place (a shared ``flock``).
        """
        try:
            f = open(self.object_file(sha1), "rb")
        except FileNotFoundError:
            return self._open_row(sha1)
        mark_reading(f.fileno())
        try:
            self.check(sha1, f, full=verify)
        except BaseException:
            f.close()
            raise
        return f

    def open_unchecked(self, sha1: str) -> BinaryIO:
        """The object ``sha1`` opened for binary reading without any check: only for a reader that
        checks every byte it gets against the hash itself (a client downloading from a server)."""
        try:
            f = open(self.object_file(sha1), "rb")
        except FileNotFoundError:
            return self._open_row(sha1)
        mark_reading(f.fileno())
        return f

    def _open_row(self, sha1: str) -> BinaryIO:
        data = self.read_row(sha1)
        if data is not None:
            return io.BytesIO(data)
        try:  # written out as a file meanwhile
            f = open(self.object_file(sha1), "rb")
        except FileNotFoundError:
            raise self._not_found(sha1) from None
        mark_reading(f.fileno())
        return f

    def check(self, sha1: str, f: BinaryIO, full: bool = False) -> None:
        """Check the object file ``f`` (opened on object ``sha1``, at its start) as :meth:`open` does,
        leaving it at its start."""
        st = os.fstat(f.fileno())
        if not full and self.is_verified(sha1, st):
            return
        actual, _ = sha1_of_stream(f)
        if actual != sha1:
            raise self._corrupt(sha1, actual)
        f.seek(0)
        self.mark_verified(sha1, st, f.fileno())

    def is_verified(self, sha1: str, st: os.stat_result) -> bool:
        """True if the object file of ``sha1``, whose ``fstat`` is ``st``, was verified with this
        very signature (only objects of ``SIGNATURE_MIN_SIZE`` or more are remembered)."""
        return (st.st_size >= SIGNATURE_MIN_SIZE and self.hash_cache is not None
                and self.hash_cache.lookup(self.object_file(sha1), st) == sha1)

    def mark_verified(self, sha1: str, st: os.stat_result, fd: int | None = None, wait: bool = True) -> None:
        """Remember that the object file of ``sha1`` with signature ``st`` matches its hash.

        ``st`` is taken before the bytes were hashed; with ``fd`` (the descriptor they
        were read from) nothing is remembered if the file changed meanwhile. ``wait=False``
        writes it for other processes in the background (see :meth:`HashCache.remember`).
        """
        if st.st_size < SIGNATURE_MIN_SIZE or self.hash_cache is None:
            return
        if fd is not None and signature(os.fstat(fd)) != signature(st):
            return
        self.hash_cache.remember(self.object_file(sha1), st, sha1, wait=wait)

    def verify(self, sha1: str) -> bool:
        """True if the object ``sha1`` still matches its hash; a corrupt one is quarantined."""
        try:
            with self.open(sha1, verify=True):
                return True
        except CorruptContentError:
            return False

    def _not_found(self, sha1: str) -> ContentNotFoundError:
        return ContentNotFoundError(f"object {sha1} is not in the content store {str(self.directory)!r}")

    def _corrupt(self, sha1: str, actual: str, row: bytes | None = None) -> CorruptContentError:
        moved = self.quarantine(sha1) if row is None else self._quarantine_row(sha1, row)
        where = f"; moved to {str(moved)!r}" if moved else ""
        if moved is not None and moved.parent != self.quarantine_dir:
            where = "; left in place (the store cannot be written)"
        return CorruptContentError(f"object {sha1} in {str(self.directory)!r} is corrupt "
                                   f"(its bytes hash to {actual}){where}")

    # --- writing -----------------------------------------------------------------

    @contextlib.contextmanager
    def writer(self, durable: bool = True, expect: str | None = None,
               inline: bool = False) -> Iterator[ObjectWriter]:
        """Yield a binary sink; when the block ends its bytes are stored and ``.sha1`` is set.

        On an exception the partial object is removed and nothing is stored. With
        ``durable=False`` the object is not fsync'd: a power cut may leave it truncated,
        which suits content that is verified when read and can be made again.
        With ``expect`` (a SHA-1) bytes that hash to anything else are not stored:
        CorruptContentError when the block ends. With ``inline`` an object of at most
        ``INLINE_MAX`` bytes becomes a row of the small-object table, not a file (except on a
        network or FUSE file system).
        """
        if expect is not None:
            _check_sha1(expect)
        if inline and self.inline_max:
            w = ObjectWriter(None, self, self.inline_max)
        else:
            w = ObjectWriter(self._temp_file(), self)
        try:
            yield w
            if w._temp is None:
                self._commit_inline(w, expect)
            else:
                self._commit(w, w._temp, durable, expect)
        finally:
            w._discard()

    def _temp_file(self) -> files.AtomicFile:
        try:
            self._sweep_temp_files()
            return files.AtomicFile(self.temp_dir, mode=0o666)
        except OSError as exc:
            raise self._unavailable(exc) from exc

    @contextlib.contextmanager
    def partial_writer(self, sha1: str, durable: bool = True) -> Iterator[ObjectWriter | None]:
        """Yield a sink continuing an earlier, interrupted write of the object ``sha1``.

        ``w.size`` bytes are already there (hashed again on entry); append the rest. When
        the block ends the bytes are checked against ``sha1`` and the object stored
        (CorruptContentError and nothing kept if they do not match). On an exception the
        bytes written so far are kept, in ``partial/``, for the next call to continue;
        they are never visible as an object. Two processes never write the same partial
        object at once: the second waits for the first, and is given None (write nothing)
        if the object is present by then.
        """
        _check_sha1(sha1)
        try:
            temp = files.AtomicFile.resume(self.partial_dir / sha1, mode=0o666)
        except OSError as exc:
            raise self._unavailable(exc) from exc
        if self.has(sha1):
            temp.discard()
            yield None
            return
        try:
            w = ObjectWriter(temp, self)
            try:
                with open(temp.temp_path, "rb", buffering=0) as f:
                    while chunk := f.read(CHUNK_SIZE):
                        w._hash.update(chunk)
                        w.size += len(chunk)
            except OSError as exc:
                raise self._unavailable(exc) from exc
            yield w
        except BaseException:
            temp.close()
            raise
        try:
            self._commit(w, temp, durable, sha1)
        finally:
            temp.discard()

    def _expected(self, w: ObjectWriter, expect: str | None) -> str:
        sha1 = w._hash.hexdigest()
        if expect is not None and sha1 != expect:
            w._discard()
            raise CorruptContentError(f"the bytes received ({w.size}) hash to {sha1}, not to {expect}: "
                                      "nothing was stored")
        return sha1

    def _commit_inline(self, w: ObjectWriter, expect: str | None) -> None:
        sha1 = self._expected(w, expect)
        if not self._has_size(sha1, w.size, files_only=True):
            try:
                self.small.put(sha1, bytes(w._buffer))
            except StoreUnavailableError:
                # The table cannot be written (locked for too long, damaged): a file then.
                temp = w._temp = self._temp_file()
                try:
                    temp.file.write(w._buffer)
                except OSError as exc:
                    raise self._unavailable(exc) from exc
                self._commit(w, temp, False, expect)
                return
        w.sha1 = sha1

    def _commit(self, w: ObjectWriter, temp: files.AtomicFile, durable: bool, expect: str | None) -> None:
        sha1 = self._expected(w, expect)
        target = self.object_file(sha1)
        # Identical content already stored is kept; a copy of another size (truncated by a
        # crash, or damaged) is replaced by this one.
        if not self._has_size(sha1, w.size):
            try:
                temp.commit(target, durable=durable, chmod=_OBJECT_MODE)
            except OSError as exc:
                raise self._unavailable(exc) from exc
            if w.size >= SIGNATURE_MIN_SIZE:
                # Hashed from the very bytes written: verified as it takes its name
                # (the rename sets its ctime, so its signature is taken after).
                with contextlib.suppress(OSError):
                    self.mark_verified(sha1, os.stat(target), wait=False)
        w.sha1 = sha1

    def partial_size(self, sha1: str) -> int:
        """The bytes of the object ``sha1`` kept from an interrupted download (0 if none)."""
        try:
            return (self.partial_dir / _check_sha1(sha1)).stat().st_size
        except FileNotFoundError:
            return 0

    def _unavailable(self, exc: OSError) -> StoreUnavailableError:
        return (not_writable("content store", self.directory, exc)
                or StoreUnavailableError(f"content store {str(self.directory)!r} cannot be written: "
                                         f"{exc.strerror or exc}"))

    def put_stream(self, chunks: Iterable[bytes]) -> str:
        """Store the concatenation of ``chunks``; returns its SHA-1."""
        with self.writer() as w:
            for chunk in chunks:
                w.write(chunk)
        assert w.sha1 is not None
        return w.sha1

    def put_inline(self, data: bytes) -> str:
        """Store ``data`` as ``writer(durable=False, inline=True)`` does (a row of the small-object
        table if it fits, else a file; an object already there is kept, its time refreshed), without
        a writer: the miss of a step with a small result. Returns its SHA-1."""
        if not self.inline_max or len(data) > self.inline_max:
            with self.writer(durable=False, inline=True) as w:
                w.write(data)
            assert w.sha1 is not None
            return w.sha1
        sha1 = hashlib.sha1(data).hexdigest()
        if not self._has_size(sha1, len(data), files_only=True):
            try:
                self.small.put(sha1, data)
            except StoreUnavailableError:
                # The table cannot be written (locked for too long, damaged): a file then.
                with self.writer(durable=False) as w:
                    w.write(data)
        return sha1

    def put_bytes(self, data: bytes | bytearray | memoryview) -> str:
        """Store ``data``; returns its SHA-1."""
        return self.put_stream([data])

    def put_file(self, path: str | os.PathLike[str], link: bool = False,
                 progress: files.Progress | None = None) -> str:
        """Store a copy of the file at ``path`` (hashing it as it is copied: one read); returns its SHA-1.

        With ``link`` the object is a hard link to the file where the file system
        allows (no copy; the file must then never be modified in place), else a copy.
        """
        abspath, st = stat_regular_file(path, "file to store")
        known = self.hash_cache.lookup(abspath, st) if self.hash_cache else None
        if known is not None and self._has_size(known, st.st_size):
            return known
        started = time.time_ns()
        # A hard link cannot cross file systems: when it surely fails, copy at once rather
        # than hash first and then read the file a second time to copy it.
        if link and self._same_file_system(st):
            sha1 = known or self._hash_file(abspath, path, progress)
            if self._has_size(sha1, st.st_size) or self._link_in(abspath, st, sha1):
                self._remember(abspath, st, sha1, started)
                return sha1
        try:
            source = open(abspath, "rb", buffering=0)
        except OSError as exc:
            raise InvalidPathError(f"file to store {os.fspath(path)!r} cannot be read: {exc.strerror}") from None
        with source, self.writer() as w:
            view = memoryview(bytearray(CHUNK_SIZE))
            while True:
                try:
                    n = source.readinto(view)
                except OSError as exc:
                    raise InvalidPathError(f"file to store {os.fspath(path)!r} cannot be read: "
                                           f"{exc.strerror}") from None
                if not n:
                    break
                w.write(view[:n])
                if progress is not None:
                    progress(w.size)
        assert w.sha1 is not None
        self._remember(abspath, st, w.sha1, started)
        return w.sha1

    def _hash_file(self, abspath: str, path: object, progress: files.Progress | None) -> str:
        h = hashlib.sha1()
        done = 0
        buf = bytearray(CHUNK_SIZE)
        view = memoryview(buf)
        try:
            with open(abspath, "rb", buffering=0) as f:
                while n := f.readinto(view):
                    h.update(view[:n])
                    done += n
                    if progress is not None:
                        progress(done)
        except OSError as exc:
            raise InvalidPathError(f"file to store {path!r} cannot be read: {exc.strerror}") from None
        return h.hexdigest()

    def _same_file_system(self, st: os.stat_result) -> bool:
        try:
            files.ensure_dir(self.temp_dir)
            return os.stat(self.temp_dir).st_dev == st.st_dev
        except OSError as exc:
            raise self._unavailable(exc) from exc

    def _link_in(self, abspath: str, st: os.stat_result, sha1: str) -> bool:
        """Hard link the file as object ``sha1`` if it is still the file that was hashed."""
        try:
            temp = files.link_temp(abspath, self.temp_dir)
        except OSError:
            return False  # the copy that follows reports what is wrong
        if temp is None:
            return False
        try:
            now = temp.stat()
            # The file changed (or was replaced) after it was hashed: it must not take the name.
            if (now.st_ino, now.st_size, now.st_mtime_ns) != (st.st_ino, st.st_size, st.st_mtime_ns):
                return False
            target = self.object_path(sha1)
            files.ensure_dir(target.parent)
            os.replace(temp, target)
            return True
        except OSError:
            return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()

    def _remember(self, abspath: str, st: os.stat_result, sha1: str, started: int) -> None:
        if self.hash_cache is not None:
            self.hash_cache.record(abspath, st, sha1, started)

    # --- maintenance -------------------------------------------------------------

    def remove(self, sha1: str) -> bool:
        """Remove the object ``sha1``; returns whether it was present."""
        try:
            self.object_path(sha1).unlink()
            removed = True
        except FileNotFoundError:
            removed = False
        return self.small.remove(sha1) is not None or removed

    def quarantine(self, sha1: str) -> Path | None:
        """Move the object ``sha1`` to the quarantine directory; returns its new path (None if absent).
        In a store that cannot be written (read-only, not ours) the object stays where it is: its path."""
        try:
            files.ensure_dir(self.quarantine_dir)
            dest = self.quarantine_dir / f"{sha1}.{time.time_ns()}"
            os.replace(self.object_path(sha1), dest)
            return dest
        except FileNotFoundError:
            pass
        except OSError as exc:
            if not_writable("content store", self.directory, exc) is None:
                raise
            return self.object_path(sha1) if self.object_path(sha1).is_file() else None
        data = self.small.get(sha1)
        return None if data is None else self._quarantine_row(sha1, data)

    def _quarantine_row(self, sha1: str, data: bytes) -> Path:
        files.ensure_dir(self.quarantine_dir)
        dest = self.quarantine_dir / f"{sha1}.{time.time_ns()}"
        dest.write_bytes(data)
        self.small.remove(sha1)
        return dest

    def iter_objects(self) -> Iterator[str]:
        """The SHA-1 of every object present, in no particular order."""
        for info in self.iter_object_infos(stat=False):
            yield info.sha1

    def iter_object_infos(self, stat: bool = True) -> Iterator[ObjectInfo]:
        """Every object present: its files (with ``stat``, their size and mtime; else 0), then the
        small objects kept as rows (``path`` None) that have no file."""
        seen: set[str] = set()
        if self.objects_dir.is_dir():
            for dirpath, _dirnames, filenames in os.walk(self.objects_dir):
                for name in filenames:
                    if not is_sha1_hex(name):
                        continue
                    path = os.path.join(dirpath, name)
                    if stat:
                        try:
                            st = os.stat(path)
                        except FileNotFoundError:
                            continue
                        yield ObjectInfo(name, st.st_size, st.st_mtime, path)
                    else:
                        yield ObjectInfo(name, 0, 0.0, path)
                    seen.add(name)
        for name, size, mtime in self.small.infos():
            if name not in seen:
                yield ObjectInfo(name, size, mtime, None)

    def fsck(self) -> FsckReport:
        """Re-hash every object; corrupt ones are reported and quarantined."""
        report = FsckReport()
        for info in list(self.iter_object_infos(stat=False)):
            sha1 = info.sha1
            try:
                if info.path is None:
                    data = self.small.get(sha1)
                    if data is None:
                        continue  # removed meanwhile
                    actual = hashlib.sha1(data).hexdigest()
                else:
                    with open(info.path, "rb", buffering=0) as f:
                        actual, _ = sha1_of_stream(f)
            except FileNotFoundError:
                continue  # removed meanwhile
            except OSError as exc:  # no permission, an I/O error: report it and go on
                report.unreadable.append((sha1, exc.strerror or str(exc)))
                continue
            report.checked += 1
            if actual != sha1:
                moved = self.quarantine(sha1) if info.path is not None else self._quarantine_row(sha1, data)
                if moved is not None:
                    report.corrupt.append((sha1, moved))
        return report

    def remove_temp_files(self) -> list[Path]:
        """Remove temporary files left by killed writers (never those of live writers)."""
        self._last_sweep = time.monotonic()
        return files.remove_stale_temp_files(self.temp_dir)

    def _sweep_temp_files(self) -> None:
        if time.monotonic() - self._last_sweep >= _TEMP_SWEEP_INTERVAL_S:
            self.remove_temp_files()
