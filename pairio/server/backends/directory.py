"""Content in a directory, through the local content store: same layout, same atomic writer.

So ``PAIRIO_CONTENT_DIR=DIR/content pairio fsck`` checks a server's objects, and an
object appears only once it is complete and its SHA-1 verified.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from ...content.store import ContentStore
from ...errors import ContentNotFoundError, StoreUnavailableError
from ...hashing import CHUNK_SIZE
from ...lifecycle.access import AccessLog
from .base import ContentBackend, Upload


class DirectoryContent(ContentBackend):
    """Objects in ``directory`` (a :class:`pairio.content.ContentStore` directory)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.store = ContentStore(Path(directory))
        # The last read of each object, for `pairio gc --max-size` on this directory.
        self.access = AccessLog(self.store.directory)

    def __repr__(self) -> str:
        return f"DirectoryContent({str(self.store.directory)!r})"

    def check(self) -> None:
        """StoreUnavailableError if the directory is not one that can be listed (absent is fine: it is
        made with the first object, if its parent exists)."""
        directory = self.store.directory
        try:
            if directory.exists():
                if not directory.is_dir():
                    raise StoreUnavailableError(f"content directory {str(directory)!r}: it is not a directory")
                with os.scandir(directory):
                    pass
            elif not directory.parent.is_dir():
                raise StoreUnavailableError(f"content directory {str(directory)!r}: its parent is not a directory")
        except StoreUnavailableError:
            raise
        except OSError as exc:
            raise StoreUnavailableError(f"content directory {str(directory)!r}: {exc.strerror or exc}") from None

    def size(self, sha1: str) -> int | None:
        try:
            return self.store.size(sha1)
        except ContentNotFoundError:
            return None

    def read(self, sha1: str, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        # Opened here, not in the generator, so an absent object fails before anything is sent.
        # Not checked here: the client hashes every byte it downloads (a Range read would
        # otherwise cost a hash of the whole object).
        f = self.store.open_unchecked(sha1)
        self.access.touch(sha1)
        return _chunks(f, start, stop)

    def usage(self) -> tuple[int, int]:
        """How many objects the directory holds, and their bytes (walks it all)."""
        objects = size = 0
        for info in self.store.iter_object_infos():
            objects += 1
            size += info.size
        return objects, size

    def upload(self, sha1: str) -> Upload:
        return _DirectoryUpload(self.store, sha1)


def _chunks(f, start: int, stop: int | None) -> Iterator[bytes]:
    with f:
        f.seek(start)
        remaining = None if stop is None else max(stop - start, 0)
        while remaining is None or remaining > 0:
            chunk = f.read(CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining))
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk


class _Aborted(Exception):
    """Thrown into the store's writer to make it discard what it received."""


class _DirectoryUpload(Upload):
    def __init__(self, store: ContentStore, sha1: str) -> None:
        self._sha1 = sha1
        self._context = store.writer(expect=sha1)
        self._writer = self._context.__enter__()
        self._open = True

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    def commit(self) -> int:
        if not self._open:
            raise RuntimeError(f"the upload of {self._sha1} has already ended")
        self._open = False
        self._context.__exit__(None, None, None)  # checks the hash, then renames into place
        return self._writer.size

    def abort(self) -> None:
        if self._open:
            self._open = False
            with contextlib.suppress(_Aborted):
                self._context.__exit__(_Aborted, _Aborted(), None)
