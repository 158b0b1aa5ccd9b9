"""Corrupt and lost databases (issue 21, item 5): real damaged files, never a mock.

``pairio fsck`` checks the SQLite databases and names the damage (exit 7); ``--repair`` salvages
what can be read into a new database and keeps the damaged one aside; a database that is empty or
missing while its content holds objects is an error on open, never a silently empty store.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

PAIRS = 3000
RESULTS = 200

POPULATE = f"""
import pairio as pa

@pa.cached
def step(i):
    return {{"i": i, "pad": "x" * 100}}

pa.set_many({{f"k{{i}}": f"v{{i}}" for i in range({PAIRS})}})
for i in range({RESULTS}):
    step(i)
pa.store_text("an object " * 50)
"""


def pairio(home: Path, *args: str, code: str | None = None) -> subprocess.CompletedProcess:
    """``pairio ARGS`` (or ``python -c CODE``) in a process of its own on the store ``home``."""
    env = {**os.environ, "PAIRIO_DB_PATH": str(home)}
    command = [sys.executable, "-c", code] if code is not None else [sys.executable, "-m", "pairio", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def home(tmp_path) -> Path:
    home = tmp_path / "store"
    done = pairio(home, code=POPULATE)
    assert done.returncode == 0, done.stderr
    return home


def damage(path: Path, how: str) -> None:
    size = path.stat().st_size
    if how == "half truncated":
        os.truncate(path, size // 2)
    elif how == "zeroed header":
        with open(path, "r+b") as f:
            f.write(bytes(100))
    elif how == "flipped pages":
        rng = random.Random(21)
        with open(path, "r+b") as f:
            for page in range(3, size // 4096, 7):
                f.seek(page * 4096 + 200)
                f.write(rng.randbytes(300))
    elif how == "0 bytes":
        os.truncate(path, 0)
    elif how == "missing":
        os.remove(path)
    else:
        raise AssertionError(how)


def pairs_found(home: Path) -> int:
    code = f"import pairio as pa; print(len(pa.get_many([f'k{{i}}' for i in range({PAIRS})])))"
    done = pairio(home, code=code)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.mark.parametrize("how", ["half truncated", "zeroed header", "flipped pages", "0 bytes"])
def test_fsck_names_a_damaged_pairs_database_and_repair_salvages_it(home, how):
    database = home / "kv.sqlite3"
    damage(database, how)
    found = pairio(home, "fsck")
    assert found.returncode == 7, found.stdout + found.stderr
    said = found.stdout + found.stderr
    assert str(database) in said
    assert {"half truncated": "malformed", "zeroed header": "header", "flipped pages": "quick_check",
            "0 bytes": "empty (0 bytes)"}[how] in said
    as_json = json.loads(pairio(home, "fsck", "--json").stdout)
    assert [d["path"] for d in as_json["databases"]["damaged"]] == [str(database)]

    repaired = pairio(home, "fsck", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "kept as" in repaired.stdout or how == "0 bytes"
    asides = sorted(home.glob("kv.sqlite3.damaged-*"))
    assert [p for p in asides if not p.name.endswith("-wal")], list(home.iterdir())
    assert any(str(p) in repaired.stdout for p in asides)
    again = pairio(home, "fsck")
    assert again.returncode == 0, again.stdout + again.stderr
    found = pairs_found(home)
    if how == "zeroed header":
        assert found == PAIRS  # the rest of the file is intact: everything is read back
    elif how == "half truncated":
        assert found > PAIRS // 2
    elif how == "flipped pages":
        assert 0 < found <= PAIRS
    listed = pairio(home, "ls")
    assert listed.returncode == 0, listed.stderr


def test_repair_drops_records_whose_pair_was_lost_and_recounts_the_totals(home):
    damage(home / "kv.sqlite3", "flipped pages")
    assert pairio(home, "fsck", "--repair").returncode == 0
    import sqlite3

    with sqlite3.connect(home / "kv.sqlite3") as c:
        orphans = c.execute("SELECT count(*) FROM entries e WHERE NOT EXISTS (SELECT 1 FROM pairs p "
                            "WHERE p.collection = e.collection AND p.key = e.key)").fetchone()[0]
        total = c.execute("SELECT value FROM entry_totals WHERE name = 'size'").fetchone()[0]
        size = c.execute("SELECT coalesce(sum(size), 0) FROM entries").fetchone()[0]
    assert orphans == 0 and total == size


def test_fsck_finds_records_without_their_pairs(home):
    import sqlite3

    with sqlite3.connect(home / "kv.sqlite3") as c:
        c.execute("DELETE FROM pairs WHERE key IN (SELECT key FROM entries LIMIT 3)")
    found = pairio(home, "fsck")
    assert found.returncode == 7 and "3 record(s) of cached results have no pair" in found.stderr


@pytest.mark.parametrize("how", ["flipped pages", "zeroed header"])
def test_a_damaged_small_objects_database_is_named_and_repaired(home, how):
    small = home / "content" / "small-objects.sqlite3"
    code = "import pairio as pa\nfor i in range(400): pa.store_text(f'small object {i} ' * 200)"
    assert pairio(home, code=code).returncode == 0
    checkpoint = "import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute('PRAGMA wal_checkpoint(TRUNCATE)')"
    subprocess.run([sys.executable, "-c", checkpoint, str(small)], check=True)
    damage(small, how)
    found = pairio(home, "fsck")
    assert found.returncode == 7 and str(small) in found.stderr
    repaired = pairio(home, "fsck", "--repair")
    assert repaired.returncode in (0, 7), repaired.stdout + repaired.stderr  # 7: a corrupt object quarantined
    assert "rows of objects" in repaired.stdout
    assert pairio(home, "fsck").returncode == 0


@pytest.mark.parametrize("how", ["0 bytes", "missing"])
def test_a_lost_database_beside_objects_is_an_error_naming_both_never_an_empty_store(home, how):
    damage(home / "kv.sqlite3", how)
    for args in (("get", "k1"), ("set", "k1", "x"), ("ls",)):
        done = pairio(home, *args)
        assert done.returncode != 0, (args, done.stdout)
        assert str(home / "kv.sqlite3") in done.stderr and str(home / "content") in done.stderr
        assert "pairio fsck --repair" in done.stderr
    assert not (home / "kv.sqlite3").exists() or (home / "kv.sqlite3").stat().st_size == 0  # nothing made
    repaired = pairio(home, "fsck", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert pairio(home, "set", "k1", "x").returncode == 0  # a new database, by choice


def test_a_brand_new_store_and_one_with_only_content_still_work(tmp_path):
    fresh = tmp_path / "fresh"
    assert pairio(fresh, "set", "k", "v").returncode == 0
    assert pairio(fresh, "get", "k").stdout.strip() == "v"
    only_content = tmp_path / "only-content"
    assert pairio(only_content, code="import pairio as pa; pa.store_text('x' * 100)").returncode == 0
    assert not (only_content / "kv.sqlite3").exists()
    assert pairio(only_content, "set", "k", "v").returncode == 0  # no database was ever made: a new one
    assert pairio(only_content, "fsck").returncode == 0


def test_many_processes_making_the_database_beside_objects_at_once_never_see_it_empty(tmp_path):
    # A 0-byte database beside objects is refused: so the database must never be seen at 0 bytes
    # while one process makes it (it is made whole under a temporary name and linked into place).
    code = "import pairio as pa, os; pa.set(f'k{os.getpid()}', 'v')"
    for trial in range(3):
        home = tmp_path / f"racy-{trial}"
        assert pairio(home, code="import pairio as pa; pa.store_text('x' * 100)").returncode == 0
        env = {**os.environ, "PAIRIO_DB_PATH": str(home)}
        workers = [subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
                   for _ in range(8)]
        errors = [w.communicate(timeout=120)[1] for w in workers]
        assert [w.returncode for w in workers] == [0] * 8, errors
        assert pairio(home, "fsck").returncode == 0
        assert not list(home.glob("kv.sqlite3.new-*"))
