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


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pairio", *args], capture_output=True, text=True, timeout=60)


def test_stats_since_and_by_print_the_counts_grouped(pairio_home):
    @pa.cached
    def clean(x):
        time.sleep(0.02)
        return x

    clean(1), clean(2), clean(1)
    with pa.config(collection="other"):
        clean(1)
    deferred.drain_all()
    done = _cli("stats", "--since", "90m", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["by"] == "function"
    (group,) = answer["groups"]
    assert group["function"].endswith("clean") and (group["hits"], group["misses"]) == (1, 3)
    assert answer["totals"]["hit_rate"] == pytest.approx(0.25)
    answer = json.loads(_cli("stats", "--by", "collection", "--json").stdout)  # --since defaults to 7d
    assert {g["collection"]: g["misses"] for g in answer["groups"]} == {"default": 2, "other": 1}
    text = _cli("stats", "--since", "36h").stdout
    assert "hit rate" in text and "25%" in text and "total" in text


@pytest.mark.parametrize(("args", "message"), [
    (["stats", "--since", "7x"], "--since must be an age such as 30d"),
    (["stats", "--since=-1d"], "--since must be an age such as 30d"),
    (["stats", "--by", "host"], "argument --by: invalid choice: 'host'"),
    (["stats", "--clear", "--since", "1d"], "--clear resets this store's totals"),
    (["ls", "--sort", "colour"], "argument --sort: invalid choice: 'colour'"),
    (["ls", "--limit", "0"], "--limit must be at least 1"),
])
def test_bad_values_name_the_option(pairio_home, args, message):
    done = _cli(*args)
    assert done.returncode == 2
    assert message in done.stderr


def test_ls_sorts_by_size_seconds_hits_or_created(pairio_home):
    @pa.cached
    def make(n, pause):
        time.sleep(pause)
        return b"x" * n

    make(10, 0.05), make(5000, 0.0), make(100, 0.02)
    make(100, 0.02), make(100, 0.02), make(10, 0.05)
    deferred.drain_all()

    def listed(*args: str) -> list[int]:
        done = _cli("ls", "--json", *args)
        assert done.returncode == 0, done.stderr
        return [e["size"] for e in json.loads(done.stdout)["entries"]]

    sizes = {e.size: e for e in pa.entries()}
    small, large, middle = sorted(sizes)[0], sorted(sizes)[2], sorted(sizes)[1]
    assert listed("--sort", "size") == [large, middle, small]
    assert listed("--sort", "seconds") == [small, middle, large]
    assert listed("--sort", "hits") == [middle, small, large]
    assert listed("--sort", "created") == listed() == [middle, large, small]
    assert listed("--sort", "size", "--limit", "1") == [large]
    assert [e.size for e in pa.entries(sort="hits")] == [middle, small, large]
    with pytest.raises(pa.PairioError, match="sort must be one of created, size, seconds, hits"):
        pa.entries(sort="colour")
