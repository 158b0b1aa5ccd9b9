"""Small results kept as rows of the content store's small-object table: stored without a file,
read, listed, removed, checked and collected like any object."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sqlite3
import subprocess
import sys

import pytest
import stored_objects
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pairio as pa
from pairio.content import ContentStore
from pairio.content.small import FILENAME, INLINE_MAX
from pairio.kv import local_store
from pairio.lifecycle import gc


def _store() -> ContentStore:
    return pa.content_store(pa.get_config())


def _inline(store: ContentStore, *chunks: bytes) -> str:
    with store.writer(durable=False, inline=True) as w:
        for chunk in chunks:
            w.write(chunk)
    assert w.sha1 is not None
    return w.sha1


def _object_files(store: ContentStore) -> list[str]:
    return [name for _, _, names in os.walk(store.objects_dir) for name in names]


def test_a_small_object_is_a_row_and_reads_back_like_a_file():
    store = _store()
    sha1 = _inline(store, b"small ", b"result")
    assert sha1 == hashlib.sha1(b"small result").hexdigest()
    assert _object_files(store) == [] and stored_objects.is_row(store, sha1)
    assert store.has(sha1) and store.size(sha1) == 12
    with store.open(sha1) as f:
        assert f.read() == b"small result"
    assert pa.load_bytes(f"sha1://{sha1}") == b"small result"
    assert list(store.iter_objects()) == [sha1]


def test_asking_for_its_path_writes_it_out_as_a_file_once():
    store = _store()
    sha1 = _inline(store, b"wanted as a file")
    path = store.path(sha1)
    assert path is not None and path.read_bytes() == b"wanted as a file"
    assert not stored_objects.is_row(store, sha1) and store.small.info(sha1) is None
    assert list(store.iter_objects()) == [sha1] and store.path(sha1) == path


def test_an_object_past_the_limit_is_a_file_even_when_written_in_small_pieces():
    store = _store()
    at_limit = _inline(store, b"a" * (INLINE_MAX - 1), b"a")
    over = _inline(store, b"b" * (INLINE_MAX // 2), b"b" * (INLINE_MAX // 2), b"b")
    assert stored_objects.is_row(store, at_limit)
    assert not stored_objects.is_row(store, over)
    assert store.path(over).read_bytes() == b"b" * (INLINE_MAX + 1)
    assert store.small.info(over) is None


def test_a_writer_that_fails_stores_nothing_in_either_form():
    store = _store()
    with pytest.raises(RuntimeError), store.writer(inline=True) as w:
        w.write(b"half of it")
        raise RuntimeError("the pickler failed")
    with pytest.raises(RuntimeError), store.writer(inline=True) as w:
        w.write(b"x" * (INLINE_MAX + 10))  # spilled to a temporary file first
        raise RuntimeError("the pickler failed")
    assert list(store.iter_objects()) == []
    assert not store.temp_dir.exists() or list(store.temp_dir.iterdir()) == []


def test_an_expected_hash_that_does_not_match_stores_nothing():
    store = _store()
    with pytest.raises(pa.CorruptContentError, match="nothing was stored"), \
            store.writer(inline=True, expect="0" * 40) as w:
        w.write(b"something else")
    assert list(store.iter_objects()) == []


def test_the_same_content_as_a_file_and_then_inline_is_kept_once():
    store = _store()
    sha1 = pa.parse_uri(pa.store_bytes(b"stored as a file first")).sha1
    assert _inline(store, b"stored as a file first") == sha1
    assert store.small.info(sha1) is None and list(store.iter_objects()) == [sha1]
    row = _inline(store, b"a row first")
    assert store.put_bytes(b"a row first") == row  # present already: no file made
    assert stored_objects.is_row(store, row)


def test_a_damaged_row_is_never_read_and_is_quarantined():
    store = _store()
    sha1 = _inline(store, b"the true bytes")
    stored_objects.overwrite(store, sha1, b"the wrong bytes")
    with pytest.raises(pa.CorruptContentError, match=sha1):
        store.open(sha1)
    [moved] = store.quarantine_dir.iterdir()
    assert moved.read_bytes() == b"the wrong bytes" and not store.has(sha1)


def test_fsck_checks_rows_and_quarantines_the_damaged_ones():
    store = _store()
    good = _inline(store, b"good")
    bad = _inline(store, b"bad")
    stored_objects.overwrite(store, bad, b"BAD")
    report = store.fsck()
    assert report.checked == 2 and [sha1 for sha1, _ in report.corrupt] == [bad]
    assert store.has(good) and not store.has(bad)


def test_remove_removes_a_row():
    store = _store()
    sha1 = _inline(store, b"to remove")
    assert store.remove(sha1) and not store.has(sha1) and not store.remove(sha1)


def test_a_cached_small_result_is_a_row_and_a_hit_in_another_process(tmp_path):
    @pa.cached
    def add(a, b):
        return {"sum": a + b}

    assert add(2, 3) == {"sum": 5}
    sha1 = pa.get(add.key(2, 3))
    assert stored_objects.is_row(_store(), sha1) and _object_files(_store()) == []
    assert pa.load_pickle(f"sha1://{sha1}") == {"sum": 5}
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        assert pool.apply(_load_in_child, (pa.get_config().database_dir, sha1)) == {"sum": 5}


def _load_in_child(database_dir, sha1):
    pa.set_config(database_path=str(database_dir))
    return pa.load_pickle(f"sha1://{sha1}")


def _store_many(directory: str, start: int, count: int) -> list[str]:
    store = ContentStore(directory)
    return [_inline(store, f"object {i % 50}".encode()) for i in range(start, start + count)]


def test_processes_storing_rows_at_once_lose_nothing(tmp_path):
    directory = str(tmp_path / "content")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        results = pool.starmap(_store_many, [(directory, i * 100, 200) for i in range(3)])
    store = ContentStore(directory)
    expected = {hashlib.sha1(f"object {i}".encode()).hexdigest() for i in range(50)}
    assert set().union(*results) == expected == set(store.iter_objects())
    for sha1 in expected:
        assert store.read_row(sha1) is not None


def test_gc_removes_old_unreferenced_rows_and_keeps_young_and_referenced_ones(capsys):
    store = _store()
    loose = _inline(store, b"nobody refers to me")
    young = _inline(store, b"just stored")
    named = _inline(store, b"a pair names me")
    pa.set("k", named)
    for sha1 in (loose, named):
        stored_objects.age(store, sha1, 3 * 86400)
    report = gc.collect(pa.get_config())
    assert report.objects == 1 and report.object_bytes == len(b"nobody refers to me")
    assert not store.has(loose) and store.has(young) and store.has(named)


def test_eviction_removes_the_rows_of_the_entries_it_evicts():
    @pa.cached
    def value(i):
        return "v" * 2000 + str(i)

    with pa.config(max_size=10_000):
        for i in range(20):
            value(i)
    store = _store()
    kept = pa.entries()
    assert len(kept) < 20
    assert sorted(store.iter_objects()) == sorted(e.sha1 for e in kept)


def test_a_table_that_cannot_be_used_makes_the_object_a_file():
    store = _store()
    store.directory.mkdir(parents=True, exist_ok=True)
    (store.directory / FILENAME).mkdir()  # in the table's way
    sha1 = _inline(store, b"stored all the same")
    assert store.object_path(sha1).read_bytes() == b"stored all the same"


def test_an_unreadable_table_is_an_error_naming_it():
    store = _store()
    sha1 = _inline(store, b"kept in the table")
    store.small._local.connection.close()
    store.small._local.__dict__.clear()  # a new connection, to a damaged file
    for suffix in ("-wal", "-shm"):
        (store.directory / (FILENAME + suffix)).unlink(missing_ok=True)
    (store.directory / FILENAME).write_bytes(b"not a database" * 1000)
    with pytest.raises(pa.StoreUnavailableError, match=FILENAME):
        store.open(sha1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(0, INLINE_MAX // 3), min_size=0, max_size=6))
def test_any_chunking_gives_the_sha1_of_the_bytes_and_reads_back(sizes):
    store = _store()
    chunks = [os.urandom(n) for n in sizes]
    data = b"".join(chunks)
    sha1 = _inline(store, *chunks)
    assert sha1 == hashlib.sha1(data).hexdigest()
    assert stored_objects.is_row(store, sha1) == (len(data) <= INLINE_MAX)
    with store.open(sha1) as f:
        assert f.read() == data
    assert store.size(sha1) == len(data)


def test_the_table_is_made_only_when_a_small_object_is_stored():
    store = _store()
    pa.store_bytes(b"a plain file")
    assert not (store.directory / FILENAME).exists()
    assert not store.has("0" * 40)
    assert not (store.directory / FILENAME).exists()
    _inline(store, b"now a row")
    with sqlite3.connect(store.directory / FILENAME) as conn:
        assert conn.execute("SELECT count(*) FROM objects").fetchone()[0] == 1


def _statements_of_a_hit(call):
    """The SQL statements run on this thread's connections to the pairs (the one that writes them
    and the one that reads them with the rows) and to the small objects while ``call()`` runs."""
    seen = []
    kv = local_store(pa.get_config())
    connections = [kv._connection(), kv._local.objects_reader, _store().small._connection(create=True)]
    for connection in connections:
        connection.set_trace_callback(seen.append)
    try:
        call()
    finally:
        for connection in connections:
            connection.set_trace_callback(None)
    return seen


def test_a_hit_of_a_small_result_reads_its_pair_and_row_in_one_statement():
    @pa.cached
    def pair_of(a):
        return (a, a)

    pair_of(1)
    pair_of(1)  # the reader with the rows' table attached is opened at a first hit
    statements = _statements_of_a_hit(lambda: pair_of(1))
    # (a line "-- ..." is a statement run inside the one before: the version of the pairs read)
    assert [s for s in statements if not s.startswith("-- ")] == statements[:1]
    assert "objects" in statements[0] and "pairs" in statements[0] and "data_version" in statements[0]


def test_a_hit_of_a_key_hit_again_reads_only_whether_the_pairs_changed():
    @pa.cached
    def pair_of(a):
        return (a, a)

    for _ in range(3):
        pair_of(1)  # a miss; a hit; a hit that reads the pair with the version of the pairs
    pair_of(1)  # its row, loaded by itself, is kept beside the results loaded lately
    assert _statements_of_a_hit(lambda: pair_of(1)) == ["PRAGMA data_version"]
    assert pair_of(1) == (1, 1)


def test_a_pair_changed_by_another_process_is_read_again_at_the_next_hit(tmp_path):
    calls = []

    @pa.cached
    def tagged(a):
        calls.append(a)
        return [a, len(calls)]

    for _ in range(4):
        assert tagged(1) == [1, 1]  # kept: the hits read only the version of the pairs
    key, collection = tagged.key(1), pa.get_config().collection
    first = pa.get(key, collection=collection)
    assert _other_process_sets(key, collection, None) == ""  # forgotten elsewhere
    assert tagged(1) == [1, 2] and calls == [1, 1]
    for _ in range(3):
        assert tagged(1) == [1, 2]
    _other_process_sets(key, collection, first)  # pointed back at the first result elsewhere
    assert tagged(1) == [1, 1] and calls == [1, 1]


def _other_process_sets(key, collection, value):
    """Set (or with None, delete) the pair ``key`` in the local store from another process."""
    code = ("import sys, pairio as pa; pa.set_config(database_path=sys.argv[1]); "
            "pa.set(sys.argv[2], None if sys.argv[3] == '-' else sys.argv[3], sys.argv[4])")
    done = subprocess.run([sys.executable, "-c", code, str(pa.get_config().database_dir), key,
                           value or "-", collection], capture_output=True, text=True, check=True)
    return done.stderr


def test_a_damaged_row_read_with_its_pair_is_quarantined_and_the_call_recomputed():
    calls = []

    @pa.cached
    def listed(a):
        calls.append(a)
        return [a, "x"]

    assert listed(3) == [3, "x"] and listed(3) == [3, "x"] and calls == [3]
    store = _store()
    sha1 = pa.get(listed.key(3))
    stored_objects.overwrite(store, sha1, b"the wrong bytes")
    with pytest.warns(RuntimeWarning, match="corrupt"):
        assert listed(3) == [3, "x"]
    assert calls == [3, 3]
    [moved] = store.quarantine_dir.iterdir()
    assert moved.read_bytes() == b"the wrong bytes"
    assert listed(3) == [3, "x"] and calls == [3, 3]  # stored again, whole


def test_reading_a_pair_with_its_row_before_the_table_exists_makes_no_table():
    kv, store = local_store(pa.get_config()), _store()
    kv.set("c", "k" * 40, "0" * 40)
    assert kv.get_with_object("c", "k" * 40, store.small) == ("0" * 40, None)
    assert kv.get_with_object("c", "absent", store.small) == (None, None)
    assert not store.small.path.exists()
    sha1 = _inline(store, b"a row now")
    kv.set("c", "k" * 40, sha1)
    assert kv.get_with_object("c", "k" * 40, store.small) == (sha1, b"a row now")


def test_a_write_transaction_of_the_pairs_never_holds_up_the_writers_of_rows():
    kv, store = local_store(pa.get_config()), _store()
    sha1 = _inline(store, b"row")
    kv.set("c", "k" * 40, sha1)
    assert kv.get_with_object("c", "k" * 40, store.small) == (sha1, b"row")  # the table attached
    with kv.transaction(immediate=True):
        assert kv.get_with_object("c", "k" * 40, store.small) == (sha1, b"row")
        with sqlite3.connect(store.small.path, timeout=0.5) as other:  # raises if the table is locked
            other.execute("INSERT INTO objects (sha1, data, mtime) VALUES (?, ?, 0)", ("e" * 40, b"x"))
