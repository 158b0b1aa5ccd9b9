"""Issue 24: counts over time in the local store: per hour, collection and function, hits, misses,
seconds saved and computed, bytes up and down, kept 90 days; exact across processes and pool
workers; never written on the hit path."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import pytest

import pairio as pa
from pairio import deferred
from pairio.kv import local_store
from pairio.lifecycle import counts


def _store():
    """The local store, made (counts are never written where no store was made)."""
    store = local_store(pa.get_config())
    store.set("c", "made", "yes")
    return store


def _rows(home) -> list[tuple]:
    """The counts table as it is on disk, read past pairio (nothing flushed first)."""
    with sqlite3.connect(home / "kv.sqlite3") as connection:
        try:
            return connection.execute("SELECT * FROM counts ORDER BY hour, collection, function").fetchall()
        except sqlite3.OperationalError:
            return []


def test_hits_and_misses_are_counted_per_hour_function_and_collection(pairio_home):
    @pa.cached
    def slow(x):
        time.sleep(0.05)
        return x

    @pa.cached
    def fast(x):
        return x

    for x in range(3):
        slow(x)
    slow(0), slow(1), fast(1)
    with pa.config(collection="other"):
        fast(1)
    store = local_store(pa.get_config())
    rows = counts.read(store, time.time() - 3600)
    by_function = {r["function"].rsplit(".", 1)[-1]: r for r in rows}
    assert (by_function["slow"]["hits"], by_function["slow"]["misses"]) == (2, 3)
    assert (by_function["fast"]["hits"], by_function["fast"]["misses"]) == (0, 2)
    assert by_function["slow"]["seconds_computed"] >= 0.15
    # Saved: what computing took, minus what loading took, per hit.
    assert 0.05 < by_function["slow"]["seconds_saved"] <= by_function["slow"]["seconds_computed"]
    assert {r["hour"] for r in rows} == {counts.hour_of(time.time())}
    by_collection = {r["collection"]: r for r in counts.read(store, time.time() - 3600, by="collection")}
    assert (by_collection["default"]["misses"], by_collection["other"]["misses"]) == (4, 1)
    only_other = counts.read(store, time.time() - 3600, collection="other")
    assert [(r["function"].rsplit(".", 1)[-1], r["misses"]) for r in only_other] == [("fast", 1)]
    hourly = counts.read(store, time.time() - 3600, by=None)
    assert counts.totals(hourly)["hits"] == 2 and counts.totals(hourly)["misses"] == 5
    assert counts.totals(hourly)["hit_rate"] == pytest.approx(2 / 7)


def test_a_hit_writes_nothing_until_the_deferred_writer_runs(pairio_home):
    @pa.cached
    def f(x):
        return x

    f(1)
    deferred.drain_all()
    before = _rows(pairio_home)
    assert before and before[0][3:5] == (0, 1)  # hits, misses
    f(1)  # a hit: counted in memory only
    assert _rows(pairio_home) == before
    deferred.drain_all()
    assert _rows(pairio_home)[0][3:5] == (1, 1)


def test_counts_are_read_between_since_and_until_and_by_a_known_group(pairio_home):
    store = _store()
    now = time.time()
    counts.add(store, "c", "f", hits=1, at=now - 2 * 3600)
    counts.add(store, "c", "f", hits=2, at=now - 3600)
    counts.add(store, "c", "f", hits=4, at=now)
    counts.add(store, "c", "f", hits=8, at=now)  # the same hour: summed
    assert [r["hits"] for r in counts.read(store, now - 3600)] == [2, 12]
    assert [r["hits"] for r in counts.read(store, now - 3 * 3600, until=counts.hour_of(now))] == [1, 2]
    with pytest.raises(pa.PairioError, match="by must be one of function, collection"):
        counts.read(store, 0, by="host")


def test_hours_older_than_ninety_days_are_dropped(pairio_home):
    store = _store()
    now = time.time()
    counts.add(store, "c", "old", hits=1, at=now - counts.KEEP_S - 7200)
    counts.add(store, "c", "recent", hits=1, at=now - counts.KEEP_S + 7200)
    assert [r["function"] for r in counts.read(store, 0)] == ["recent"]


def test_bytes_moved_are_counted_with_the_call(pairio_home):
    store = _store()
    counts.add(store, "c", "f", misses=1, bytes_up=300)
    counts.add(store, "c", "f", hits=1, bytes_down=200)
    (row,) = counts.read(store, time.time() - 60)
    assert (row["bytes_up"], row["bytes_down"]) == (300, 200)


def test_the_directory_store_keeps_no_counts(pairio_home):
    with pa.config(store_backend="directory"):
        @pa.cached
        def f(x):
            return x

        f(1)
        f(1)
        assert counts.read(local_store(pa.get_config()), 0) == []


PROCESS = """
import sys
import pairio

@pairio.cached
def step(x):
    return x * 2

for round in range(2):
    for x in range(int(sys.argv[1]), int(sys.argv[1]) + 25):
        step(x)
"""


def test_counts_are_exact_under_four_concurrent_processes(pairio_home, tmp_path):
    script = tmp_path / "steps.py"
    script.write_text(PROCESS)
    # Overlapping keys: a key one process computes another may hit or compute too; every call counts once.
    procs = [subprocess.Popen([sys.executable, str(script), str(i * 10)], cwd=tmp_path) for i in range(4)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    rows = counts.read(local_store(pa.get_config()), time.time() - 3600)
    total = counts.totals(rows)
    assert total["hits"] + total["misses"] == 4 * 2 * 25
    assert total["misses"] >= 55  # 55 distinct keys, each computed at least once
    persistent = pa.memo.call_stats.read_persistent(pa.get_config().database_dir)
    assert sum(r["hits"] for r in persistent.values()) == total["hits"]


POOL = """
import json
import multiprocessing
import sys

import pairio


@pairio.cached
def square(x):
    return x * x


if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    with ctx.Pool(2) as pool:  # Pool.__exit__ terminates the workers
        print(json.dumps(pool.map(square, [1, 2, 3])))
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_counts_made_in_pool_workers_are_kept(pairio_home, tmp_path, method):
    script = tmp_path / "pool.py"
    script.write_text(POOL)
    for _ in range(2):  # three misses, then three hits
        done = subprocess.run([sys.executable, str(script), method], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == [1, 4, 9]
    total = counts.totals(counts.read(local_store(pa.get_config()), time.time() - 3600))
    assert (total["hits"], total["misses"]) == (3, 3)
