"""Table families registered with the embedded store: made once per database, upgraded in place."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading

import pytest

import pairio as pa
from pairio.kv import EmbeddedStore, embedded
from pairio.lifecycle import records

# A database as pairio made it while the embedded store kept the records' tables itself
# (the statements it stored in sqlite_master, PRAGMA user_version 1).
_MADE_BEFORE = (
    "CREATE TABLE pairs (collection TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, "
    "PRIMARY KEY (collection, key)) WITHOUT ROWID",
    "CREATE TABLE entries (collection TEXT NOT NULL, key TEXT NOT NULL, function TEXT NOT NULL, "
    "sha1 TEXT NOT NULL, objects TEXT NOT NULL DEFAULT '[]', code TEXT NOT NULL DEFAULT '{}', "
    "version TEXT NOT NULL DEFAULT '', dependencies TEXT NOT NULL DEFAULT '{}', "
    "arguments TEXT NOT NULL DEFAULT '{}', summary TEXT NOT NULL DEFAULT '{}', "
    "inputs TEXT NOT NULL DEFAULT '[]', size INTEGER NOT NULL, seconds REAL NOT NULL, "
    "created REAL NOT NULL, last_used REAL NOT NULL, hits INTEGER NOT NULL DEFAULT 0, "
    "host TEXT NOT NULL DEFAULT '', priority REAL NOT NULL, PRIMARY KEY (collection, key)) WITHOUT ROWID",
    "CREATE INDEX entries_by_function ON entries (function, created)",
    "CREATE INDEX entries_by_created ON entries (created)",
    "CREATE INDEX entries_by_priority ON entries (priority)",
    "CREATE INDEX entries_by_sha1 ON entries (sha1)",
    "CREATE TABLE entry_totals (name TEXT PRIMARY KEY, value REAL NOT NULL)",
    "INSERT INTO entry_totals (name, value) VALUES ('size', 0), ('inflation', 0)",
    "CREATE TRIGGER entries_size_insert AFTER INSERT ON entries BEGIN "
    "UPDATE entry_totals SET value = value + NEW.size WHERE name = 'size'; END",
    "CREATE TRIGGER entries_size_delete AFTER DELETE ON entries BEGIN "
    "UPDATE entry_totals SET value = value - OLD.size WHERE name = 'size'; END",
    "CREATE TRIGGER entries_size_update AFTER UPDATE OF size ON entries BEGIN "
    "UPDATE entry_totals SET value = value - OLD.size + NEW.size WHERE name = 'size'; END",
    "INSERT INTO pairs VALUES ('default', 'k', 'v')",
    "INSERT INTO entries (collection, key, function, sha1, size, seconds, created, last_used, priority) "
    "VALUES ('default', 'k', 'mod.f', 'ab', 7, 0.5, 1.0, 1.0, 1.0)",
    "PRAGMA user_version = 1",
)


@pytest.fixture
def registry():
    """The registered families, restored after the test."""
    families = dict(embedded._schemas.families)
    yield embedded._schemas
    embedded._schemas.families = families
    embedded._schemas.generation += 1


def _tables(path) -> list[tuple[str, str]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("SELECT type, name FROM sqlite_master ORDER BY name").fetchall()
    finally:
        connection.close()


def test_a_database_made_before_families_were_registered_opens_unchanged(pairio_home):
    pairio_home.mkdir(parents=True)
    old = sqlite3.connect(pairio_home / "kv.sqlite3", isolation_level=None)
    for statement in _MADE_BEFORE:
        old.execute(statement)
    old.close()
    before = _tables(pairio_home / "kv.sqlite3")
    assert pa.get("k") == "v"
    [entry] = records.entries(EmbeddedStore(pairio_home))
    assert (entry.function, entry.size) == ("mod.f", 7)
    with EmbeddedStore(pairio_home).transaction() as connection:  # kept by the old triggers
        assert connection.execute("SELECT value FROM entry_totals WHERE name = 'size'").fetchone()[0] == 7
    after = _tables(pairio_home / "kv.sqlite3")
    # Its tables unchanged; the families registered since (the hourly counts, the server's records)
    # only add theirs.
    assert set(before) <= set(after)
    added = {name for _, name in set(after) - set(before)}
    assert added <= {"schema_versions", "counts", "server_records", "server_records_by_created"}
    connection = sqlite3.connect(pairio_home / "kv.sqlite3")
    assert connection.execute("PRAGMA user_version").fetchone()[0] == 1


def test_a_family_registered_later_is_made_in_an_open_store_once(tmp_path, registry):
    store = EmbeddedStore(tmp_path)
    store.set("c", "k", "v")
    embedded.register_schema("test_notes", [["CREATE TABLE notes (n TEXT)"], ["CREATE INDEX notes_n ON notes (n)"]])
    assert store.get("c", "k") == "v"
    names = {name for _, name in _tables(tmp_path / "kv.sqlite3")}
    assert {"notes", "notes_n", "schema_versions", "entries"} <= names
    with store.transaction() as connection:
        assert embedded._version(connection, "test_notes") == 2
        assert embedded._version(connection, "records") == 1
    EmbeddedStore(tmp_path).get("c", "k")  # opened again: nothing to run (a second CREATE TABLE would fail)


def test_threads_opening_a_new_store_at_once_make_each_family_once(tmp_path, registry):
    embedded.register_schema("test_notes", [["CREATE TABLE notes (n TEXT)"]])
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def open_store() -> None:
        start.wait()
        try:
            EmbeddedStore(tmp_path / "db").set("c", threading.current_thread().name, "v")
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert EmbeddedStore(tmp_path / "db").count("c") == 6


def test_only_one_family_keeps_its_version_in_user_version(registry):
    with pytest.raises(pa.ConfigurationError, match="user_version"):
        embedded.register_schema("test_other", [], in_user_version=True)


def test_a_new_database_holds_the_records_tables(tmp_path):
    EmbeddedStore(tmp_path).set("c", "k", "v")
    names = {name for _, name in _tables(tmp_path / "kv.sqlite3")}
    assert {"pairs", "entries", "entry_totals", "entries_size_insert"} <= names


_OPEN = """
import sys
import pairio  # registers the records' tables
from pairio.kv import EmbeddedStore
EmbeddedStore(sys.argv[1]).set("c", sys.argv[2], "v")
"""


def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path):
    children = [subprocess.Popen([sys.executable, "-c", _OPEN, str(tmp_path), f"k{i}"]) for i in range(4)]
    assert [child.wait(timeout=60) for child in children] == [0, 0, 0, 0]
    store = EmbeddedStore(tmp_path)
    assert store.count("c") == 4
    assert {"entries", "entry_totals"} <= {name for _, name in _tables(tmp_path / "kv.sqlite3")}

