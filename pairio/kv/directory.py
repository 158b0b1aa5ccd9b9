"""The directory store: pairs as files, safe on a directory shared by many hosts (NFS, Lustre...).

SQLite's WAL does not work across hosts, and its locks are only as good as the network
file system's. This store uses only what such file systems guarantee:

- a pair is one small file, written under a unique temporary name in its final directory,
  then renamed over its name (``rename`` is atomic on every POSIX file system, NFS's
  included, and close-to-open consistency makes a renamed file whole for any host that
  opens it after): a reader sees the old value or the new, never part of one;
- a lease (one computer per key, :class:`DirectoryLeases`) is the exclusive creation
  (``O_CREAT | O_EXCL``, atomic on NFSv3 and later) of the file of its next generation,
  with an expiry written in it;
- no ``flock``, no ``fcntl`` locks, no shared memory, no mmap.

Layout, under ``directory``::

    pairs/<sha1 of the collection>/collection    the collection's name
    pairs/<sha1 of the collection>/<2 hex>/<38 hex>   one pair: JSON [key, value]; the file is
                                                      named by the SHA-1 of the key
    leases/<sha1 of the name>/<generation>       one lease: JSON (see DirectoryLeases)

A set returns once its file is renamed into place: it survives the crash of the process
(and, on NFS, of the host: close() sends the data to the server). ``set_many`` writes its
pairs one by one, each atomically; a reader may see part of a batch (a cached result's
pair is written last, after its content, so a reader that sees it finds its content).
On NFS a host may keep seeing a file absent for a few seconds after another host made it
(its lookup cache): that is a miss, and a recomputation, never a wrong value.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import StoreUnavailableError
from .base import Attachment, KeyValueStore

PAIRS_DIRNAME = "pairs"
LEASES_DIRNAME = "leases"
_COLLECTION_FILENAME = "collection"
_TMP_PREFIX = ".tmp-"
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8", "surrogatepass")


def _loads(data: bytes) -> Any:
    return json.loads(data.decode("utf-8", "surrogatepass"))


def _read(path: str) -> bytes | None:
    """The bytes of the file at ``path``, or None if there is none."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    try:
        chunks = [os.read(fd, 65536)]
        while len(chunks[-1]) == 65536:
            chunks.append(os.read(fd, 65536))
    finally:
        os.close(fd)
    return b"".join(chunks)


@functools.lru_cache(maxsize=1)
def _host() -> str:
    import socket  # here: `import pairio` stays light

    return socket.gethostname()


def _temporary_name(directory: str) -> str:
    return os.path.join(directory, f"{_TMP_PREFIX}{_host()}-{os.getpid()}-{os.urandom(6).hex()}")


def write_file(path: str, data: bytes) -> None:
    """Put ``data`` at ``path`` whole or not at all: written under a temporary name beside it, then
    renamed over it (its directory is made if missing)."""
    directory = os.path.dirname(path)
    temporary = _temporary_name(directory)
    try:
        fd = os.open(temporary, _CREATE_FLAGS, 0o666)
    except FileNotFoundError:
        os.makedirs(directory, exist_ok=True)
        fd = os.open(temporary, _CREATE_FLAGS, 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)  # on NFS, close() is when the data reaches the server
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


class DirectoryStore(KeyValueStore):
    """Pairs kept as files under ``directory`` (created if missing), safe for many processes on
    many hosts sharing it over a network file system. See the module's documentation."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / PAIRS_DIRNAME
        self._root = os.fspath(self.path)
        self._collections: dict[str, str] = {}
        self._named: set[str] = set()  # collections whose name file is known to be there
        self.warned_no_records = False  # (pairio.lifecycle.records: it keeps none)

    def __repr__(self) -> str:
        return f"DirectoryStore({str(self.directory)!r})"

    def _error(self, exc: OSError, doing: str) -> StoreUnavailableError:
        detail = exc.strerror or str(exc)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            detail = f"the disk is full ({detail})"
        where = exc.filename if exc.filename else self._root
        return StoreUnavailableError(f"pairio directory store {self._root!r}: cannot {doing} {where!r}: {detail}")

    def _collection_dir(self, collection: str) -> str:
        return self._collection_prefix(collection)[:-1]

    def _collection_prefix(self, collection: str) -> str:
        try:
            return self._collections[collection]
        except KeyError:
            path = self._collections[collection] = os.path.join(self._root, _sha1(collection), "")
            return path

    def _pair_path(self, collection: str, key: str) -> str:
        digest = hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self._collection_prefix(collection)}{digest[:2]}{os.sep}{digest[2:]}"

    # --- operations --------------------------------------------------------------

    def get(self, collection: str, key: str) -> str | None:
        path = self._pair_path(collection, key)
        try:
            data = _read(path)
        except OSError as exc:
            raise self._error(exc, "read") from exc
        if data is None:
            return None
        try:
            stored_key, value = _loads(data)
        except ValueError as exc:  # never written so: only renamed-in whole files are there
            raise StoreUnavailableError(f"pairio directory store: pair file {path!r} is damaged ({exc})") from exc
        return value if stored_key == key else None  # (two keys of one SHA-1: not expected)

    def get_with_object(self, collection: str, key: str, objects: Attachment) -> tuple[str | None, None]:
        """As :meth:`EmbeddedStore.get_with_object`: the value of ``key``; the small result's
        bytes are never read with it here (None: the caller reads them itself)."""
        return self.get(collection, key), None

    def get_many(self, collection: str, keys: Iterable[str]) -> dict[str, str]:
        found = {}
        for key in dict.fromkeys(keys):
            value = self.get(collection, key)
            if value is not None:
                found[key] = value
        return found

    def set(self, collection: str, key: str, value: str) -> None:
        path = self._pair_path(collection, key)
        try:
            if collection not in self._named:
                self._name_collection(collection)
            write_file(path, _dumps([key, value]))
        except OSError as exc:
            raise self._error(exc, "write") from exc

    def _name_collection(self, collection: str) -> None:
        """Write the collection's name beside its pairs (once: :meth:`collections` reads it)."""
        name_file = os.path.join(self._collection_dir(collection), _COLLECTION_FILENAME)
        if not os.path.exists(name_file):
            write_file(name_file, _dumps(collection))
        self._named.add(collection)

    def set_many(self, collection: str, pairs: Mapping[str, str | None]) -> None:
        """Each pair atomically, one after another (a None value deletes its key)."""
        for key, value in pairs.items():
            if value is None:
                self.delete(collection, key)
            else:
                self.set(collection, key, value)

    def delete(self, collection: str, key: str) -> None:
        try:
            os.unlink(self._pair_path(collection, key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._error(exc, "remove") from exc

    def collections(self) -> list[str]:
        """The names of the collections that hold at least one pair."""
        out = []
        for directory in self._collection_dirs():
            data = _read(os.path.join(directory, _COLLECTION_FILENAME))
            if data is not None and any(True for _ in self._pair_files(directory)):
                out.append(_loads(data))
        return out

    def count(self, collection: str) -> int:
        """How many pairs ``collection`` holds."""
        return sum(1 for _ in self._pair_files(self._collection_dir(collection)))

    def items(self, collection: str) -> Iterable[tuple[str, str]]:
        """Every pair of ``collection``, in no particular order."""
        for path in self._pair_files(self._collection_dir(collection)):
            data = _read(path)
            if data is not None:
                key, value = _loads(data)
                yield key, value

    def remove_temporary(self, older_than_s: float = 3600.0, dry_run: bool = False) -> int:
        """Remove the temporary files of writers that died before renaming them (left for
        ``older_than_s`` seconds); returns how many went (with ``dry_run``, would go)."""
        removed, cutoff = 0, time.time() - older_than_s
        for root in (self._root, os.path.join(os.fspath(self.directory), LEASES_DIRNAME)):
            for directory, _, names in os.walk(root):
                for name in names:
                    if name.startswith(_TMP_PREFIX):
                        path = os.path.join(directory, name)
                        try:
                            if os.stat(path).st_mtime < cutoff:
                                if not dry_run:
                                    os.unlink(path)
                                removed += 1
                        except FileNotFoundError:
                            pass
        return removed

    def _collection_dirs(self) -> list[str]:
        try:
            return [entry.path for entry in os.scandir(self._root) if entry.is_dir()]
        except FileNotFoundError:
            return []

    @staticmethod
    def _pair_files(directory: str) -> Iterable[str]:
        try:
            shards = [entry.path for entry in os.scandir(directory) if entry.is_dir()]
        except FileNotFoundError:
            return
        for shard in shards:
            try:
                entries = list(os.scandir(shard))
            except FileNotFoundError:
                continue
            for entry in entries:
                if not entry.name.startswith(_TMP_PREFIX):
                    yield entry.path


@dataclasses.dataclass(frozen=True)
class Lease:
    """A claim on ``name`` until ``expires_at`` (seconds since the epoch), held by ``owner``
    (as the server's coordination backends' leases)."""

    name: str
    owner: str
    info: Mapping[str, Any]
    acquired_at: float
    expires_at: float


class DirectoryLeases:
    """Leases kept as files under ``<directory>/leases``: one computer per key across hosts.

    A lease's directory holds one file per generation (``000000000001``, ...); the newest is the
    lease. Taking a free, expired or released lease is creating the next generation's file with
    ``O_EXCL`` (a hard link, which fails where the name exists): of any number of hosts trying
    at once exactly one succeeds. Renewing an unexpired lease and releasing rewrite the
    holder's own generation (written then renamed; released: expired at 0). Old generations are removed after an hour. Expiry is judged by each host's clock, so
    hosts' clocks should agree to well within a lease's time to live.
    """

    _KEEP_OLD_S = 3600.0

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory) / LEASES_DIRNAME
        self._root = os.fspath(self.directory)

    def __repr__(self) -> str:
        return f"DirectoryLeases({str(self.directory)!r})"

    def _dir(self, name: str) -> str:
        return os.path.join(self._root, _sha1(name))

    def _newest(self, directory: str) -> tuple[int, Lease | None]:
        try:
            generations = sorted((int(n) for n in os.listdir(directory) if n.isdigit()), reverse=True)
        except FileNotFoundError:
            return 0, None
        for generation in generations:
            data = _read(os.path.join(directory, f"{generation:012d}"))
            if data is not None:  # (removed meanwhile: look at the next)
                try:
                    fields = _loads(data)
                    return generation, Lease(fields["name"], fields["owner"], fields["info"],
                                             fields["acquired_at"], fields["expires_at"])
                except (ValueError, KeyError, TypeError):
                    return generation, None  # an empty file: being created, treat as free (expired)
        return 0, None

    def acquire_lease(self, name: str, owner: str, info: Mapping[str, Any], ttl: float,
                      now: float | None = None) -> Lease:
        """Take the lease on ``name`` for ``ttl`` seconds if it is free or expired; returns the lease
        that holds after the call (ours if ``lease.owner == owner``). Holding it already renews it."""
        now = time.time() if now is None else now
        directory = self._dir(name)
        while True:
            generation, held = self._newest(directory)
            if held is not None and held.expires_at > now:
                if held.owner != owner:
                    return held
                renewed = self.renew_lease(name, owner, ttl, now)
                if renewed is not None:
                    return renewed
                continue
            # Free, expired or released (even ours): the next generation, never a rewrite of this one,
            # which another host may be taking over at this moment.
            lease = Lease(name, owner, dict(info), now, now + ttl)
            path = os.path.join(directory, f"{generation + 1:012d}")
            try:
                self._create(path, lease)
            except FileExistsError:
                continue  # another took it first: look again
            self._forget_old(directory, generation + 1)
            return lease

    def _create(self, path: str, lease: Lease) -> None:
        # The lease's file is written whole before it is linked under its generation's name
        # (link fails if the name exists, as O_EXCL): a reader never sees it half-written.
        directory = os.path.dirname(path)
        temporary = _temporary_name(directory)
        try:
            write_file(temporary, _dumps(dataclasses.asdict(lease)))
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)
            write_file(temporary, _dumps(dataclasses.asdict(lease)))
        try:
            os.link(temporary, path)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
                raise
            # No hard links here (some FUSE file systems): exclusive create, then the contents.
            fd = os.open(path, _CREATE_FLAGS, 0o666)
            os.close(fd)
            write_file(path, _dumps(dataclasses.asdict(lease)))
        finally:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass

    def _forget_old(self, directory: str, newest: int) -> None:
        cutoff = time.time() - self._KEEP_OLD_S
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.name.isdigit() and int(entry.name) < newest:
                try:
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                except FileNotFoundError:
                    pass

    def renew_lease(self, name: str, owner: str, ttl: float, now: float | None = None) -> Lease | None:
        """Extend ``owner``'s lease on ``name`` to ``now + ttl``; None if ``owner`` no longer holds it.
        An expired lease is not renewed (another host may be taking it over): the holder renews
        every ``ttl / 3`` seconds, long before it expires."""
        now = time.time() if now is None else now
        directory = self._dir(name)
        generation, held = self._newest(directory)
        if held is None or held.owner != owner or held.expires_at <= now:
            return None
        lease = Lease(name, owner, held.info, held.acquired_at, now + ttl)
        write_file(os.path.join(directory, f"{generation:012d}"), _dumps(dataclasses.asdict(lease)))
        if self._newest(directory)[0] != generation:  # taken meanwhile by another host
            return None
        return lease

    def release_lease(self, name: str, owner: str) -> bool:
        """Give up ``owner``'s lease on ``name``; False if ``owner`` did not hold it."""
        directory = self._dir(name)
        generation, held = self._newest(directory)
        if held is None or held.owner != owner:
            return False
        released = dataclasses.replace(held, expires_at=0.0)
        write_file(os.path.join(directory, f"{generation:012d}"), _dumps(dataclasses.asdict(released)))
        return True

    def remove_expired(self, older_than_s: float = 3600.0, dry_run: bool = False) -> int:
        """Remove the files of the leases expired (or released) more than ``older_than_s`` seconds
        ago; returns how many leases went (with ``dry_run``, would go)."""
        cutoff = time.time() - older_than_s
        try:
            directories = [entry.path for entry in os.scandir(self._root) if entry.is_dir()]
        except FileNotFoundError:
            return 0
        removed = 0
        for directory in directories:
            _, lease = self._newest(directory)
            try:
                paths = [entry.path for entry in os.scandir(directory)]
                if (lease is not None and lease.expires_at > cutoff) or any(
                        os.stat(p).st_mtime > cutoff for p in paths):
                    continue
                removed += 1
                if not dry_run:
                    for path in paths:
                        os.unlink(path)
                    os.rmdir(directory)
            except (FileNotFoundError, OSError):
                continue  # in use again meanwhile: left
        return removed

    def leases(self, now: float | None = None) -> list[Lease]:
        """The leases held (unexpired), oldest first."""
        now = time.time() if now is None else now
        try:
            directories = [entry.path for entry in os.scandir(self._root) if entry.is_dir()]
        except FileNotFoundError:
            return []
        held = [lease for lease in (self._newest(d)[1] for d in directories)
                if lease is not None and lease.expires_at > now]
        return sorted(held, key=lambda lease: lease.acquired_at)

    def close(self) -> None:
        """Nothing to release (no connections)."""
