"""get_file_hash: unchanged files are not re-read; changed files always are."""

from __future__ import annotations

import hashlib
import os
import sys
import time

import pytest

import pairio as pa
from pairio.content import hash_cache as hash_cache_module
from pairio.deferred import drain_all


@pytest.fixture
def reads(monkeypatch):
    """Counts how many times a file is read in full to be hashed."""
    calls = []
    real = hash_cache_module.sha1_of_stream

    def counting(stream, *args, **kwargs):
        calls.append(stream.name)
        return real(stream, *args, **kwargs)

    monkeypatch.setattr(hash_cache_module, "sha1_of_stream", counting)
    return calls


def _old_file(path, data):
    """A file whose mtime is well in the past, so its hash may be remembered."""
    path.write_bytes(data)
    past = time.time_ns() - 60 * 10**9
    os.utime(path, ns=(past, past))
    return path


def test_get_file_hash_is_the_sha1_of_the_file(tmp_path):
    path = _old_file(tmp_path / "f.dat", b"Hello, pairio.\n")
    assert pa.get_file_hash(path) == "a09fd13fd92800aeafe475e9113efe216788d934"


def test_unchanged_file_is_hashed_once(tmp_path, reads):
    path = _old_file(tmp_path / "f.dat", os.urandom(10_000))
    first = pa.get_file_hash(path)
    assert pa.get_file_hash(path) == first
    assert pa.get_file_hash(str(path)) == first
    assert len(reads) == 1


def test_hash_is_remembered_across_processes(tmp_path):
    import subprocess
    import sys

    path = _old_file(tmp_path / "f.dat", b"shared")
    pa.get_file_hash(path)
    code = ("import pairio as pa; from pairio.content import hash_cache as h; "
            "h.sha1_of_stream = None; "  # would raise if the file were re-hashed
            f"print(pa.get_file_hash({str(path)!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PAIRIO_DB_PATH": str(pa.get_config().database_dir)})
    assert out.stdout.strip() == hashlib.sha1(b"shared").hexdigest()


def test_rewritten_file_with_same_size_and_mtime_is_rehashed_when_inode_changes(tmp_path, reads):
    path = _old_file(tmp_path / "f.dat", b"version 1")
    st = os.stat(path)
    assert pa.get_file_hash(path) == hashlib.sha1(b"version 1").hexdigest()
    replacement = tmp_path / "new.dat"
    replacement.write_bytes(b"version 2")
    os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(replacement, path)
    assert pa.get_file_hash(path) == hashlib.sha1(b"version 2").hexdigest()


def test_file_modified_in_place_is_rehashed(tmp_path):
    path = _old_file(tmp_path / "f.dat", b"aaaa")
    assert pa.get_file_hash(path) == hashlib.sha1(b"aaaa").hexdigest()
    with open(path, "r+b") as f:
        f.write(b"bbbb")
    assert pa.get_file_hash(path) == hashlib.sha1(b"bbbb").hexdigest()


def test_freshly_written_file_is_not_remembered(tmp_path, reads):
    # A rewrite within the file system's timestamp granularity could keep the mtime;
    # so a file modified just before hashing is re-hashed next time (git's racy rule).
    path = tmp_path / "fresh.dat"
    path.write_bytes(b"x")
    pa.get_file_hash(path)
    path.write_bytes(b"y")
    assert pa.get_file_hash(path) == hashlib.sha1(b"y").hexdigest()
    assert len(reads) == 2


def test_store_file_of_an_unchanged_file_reads_nothing(tmp_path, monkeypatch):
    path = _old_file(tmp_path / "big.dat", os.urandom(100_000))
    uri = pa.store_file(path)
    opened = []
    real_open = open

    def spy_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy_open)
    assert pa.store_file(path) == uri
    assert pa.get_file_hash(path) == pa.parse_uri(uri).sha1
    assert str(path) not in opened


def test_unusable_cache_database_still_hashes(tmp_path):
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    (db_dir / "hash_cache.sqlite3").write_bytes(b"this is not a database" * 100)
    path = _old_file(tmp_path / "f.dat", b"data")
    with pytest.warns(RuntimeWarning, match="hash cache"):
        assert pa.get_file_hash(path, database_path=str(db_dir)) == hashlib.sha1(b"data").hexdigest()


@pytest.mark.skipif(sys.platform != "linux", reason="needs a file system that takes any bytes as a name")
def test_a_file_whose_name_is_not_utf8_is_hashed_and_stored(tmp_path):
    (tmp_path / "d").mkdir()
    path = os.path.join(os.fsencode(tmp_path / "d"), b"caf\xe9.dat")  # Latin-1, not UTF-8
    with open(path, "wb") as f:
        f.write(b"data")
    past = time.time_ns() - 60 * 10**9
    os.utime(path, ns=(past, past))
    name = os.fsdecode(path)
    assert pa.get_file_hash(name) == hashlib.sha1(b"data").hexdigest()
    assert pa.load_bytes(pa.store_file(name)) == b"data"
    assert pa.read_dir(pa.store_dir(tmp_path / "d"))["files"][os.path.basename(name)]["size"] == 4


def test_a_signature_queued_for_the_table_never_replaces_a_newer_one_written_since(tmp_path, monkeypatch):
    """A store queues its object's signature for the background writer; a read after a change
    writes the new one at once. The queued, older row must not land over it."""
    queued = []
    queue_write = hash_cache_module._queue_write
    monkeypatch.setattr(hash_cache_module, "_queue_write", lambda cache, row: queued.append((cache, row)))
    path = _old_file(tmp_path / "object", b"x" * 100)
    sha1 = hashlib.sha1(b"x" * 100).hexdigest()
    cache = hash_cache_module.HashCache(tmp_path / "db")
    cache.remember(str(path), os.stat(path), sha1, wait=False)
    os.utime(path, ns=(1, 1))
    cache.remember(str(path), os.stat(path), sha1)  # verified again after the change
    for item in queued:  # the background writer, running only now
        queue_write(*item)
    drain_all()
    elsewhere = hash_cache_module.HashCache(tmp_path / "db")
    assert elsewhere.lookup(str(path), os.stat(path)) == sha1
