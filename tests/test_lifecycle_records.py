"""Records beside each cached result: what ls, show, entries, forget and clear see."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

import pairio as pa
from pairio.cli import main
from pairio.kv import local_store
from pairio.lifecycle import records
from pairio.memo.decorator import seconds_key


@pa.cached
def smooth(signal, width=5):
    return np.convolve(signal, np.ones(width) / width, mode="same")


@pa.cached
def label(name: str):
    return name.upper() * 100


def test_a_miss_records_function_digests_summary_size_seconds_and_host():
    signal = np.arange(1000, dtype=float)
    smooth(signal, width=3)
    [e] = pa.entries()
    explained = smooth.explain(signal, width=3)
    assert e.function == smooth.name and e.key == explained["key"]
    assert e.code["digest"] == explained["code"]["digest"]
    assert e.arguments == explained["arguments"]
    assert e.dependencies["numpy"] == np.__version__
    assert e.summary == {"signal": "ndarray float64 (1000,)", "width": "3"}
    assert e.sha1 == pa.get(e.key) and e.size == os.path.getsize(pa.content_store(pa.get_config()).path(e.sha1))
    assert e.seconds > 0 and e.hits == 0 and e.host == socket.gethostname()
    assert abs(e.created - time.time()) < 600 and e.last_used == e.created


def test_a_record_and_its_hits_are_queued_in_memory_and_written_together():
    label("a")
    for _ in range(5):
        label("a")
    assert pa.get(label.key("a")) is not None  # the pair is written at once
    with local_store(pa.get_config()).transaction() as connection:
        written = connection.execute("SELECT count(*) FROM entries").fetchone()[0]
    assert written == 0  # not yet: neither a miss nor a hit waits for the table
    [e] = pa.entries()  # listing writes what is pending first
    assert e.hits == 5 and e.last_used >= e.created


def test_ls_lists_newest_first_with_filters_and_totals(capsys):
    label("old")
    time.sleep(0.01)
    label("new")
    smooth(np.zeros(1000))
    names = [e.summary.get("name") for e in pa.entries(label)]
    assert names == ["'new'", "'old'"]
    assert [e.function for e in pa.entries("test_lifecycle_records.*")][0] == smooth.name
    assert len(label.entries()) == 2 and len(smooth.entries()) == 1
    assert pa.entries(newer_than="1h", function="label") == pa.entries("label")
    assert pa.entries(older_than="1h") == []
    assert {e.function for e in pa.entries(min_size=2000)} == {smooth.name}
    assert main(["ls", "label"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "'new'" in out[1] and "'old'" in out[2] and out[-1].startswith("2 entries,")
    assert main(["ls", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["totals"]["count"] == 3 and listed["totals"]["size"] == sum(e["size"] for e in listed["entries"])


def test_show_by_key_prefix_and_by_uri(capsys):
    label("x")
    [e] = pa.entries()
    assert main(["show", e.key[:10]]) == 0
    out = capsys.readouterr().out
    assert e.key in out and "name = 'x'" in out
    assert main(["show", e.uri, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["key"] == e.key
    assert main(["show", "abcdef"]) == 1
    assert main(["show", "not-a-key"]) == 2


def test_clear_and_forget_remove_a_functions_pairs_and_records(capsys):
    for name in "abc":
        label(name)
    smooth(np.zeros(5))
    [e] = smooth.entries()
    assert label.clear() == 3
    assert not label.is_cached("a") and pa.entries("label") == []
    assert main(["forget", "smooth", "--older-than", "30d"]) == 0
    assert "forgot 0 entries" in capsys.readouterr().out
    assert main(["forget", "smooth"]) == 0
    assert "forgot 1 entry" in capsys.readouterr().out
    assert pa.get(e.key) is None and pa.get(seconds_key(e.key)) is None and pa.entries() == []


def test_a_database_made_before_records_is_migrated_and_keeps_its_pairs(pairio_home):
    pairio_home.mkdir(parents=True)
    old = sqlite3.connect(pairio_home / "kv.sqlite3")
    old.execute("CREATE TABLE pairs (collection TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, "
                "PRIMARY KEY (collection, key)) WITHOUT ROWID")
    old.execute("INSERT INTO pairs VALUES ('default', 'k', 'v')")
    old.commit()
    old.close()
    assert pa.get("k") == "v"
    label("y")
    assert len(pa.entries()) == 1
    version = sqlite3.connect(pairio_home / "kv.sqlite3").execute("PRAGMA user_version").fetchone()[0]
    assert version == 1


def test_bad_filters_name_the_argument():
    with pytest.raises(pa.ConfigurationError, match="older_than"):
        pa.entries(older_than="yesterday")
    with pytest.raises(pa.ConfigurationError, match="min_size"):
        pa.entries(min_size="lots")


def test_a_result_that_refers_to_files_records_them_and_their_size(tmp_path):
    data = tmp_path / "data.bin"
    data.write_bytes(b"z" * 5000)

    @pa.cached
    def keep(n):
        return {"n": n, "file": data}

    keep(1)
    [e] = pa.entries()
    assert len(e.objects) == 1 and e.size > 5000
    assert records.find(local_store(pa.get_config()), e.objects[0])[0].key == e.key


_CHILD = """
import os, sys
import pairio as pa

@pa.cached
def double(x):
    return 2 * x

double(21)
print(double.key(21), flush=True)
if sys.argv[1] == "killed":
    os.kill(os.getpid(), 9)  # no exit handlers: the queued record dies with the process
"""


@pytest.mark.parametrize("ending", ["exits", "killed"])
def test_a_record_queued_by_a_process_is_written_when_it_exits_and_only_the_record_is_lost_if_it_is_killed(
        tmp_path, ending):
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    done = subprocess.run([sys.executable, str(script), ending], capture_output=True, text=True)
    key = done.stdout.strip()
    assert len(key) == 40, done.stderr
    sha1 = pa.get(key)
    assert sha1 is not None and pa.load_pickle(f"sha1://{sha1}") == 42  # the pair and content: at once
    assert [e.key for e in pa.entries()] == ([key] if ending == "exits" else [])


def test_with_max_size_the_record_is_written_with_the_pair():
    with pa.config(max_size=10 << 20):
        label("bounded")
    with sqlite3.connect(local_store(pa.get_config()).path) as conn:
        assert conn.execute("SELECT count(*) FROM entries").fetchone()[0] == 1
