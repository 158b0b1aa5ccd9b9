"""Content on a pairio server: what it lacks, uploads and downloads, to and from a local ContentStore.

:class:`RemoteContent` talks through a :class:`pairio.kv.remote.RemoteStore` (its
session, signatures, retries and error mapping) and keeps what it downloads in a
:class:`pairio.content.ContentStore`. Memory is constant for any size: uploads
stream from disk, signed with the content's SHA-1 as the body's digest (no second
pass over the file); downloads stream into the store, hashed as they arrive, and
become objects only once their SHA-1 is verified. A download cut short keeps what
it received (``partial/`` in the content directory) and the next attempt, in the
same call or a later one, continues from there with an HTTP Range request.

:func:`remote_content` gives the one for a :class:`pairio.Config`.
"""

from __future__ import annotations

import io
import os
import queue
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

import requests

from ..config import Config
from ..errors import ContentNotFoundError, InvalidPathError, InvalidURIError, ServerUnavailableError
from ..files import Progress
from ..hashing import CHUNK_SIZE, is_sha1_hex
from ..kv.remote import API, RemoteStore, reason
from . import directories
from .progress import progress_bar
from .store import ContentStore, ObjectWriter
from .uri import parse_uri

MAX_SHA1S_PER_REQUEST = 10_000
# A download that keeps being cut off, however much it gets each time, gives up after this.
_MAX_ATTEMPTS = 100


class RemoteContent:
    """The objects on the server ``client`` talks to, moved to and from the local ``store``."""

    def __init__(self, client: RemoteStore, store: ContentStore) -> None:
        self.client = client
        self.store = store

    def __repr__(self) -> str:
        return f"RemoteContent({self.client!r}, {self.store!r})"

    # --- asking -----------------------------------------------------------------------

    def missing(self, sha1s: Iterable[str]) -> list[str]:
        """Those of ``sha1s`` the server lacks, in their order, without repeats.

        One request per 10,000 hashes (an empty list costs no request). Needs the
        channel's right to read or to write content.
        """
        wanted = list(dict.fromkeys(_check_sha1(s) for s in sha1s))
        lacking: list[str] = []
        for start in range(0, len(wanted), MAX_SHA1S_PER_REQUEST):
            answer = self.client._call("content/missing", {"sha1s": wanted[start:start + MAX_SHA1S_PER_REQUEST]})
            lacking += self.client._field(answer, "missing", "content/missing")
        return lacking

    def size(self, sha1: str) -> int | None:
        """The size of the object ``sha1`` on the server (a HEAD request), or None if it lacks it."""
        response = self.client.request("HEAD", _path(sha1), accept=(200, 404))
        response.close()
        return int(response.headers["Content-Length"]) if response.status_code == 200 else None

    # --- uploading --------------------------------------------------------------------

    def upload(self, sha1: str, source: bytes | str | os.PathLike[str] | BinaryIO | None = None,
               progress: Progress | None = None) -> int:
        """Send the object ``sha1`` to the server; returns its size.

        ``source`` is the content: bytes, a file's path, or a binary file positioned at
        its start (sent from there to its end; retried only if it can seek). None sends
        the local store's object. Nothing is hashed here: the request is signed with
        ``sha1`` as the body's digest and the server refuses (BadRequestError, nothing
        stored) a body that does not hash to it. The server keeps one copy of an object it
        already has. Errors: PermissionDeniedError (the channel may not write content),
        BadRequestError (over the channel's maxObjectBytes, or a wrong hash),
        RateLimitedError (over its daily upload quota), ServerUnavailableError.
        """
        _check_sha1(sha1)
        if source is None:
            path = self.store.object_path(sha1)
            # A small object kept as a row is sent from memory, not written out as a file first.
            source = path if path.is_file() else self.store.read_row(sha1) or self.store.path(sha1)
            if source is None:
                raise ContentNotFoundError(f"object {sha1} is not in the content store "
                                           f"{str(self.store.directory)!r}: there is nothing to upload")
        opened: list[IO] = []
        retries = None

        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            total = len(data)

            def body() -> Any:
                return _Reader(_BytesFile(data), total, progress) if progress else data
        elif isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            try:
                total = os.stat(path).st_size
            except OSError as exc:
                raise InvalidPathError(f"file to upload {path!r} cannot be read: {exc.strerror}") from None

            def body() -> Any:
                for f in opened:
                    f.close()
                f = open(path, "rb")  # noqa: SIM115 - closed after the request
                opened.append(f)
                return _Reader(f, total, progress)
        else:
            stream = source
            seekable = stream.seekable()
            start = stream.tell() if seekable else 0
            regular = _regular_file_size(stream)
            total = None if regular is None else regular - start
            if total is None and seekable:
                total = stream.seek(0, os.SEEK_END) - start
                stream.seek(start)
            if not seekable:
                retries = 0  # its bytes cannot be sent twice

            def body() -> Any:
                if seekable:
                    stream.seek(start)
                reader = _Reader(stream, total, progress)
                return reader if total is not None else iter(reader)  # chunked: length unknown

        bar = None
        if progress is None and total is not None:
            bar = progress_bar(total, f"uploading {sha1[:12]}")
            progress = bar
        try:
            response = self.client.request(
                "PUT", _path(sha1), body, body_hash=sha1, retries=retries,
                headers={"Content-Type": "application/octet-stream"},
            )
            try:
                answer = response.json()
            except ValueError:
                raise ServerUnavailableError(f"pairio server {self.client._shown_url} answered an upload "
                                             "with a body that is not JSON") from None
        finally:
            for f in opened:
                f.close()
            if bar is not None:
                bar.close()
        return int(self.client._field(answer, "size", "upload"))

    def upload_missing(self, sha1s: Iterable[str]) -> list[str]:
        """Upload those of the local objects ``sha1s`` that the server lacks, in their order.

        One ``missing`` request (per 10,000), then one upload each; returns the ones uploaded.
        """
        lacking = self.missing(sha1s)
        for sha1 in lacking:
            self.upload(sha1)
        return lacking

    def push(self, uri: str) -> list[str]:
        """Upload what the server lacks of ``uri``'s content; returns the hashes uploaded.

        A ``sha1dir://`` directory travels whole: its files first, then its manifest,
        so the server never holds a manifest naming a file it lacks.
        """
        return self.upload_missing(self.local_hashes(uri))

    def local_hashes(self, uri: str) -> list[str]:
        """The objects that make up ``uri`` in the local store: a file's hash, or a whole
        directory's file hashes followed by its manifest's (ContentNotFoundError if absent)."""
        parsed = parse_uri(uri)
        if not parsed.is_dir:
            if not self.store.has(parsed.sha1):
                raise ContentNotFoundError(f"{uri!r} is not in the content store {str(self.store.directory)!r}")
            return [parsed.sha1]
        manifest = directories.read_manifest(self.store, parsed.sha1, uri)
        hashes = list(dict.fromkeys(_file_hashes(manifest)))
        absent = [h for h in hashes if not self.store.has(h)]
        if absent:
            raise ContentNotFoundError(f"{len(absent)} file(s) of {uri!r} are not in the content store "
                                       f"{str(self.store.directory)!r} (e.g. {absent[0]})")
        return [*hashes, parsed.sha1]

    # --- downloading ------------------------------------------------------------------

    def download(self, sha1: str, progress: Progress | None = None) -> Path:
        """Fetch the object ``sha1`` into the local store (if it is not there); returns its local path.

        The bytes are hashed as they arrive and the object appears only once they match
        ``sha1`` (else CorruptContentError, and nothing is kept). A connection lost midway
        is retried from where it stopped (HTTP Range); if the server stays away,
        ServerUnavailableError says how much is kept, and the next call continues from
        there. ContentNotFoundError if the server lacks the object; PermissionDeniedError
        if the channel may not read content. ``progress(n)`` is called with the bytes
        present so far; without it, a bar is drawn on stderr for a large object when
        stderr is a terminal.
        """
        _check_sha1(sha1)
        path = self.store.path(sha1)
        if path is not None:
            return path
        self.store.mark_foreign(sha1)  # before it exists: no moment where it passes for this user's own
        with self.store.partial_writer(sha1, durable=False) as w:
            if w is not None:  # None: another process stored it while this one waited
                self._receive(sha1, w, progress)
        path = self.store.path(sha1)
        assert path is not None
        return path

    def _receive(self, sha1: str, w: ObjectWriter, progress: Progress | None) -> None:
        bar = None
        failures = attempts = 0
        try:
            while True:
                attempts += 1
                resumed_at = w.size
                try:
                    response = self.client.request(
                        "GET", _path(sha1), stream=True, accept=(200, 206, 404, 416),
                        headers={"Range": f"bytes={resumed_at}-"} if resumed_at else None,
                    )
                except ServerUnavailableError as exc:
                    raise self._cut_off(sha1, w, str(exc)) from None
                with response:
                    status = response.status_code
                    if status == 404:
                        raise ContentNotFoundError(f"object {sha1} is not on pairio server "
                                                   f"{self.client._shown_url}")
                    if status == 416:
                        return  # everything is already here: the commit verifies it
                    skip = resumed_at if status == 200 else 0  # a server that ignored the Range
                    if status == 206 and not response.headers.get("Content-Range", "").startswith(
                            f"bytes {resumed_at}-"):
                        raise ServerUnavailableError(
                            f"pairio server {self.client._shown_url} answered a download of {sha1} from "
                            f"byte {resumed_at} with Content-Range {response.headers.get('Content-Range')!r}")
                    length = response.headers.get("Content-Length")
                    if progress is None and bar is None and length is not None and length.isdigit():
                        bar = progress_bar(int(length) + resumed_at - skip, f"downloading {sha1[:12]}")
                    sink = _BackgroundWriter(w, progress or bar)
                    try:
                        for chunk in response.iter_content(CHUNK_SIZE):
                            if skip:
                                dropped = min(skip, len(chunk))
                                chunk, skip = chunk[dropped:], skip - dropped
                            sink.put(chunk)
                        sink.close()
                        return
                    except requests.RequestException as exc:
                        why = reason(exc)
                    finally:
                        sink.close()  # every byte received is written (and counted) before a retry
                if w.size == resumed_at:
                    failures += 1  # no progress at all this time
                if failures > self.client.retries or attempts > _MAX_ATTEMPTS:
                    raise self._cut_off(sha1, w, why)
                time.sleep(self.client._backoff(failures))
        finally:
            if bar is not None:
                bar.close()

    def _cut_off(self, sha1: str, w: ObjectWriter, why: str) -> ServerUnavailableError:
        return ServerUnavailableError(
            f"download of {sha1} from pairio server {self.client._shown_url} stopped after {w.size} bytes "
            f"({why}); they are kept, and the next download of it continues from there")

    def pull(self, uri: str) -> list[str]:
        """Download what the local store lacks of ``uri``'s content; returns the hashes downloaded.

        A ``sha1dir://`` URI brings its whole directory (manifest and every file), whatever
        path inside it the URI names.
        """
        parsed = parse_uri(uri)
        fetched = []
        if not self.store.has(parsed.sha1):
            self.download(parsed.sha1)
            fetched.append(parsed.sha1)
        if parsed.is_dir:
            manifest = directories.read_manifest(self.store, parsed.sha1, uri)
            for sha1 in dict.fromkeys(_file_hashes(manifest)):
                if not self.store.has(sha1):
                    self.download(sha1)
                    fetched.append(sha1)
        return fetched


def remote_content(config: Config) -> RemoteContent:
    """The server's content for ``config`` (its url, channel, password), moved to and from its content store."""
    from ..kv import remote_store
    from .local import content_store

    client = remote_store(config)
    assert isinstance(client, RemoteStore)
    return RemoteContent(client, content_store(config))


def _file_hashes(manifest: dict) -> Iterator[str]:
    for entry in manifest["files"].values():
        yield entry["sha1"]
    for sub in manifest["dirs"].values():
        yield from _file_hashes(sub)


def _path(sha1: str) -> str:
    return f"{API}/content/sha1/{sha1}"


def _check_sha1(sha1: object) -> str:
    if not is_sha1_hex(sha1):
        raise InvalidURIError(f"{sha1!r} is not a SHA-1 (40 lowercase hex digits)")
    return sha1  # type: ignore[return-value]


def _regular_file_size(stream: Any) -> int | None:
    """The size of the regular file under ``stream``; None for a pipe, a socket or no file."""
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


class _BackgroundWriter:
    """Writes (and so hashes) received chunks into ``w`` in a worker thread, while the caller
    receives the next ones: the SHA-1 and the disk overlap the network instead of adding to it.

    At most a few chunks wait in between (constant memory). :meth:`close` waits until
    everything put is written and raises what the writer (or ``progress``) raised.
    """

    def __init__(self, w: ObjectWriter, progress: Progress | None) -> None:
        self._w = w
        self._progress = progress
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="pairio-download", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain: the caller learns of the error at its next put or at close
            try:
                self._w.write(chunk)
                if self._progress is not None:
                    self._progress(self._w.size)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self._error = exc

    def put(self, chunk: bytes) -> None:
        if self._error is not None:
            self.close()
        self._queue.put(chunk)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error


class _BytesFile:
    """Bytes read like a file, without a copy."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._view) if n is None or n < 0 else self._pos + n
        chunk = self._view[self._pos:end]
        self._pos += len(chunk)
        return bytes(chunk)


class _Reader:
    """A request body read from ``f`` in large blocks, reporting progress; ``len`` gives Content-Length."""

    def __init__(self, f: Any, total: int | None, progress: Progress | None) -> None:
        self._f = f
        self._total = total
        self._progress = progress
        self._done = 0

    def __len__(self) -> int:
        return self._total or 0

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK_SIZE):
            yield chunk

    def read(self, n: int = -1) -> bytes:
        chunk = self._f.read(n)
        if chunk and self._progress is not None:
            self._done += len(chunk)
            self._progress(self._done)
        return chunk
