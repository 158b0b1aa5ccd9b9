"""Tests' hands on an object as it lies in a content store, a file or a row of the small-object
table alike: its raw bytes, damage to them, its age. Nothing here checks a hash."""

from __future__ import annotations

import os
import sqlite3
import time

from pairio.content import ContentStore


def _row(store: ContentStore, sql: str, args: tuple) -> int:
    with sqlite3.connect(store.small.path) as conn:
        return conn.execute(sql, args).rowcount


def is_row(store: ContentStore, sha1: str) -> bool:
    """True if the object ``sha1`` is kept as a row, not as a file."""
    return not os.path.exists(store.object_file(sha1)) and store.small.info(sha1) is not None


def raw_bytes(store: ContentStore, sha1: str) -> bytes:
    """The stored bytes of the object ``sha1``, unchecked."""
    if is_row(store, sha1):
        data = store.small.get(sha1)
        assert data is not None
        return data
    with open(store.object_file(sha1), "rb") as f:
        return f.read()


def overwrite(store: ContentStore, sha1: str, data: bytes) -> None:
    """Replace the stored bytes of the object ``sha1`` by ``data`` (a damage)."""
    if is_row(store, sha1):
        assert _row(store, "UPDATE objects SET data = ? WHERE sha1 = ?", (data, sha1)) == 1
        return
    path = store.object_file(sha1)
    os.chmod(path, 0o644)  # objects are stored read-only
    with open(path, "wb") as f:
        f.write(data)


def age(store: ContentStore, sha1: str, seconds: float) -> None:
    """Make the object ``sha1`` look stored ``seconds`` ago."""
    old = time.time() - seconds
    if is_row(store, sha1):
        assert _row(store, "UPDATE objects SET mtime = ? WHERE sha1 = ?", (old, sha1)) == 1
    else:
        os.utime(store.object_file(sha1), (old, old))
