"""Eviction within max_size: GreedyDual-Size-Frequency order, processes at once, readers and late pairs."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap
import time

import pytest

import pairio as pa
from pairio.cli import main
from pairio.deferred import drain_all
from pairio.kv import local_store
from pairio.lifecycle import eviction, records
from pairio.units import parse_size


def _entry(name: str, size: int, seconds: float, created: float | None = None) -> records.Entry:
    """A recorded result of ``size`` bytes that took ``seconds``: content, pair and record."""
    cfg = pa.get_config()
    sha1 = pa.content_store(cfg).put_bytes(name.encode().ljust(size, b"."))
    key = pa.key_string({"entry": name})
    pa.set(key, sha1)
    now = time.time() if created is None else created
    entry = records.Entry(collection=cfg.collection, key=key, function="test.step", sha1=sha1, objects=[],
                          code={}, version="", dependencies={}, arguments={}, summary={"name": name},
                          inputs=[], size=size, seconds=seconds, created=now, last_used=now, hits=0,
                          host="here", priority=0.0)
    records.add(local_store(cfg), entry)
    return entry


def _kept() -> set[str]:
    return {e.summary["name"] for e in pa.entries()}


def test_the_entries_kept_are_those_that_save_the_most_seconds_per_byte():
    # (size, seconds): value = seconds / size. A small result that took an hour outlives a
    # large one that took a second, and neither size nor cost alone gives this order.
    costs = {
        "small-hour": (1_000, 3600.0),      # 3.6
        "large-hour": (100_000, 3600.0),    # 0.036
        "small-second": (1_000, 1.0),       # 0.001
        "medium-minute": (20_000, 60.0),    # 0.003
        "large-second": (100_000, 1.0),     # 0.00001
        "tiny-instant": (100, 0.0001),      # 0.000001
    }
    for name, (size, seconds) in costs.items():
        _entry(name, size, seconds)
    total = sum(size for size, _ in costs.values())
    assert eviction.total_size(pa.get_config()) == total
    report = eviction.evict(pa.get_config(), max_size=140_000)
    # Lowest value first until at most 90% of the limit (126,000 bytes) remains.
    assert _kept() == {"small-hour", "large-hour", "small-second", "medium-minute"}
    assert report.entries == 2 and report.entry_bytes == 100_100 and report.objects == 2
    assert eviction.total_size(pa.get_config()) == 122_000 <= 140_000
    store = pa.content_store(pa.get_config())
    assert sorted(store.iter_objects()) == sorted(e.sha1 for e in pa.entries())
    assert all(pa.get(e.key) == e.sha1 for e in pa.entries())


def test_hits_raise_an_entrys_value_and_eviction_inflates_later_entries():
    a = _entry("a", 10_000, 1.0)
    _entry("b", 10_000, 1.0)
    for _ in range(3):
        records.hit(pa.get_config(), a.collection, a.key)
    drain_all()
    eviction.evict(pa.get_config(), max_size=15_000)
    assert _kept() == {"a"}
    with local_store(pa.get_config()).transaction() as connection:
        inflation = connection.execute("SELECT value FROM entry_totals WHERE name = 'inflation'").fetchone()[0]
    assert inflation == pytest.approx(1.0 / 10_000)
    # A new entry worth less than "a" per byte still starts above what was evicted: aged by L.
    c = _entry("c", 10_000, 0.5)
    assert records.get(local_store(pa.get_config()), c.collection, c.key).priority == pytest.approx(
        inflation + 0.5 / 10_000)


def test_a_pair_set_after_eviction_started_is_kept():
    _entry("old", 50_000, 0.001)
    later = _entry("later", 50_000, 0.0001, created=time.time() + 3600)  # recorded "after" the start
    eviction.evict(pa.get_config(), max_size=60_000)
    assert _kept() == {"later"}
    assert pa.get(later.key) == later.sha1


def test_content_a_reader_holds_open_is_left_in_place():
    held = _entry("held", 50_000, 0.001)
    _entry("other", 50_000, 0.01)
    path = pa.content_store(pa.get_config()).object_file(held.sha1)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        report = eviction.evict(pa.get_config(), max_size=60_000)
        assert report.entries == 1 and report.objects_in_use == 1 and os.path.exists(path)
    finally:
        os.close(fd)
    assert _kept() == {"other"}


def test_max_size_is_a_config_field_and_an_environment_variable(monkeypatch):
    assert pa.Config(max_size="50GB").max_size == 50 * 10**9
    assert pa.Config(max_size="512MiB").max_size == 512 * 2**20
    assert pa.Config(max_size=1000).max_size == 1000
    monkeypatch.setenv("PAIRIO_MAX_SIZE", "2kB")
    assert pa.reset_config().max_size == 2000
    monkeypatch.setenv("PAIRIO_MAX_SIZE", "lots")
    with pytest.raises(pa.ConfigurationError, match="PAIRIO_MAX_SIZE"):
        pa.reset_config()
    monkeypatch.delenv("PAIRIO_MAX_SIZE")
    with pytest.raises(pa.ConfigurationError, match="max_size"):
        pa.Config(max_size=-1)
    assert parse_size("1.5 GB") == 1_500_000_000


def test_pairio_evict_brings_the_store_within_a_size(capsys):
    for i in range(4):
        _entry(f"e{i}", 10_000, 1.0 + i)
    assert main(["evict", "25kB"]) == 0
    assert "evicted 2 entries" in capsys.readouterr().out
    assert _kept() == {"e2", "e3"}


WORKER = """
    import os, sys, time
    import pairio

    @pairio.cached
    def valuable(i):
        time.sleep(0.05)  # costly to compute, small to keep
        return ("valuable", i, b"v" * 1000)

    @pairio.cached
    def bulky(i):
        return ("bulky", i, bytes([i % 256]) * 50_000)  # cheap to compute, large to keep

    worker = int(sys.argv[1])
    for round in range(3):
        for i in range(8):
            assert valuable(i) == ("valuable", i, b"v" * 1000)
        for j in range(worker * 10, worker * 10 + 12):
            assert bulky(j) == ("bulky", j, bytes([j % 256]) * 50_000), "a wrong result"
    print("ok")
"""


def test_four_processes_writing_and_reading_keep_the_store_within_the_limit(tmp_path, monkeypatch):
    (tmp_path / "worker.py").write_text(textwrap.dedent(WORKER))
    limit = 400_000
    monkeypatch.setenv("PAIRIO_MAX_SIZE", str(limit))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [os.getcwd(), os.environ.get("PYTHONPATH")] if p)}
    workers = [subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), str(n)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(4)]
    for w in workers:
        out, err = w.communicate(timeout=300)
        assert w.returncode == 0 and out.strip() == "ok", err
    cfg = pa.reset_config()
    assert eviction.total_size(cfg) <= limit
    kept = pa.entries()
    assert sum(e.size for e in kept) <= limit
    # Every valuable result is kept: each saves 50 ms for ~1 kB; a bulky one a few us for 50 kB.
    assert sorted(e.summary["i"] for e in kept if e.function.endswith("valuable")) == [str(i) for i in range(8)]
    assert len(kept) < 8 + 4 * 12  # some bulky results were evicted
    store = pa.content_store(cfg)
    on_disk = sum(info.size for info in store.iter_object_infos())
    assert on_disk <= limit
    for e in kept:
        assert pa.get(e.key) == e.sha1 and store.has(e.sha1)
