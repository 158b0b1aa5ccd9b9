"""Table families registered with the embedded store: made once per database, versioned, and
databases made before they were registered read and upgrade in place."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

import pairio as pa
from pairio.kv import EmbeddedStore, embedded
from pairio.lifecycle import schema

# The database today's pairio made before families were registered: pairs, then step 1 of the
# records (kept verbatim here, so that a change to the registered steps cannot hide a break).
_PAIRS = ("CREATE TABLE IF NOT EXISTS pairs (collection TEXT NOT NULL, key TEXT NOT NULL, "
          "value TEXT NOT NULL, PRIMARY KEY (collection, key)) WITHOUT ROWID")


def _database_made_before(directory, with_records: bool = True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(directory / "kv.sqlite3", isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute(_PAIRS)
    if with_records:
        for statement in schema.MIGRATIONS[0]:
            connection.execute(statement)
        connection.execute("PRAGMA user_version = 1")
    connection.execute("INSERT INTO pairs VALUES ('default', 'k', 'v')")
    connection.close()


def _tables(path) -> set[str]:
    with sqlite3.connect(path) as connection:
        return {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}


def test_a_database_made_before_families_reads_and_keeps_its_layout(pairio_home):
    _database_made_before(pairio_home)
    before = _tables(pairio_home / "kv.sqlite3")
    assert pa.get("k") == "v"

    @pa.cached
    def double(n):
        return 2 * n

    assert double(4) == 8 and double(4) == 8
    assert len(pa.entries()) == 1
    assert _tables(pairio_home / "kv.sqlite3") == before  # no new table: same names, same columns
    version = sqlite3.connect(pairio_home / "kv.sqlite3").execute("PRAGMA user_version").fetchone()[0]
    assert version == len(schema.MIGRATIONS)


def test_a_new_database_holds_the_records_tables(tmp_path):
    EmbeddedStore(tmp_path).set("c", "k", "v")
    assert {"pairs", "entries", "entry_totals", "entries_size_insert"} <= _tables(tmp_path / "kv.sqlite3")


def test_a_family_registered_later_is_made_in_open_stores_once(tmp_path, monkeypatch):
    store = EmbeddedStore(tmp_path)
    store.set("c", "k", "v")
    monkeypatch.setitem(embedded._schemas.families, "notes", ())
    monkeypatch.setattr(embedded._schemas, "generation", embedded._schemas.generation)
    embedded.register_schema("notes", [["CREATE TABLE notes (text TEXT)"],
                                       ["CREATE INDEX notes_by_text ON notes (text)"]])
    assert store.get("c", "k") == "v"  # the open connection makes the new tables first
    assert {"notes", "notes_by_text", "schema_versions"} <= _tables(tmp_path / "kv.sqlite3")
    store.close()
    assert EmbeddedStore(tmp_path).get("c", "k") == "v"  # not made twice (no IF NOT EXISTS above)
    with sqlite3.connect(tmp_path / "kv.sqlite3") as connection:
        assert connection.execute("SELECT version FROM schema_versions WHERE family = 'notes'").fetchone() == (2,)
        assert connection.execute("PRAGMA user_version").fetchone()[0] == len(schema.MIGRATIONS)


def test_only_one_family_keeps_the_user_version(monkeypatch):
    with pytest.raises(pa.ConfigurationError, match="user_version"):
        embedded.register_schema("other", [], in_user_version=True)


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
    assert {"entries", "entry_totals"} <= _tables(tmp_path / "kv.sqlite3")


def test_kv_imports_no_layer_above_it():
    import ast
    from pathlib import Path

    import pairio.kv

    above = {"content", "lifecycle", "memo", "server", "cli"}
    found = []
    for path in Path(pairio.kv.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module:
                if node.module.split(".")[0] in above:
                    found.append(f"{path.name}: from ..{node.module}")
    assert found == []
