"""The embedded SQLite store: errors naming the path, threads, and the store's own API."""

from __future__ import annotations

import sqlite3
import threading

import pytest

import pairio as pa
from pairio.kv import EmbeddedStore


def test_database_path_that_is_a_file_is_a_clear_error(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a directory")
    with pytest.raises(pa.StoreUnavailableError, match=f"{path}.*not a directory"):
        pa.get("k", database_path=str(path))


def test_database_path_that_cannot_be_created_names_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    path = blocker / "below-a-file"
    with pytest.raises(pa.StoreUnavailableError, match=str(path)) as info:
        pa.set("k", "v", database_path=str(path))
    assert isinstance(info.value, OSError)


def test_corrupt_database_is_a_clear_error_and_is_left_untouched(tmp_path):
    (tmp_path / "kv.sqlite3").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(pa.StoreUnavailableError, match="kv.sqlite3.*corrupt or not a pairio database"):
        pa.get("k", database_path=str(tmp_path))
    assert (tmp_path / "kv.sqlite3").read_bytes() == b"this is not sqlite" * 100


def test_store_reports_collections_and_counts(tmp_path):
    store = EmbeddedStore(tmp_path)
    store.set("a", "k1", "v")
    store.set("a", "k2", "v")
    store.set("b", "k1", "v")
    assert sorted(store.collections()) == ["a", "b"]
    assert store.count("a") == 2


def test_store_reopens_after_close(tmp_path):
    store = EmbeddedStore(tmp_path)
    store.set("c", "k", "v")
    store.close()
    assert store.get("c", "k") == "v"
    assert EmbeddedStore(tmp_path).get("c", "k") == "v"


def test_get_many_ignores_duplicate_keys(tmp_path):
    store = EmbeddedStore(tmp_path)
    store.set("c", "k", "v")
    assert store.get_many("c", ["k", "k", "x", "k"]) == {"k": "v"}
    assert store.get_many("c", []) == {}


def test_many_threads_set_and_get_at_once():
    errors = []

    def worker(n):
        try:
            for i in range(300):
                pa.set(f"t{n}-{i}", f"v{n}-{i}")
                pa.set("shared", f"v{n}-{i}")
                assert pa.get(f"t{n}-{i}") == f"v{n}-{i}"
                assert pa.get("shared").startswith("v")
        except Exception as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    found = pa.get_many([f"t{n}-{i}" for n in range(8) for i in range(300)])
    assert all(found[f"t{n}-{i}"] == f"v{n}-{i}" for n in range(8) for i in range(300))


def test_database_with_damaged_pages_is_reported_as_corrupt(tmp_path):
    store = EmbeddedStore(tmp_path)
    store.set_many("c", {f"key-{i}": "v" * 80 for i in range(2000)})
    store._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    with open(tmp_path / "kv.sqlite3", "r+b") as f:
        f.seek(2 * 4096)
        f.write(b"\xa5" * 4096 * 24)  # past the tables and indexes made before the pairs
    with pytest.raises(pa.StoreUnavailableError, match="kv.sqlite3.*corrupt"):
        EmbeddedStore(tmp_path).get_many("c", [f"key-{i}" for i in range(2000)])


def test_set_many_with_commits_the_pairs_and_the_other_rows_together_or_neither(tmp_path):
    store = EmbeddedStore(tmp_path)
    with store.transaction(immediate=True) as connection:
        connection.execute("CREATE TABLE beside (key TEXT PRIMARY KEY, n INTEGER NOT NULL CHECK (n > 0))")
    store.set("c", "gone", "old")
    store.set_many_with("c", {"k": "v"}, "INSERT INTO beside VALUES (?, ?)", [("k", 1)])
    store.set_many_with("c", {"k2": "v2", "gone": None}, "INSERT INTO beside VALUES (?, ?)", [("k2", 2), ("k3", 3)])
    store.set_many_with("c", {"k4": "v4"}, "INSERT INTO beside VALUES (?, ?)", [])
    assert store.get_many("c", ["k", "k2", "gone", "k4"]) == {"k": "v", "k2": "v2", "k4": "v4"}
    with pytest.raises(pa.StoreUnavailableError):  # the second row is refused: nothing of the call stays
        store.set_many_with("c", {"k5": "v5"}, "INSERT INTO beside VALUES (?, ?)", [("k5", 5), ("k6", 0)])
    with pytest.raises(pa.StoreUnavailableError):
        store.set_many_with("c", {"k": "new"}, "INSERT INTO nowhere VALUES (?, ?)", [("k", 1)])
    assert store.get_many("c", ["k", "k5"]) == {"k": "v"}
    with store.transaction() as connection:
        assert connection.execute("SELECT key, n FROM beside ORDER BY key").fetchall() == [
            ("k", 1), ("k2", 2), ("k3", 3)]
    store.set("c", "after", "ok")  # no transaction left open
    assert store.get("c", "after") == "ok"
    store.close()


def test_write_pairs_sets_and_deletes_one_pair_or_many_and_rolls_back_with_its_transaction(tmp_path):
    store = EmbeddedStore(tmp_path)
    store.set_many("c", {"a": "old", "b": "old", "gone": "old", "kept": "old"})
    with store.transaction(immediate=True) as connection:
        store.write_pairs(connection, "c", {"a": "new"})
    with store.transaction(immediate=True) as connection:
        store.write_pairs(connection, "c", {"gone": None})
    with store.transaction(immediate=True) as connection:
        store.write_pairs(connection, "c", {"b": "new", "kept": None, "fresh": "v", "never": None})
    assert store.get_many("c", ["a", "b", "gone", "kept", "fresh", "never"]) == {"a": "new", "b": "new", "fresh": "v"}
    for pairs in ({"a": "lost"}, {"a": None}, {"a": None, "b": "lost", "more": "lost"}):
        with pytest.raises(sqlite3.OperationalError), store.transaction(immediate=True) as connection:
            store.write_pairs(connection, "c", pairs)
            connection.execute("INSERT INTO nowhere VALUES (1)")  # a later statement fails
        assert store.get_many("c", ["a", "b", "more"]) == {"a": "new", "b": "new"}
    store.set("c", "after", "ok")  # no transaction left open
    assert store.get("c", "after") == "ok"
    store.close()
