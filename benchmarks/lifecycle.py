"""Living with a large cache: pairio's records, ls, gc and eviction beside diskcache, in one run.

Measured (a fresh temporary directory on disk, not tmpfs; --dir to choose):

1. the hit of a small cached call ``f(3, 4.5, 'abc')``, median microseconds, with pairio's
   recording of last use and lineage (``after``) and with it switched off (``before``: the hook
   replaced by a no-op), beside diskcache's memoize with eviction_policy
   'least-recently-stored' (no write on a hit) and 'least-recently-used' (a write per hit).
   Target: after/before close to 1.
2. a store of --entries (default 100,000) cached results (real content objects of 100 to 4,000
   bytes, pairs and records), then, in seconds:
   - ``pairio ls`` (the table, to /dev/null) and ``pairio ls --json``;
   - ``pairio gc --dry-run`` and ``pairio gc`` with a tenth of the objects unreferenced;
   - one eviction pass that halves the store (``max_size`` = half the total);
   beside diskcache with the same number of entries of the same sizes: counting and listing its
   keys with their sizes, and one ``cull()`` after halving its size_limit.

Medians over --rounds rounds (default 5) for 1; 2 is one round (it rebuilds 100,000 files).
Run: python benchmarks/lifecycle.py [--entries N] [--rounds N] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import default_dir, timed

import pairio as pa
from pairio.cli import main as cli
from pairio.kv import local_store
from pairio.lifecycle import calls as lifecycle_calls
from pairio.lifecycle import eviction, gc, records


def small(a: int, b: float, c: str) -> float:
    return a * b + len(c)


# --- 1. the hit, with and without recording ------------------------------------------------------


def hit_us(f, calls: int) -> float:
    f(3, 4.5, "abc")
    start = time.perf_counter()
    for _ in range(calls):
        f(3, 4.5, "abc")
    return (time.perf_counter() - start) / calls * 1e6


def bench_hits(root: Path, rounds: int, calls: int) -> dict[str, float]:
    import diskcache

    results: dict[str, list[float]] = {"pairio after": [], "pairio before": [],
                                       "diskcache LRS": [], "diskcache LRU": []}
    real_hit = lifecycle_calls.count_hit
    for r in range(rounds):
        with pa.config(database_path=str(root / f"hits-{r}")):
            f = pa.cached(small)
            results["pairio after"].append(hit_us(f, calls))
            lifecycle_calls.count_hit = lambda *args: None  # the decorator calls it through the module
            try:
                results["pairio before"].append(hit_us(f, calls))
            finally:
                lifecycle_calls.count_hit = real_hit
        for policy, label in (("least-recently-stored", "diskcache LRS"), ("least-recently-used", "diskcache LRU")):
            cache = diskcache.Cache(str(root / f"dc-{policy}-{r}"), eviction_policy=policy)
            results[label].append(hit_us(cache.memoize()(small), calls))
            cache.close()
    return {k: statistics.median(v) for k, v in results.items()}


# --- 2. a store of many entries -------------------------------------------------------------------


def build_pairio(root: Path, n: int, seed: int = 0) -> pa.Config:
    """n cached results: content objects, pairs and records, written the fast way (one transaction)."""
    cfg = pa.get_config().replace(database_path=str(root / "pairio"))
    store = pa.content_store(cfg)
    kv = local_store(cfg)
    rng = random.Random(seed)
    now = time.time()
    rows, pairs = [], []
    for i in range(n):
        size = rng.randint(100, 4000)
        with store.writer(durable=False) as w:  # fsync'd by no one: the benchmark only reads them back
            w.write(i.to_bytes(8, "little") * (size // 8))
        sha1 = w.sha1
        key = pa.key_string({"bench": i})
        seconds = rng.expovariate(1.0)
        created = now - rng.uniform(0, 90 * 86400)
        entry = records.Entry(collection="default", key=key, function=f"bench.step{i % 20}", sha1=sha1, objects=[],
                              code={"digest": "0" * 40}, version="", dependencies={"numpy": "2.0"},
                              arguments={"i": "0" * 40}, summary={"i": str(i)}, inputs=[], size=size // 8 * 8,
                              seconds=seconds, created=created, last_used=created, hits=rng.randint(0, 5),
                              host="bench", priority=0.0)
        rows.append(entry)
        if i % 10:  # a tenth of the objects keep no pair: gc's work
            pairs.append((key, sha1))
    kv.set_many("default", dict(pairs))
    records_sql = records._INSERT
    with kv.transaction(immediate=True) as connection:
        connection.executemany(records_sql, [
            [json.dumps(getattr(e, c)) if c in records._JSON_COLUMNS else getattr(e, c) for c in records._COLUMNS[:-1]]
            + [(e.hits + 1) * e.seconds / e.size] for i, e in enumerate(rows) if i % 10])
    # Make every object older than gc's grace period.
    old = now - 2 * 86400
    for sha1 in store.iter_objects():
        os.utime(store.object_file(sha1), (old, old))
    os.sync()  # so that writing back the build does not slow what is measured
    return cfg


def build_diskcache(root: Path, n: int, seed: int = 0):
    import diskcache

    rng = random.Random(seed)
    cache = diskcache.Cache(str(root / "diskcache"), size_limit=2**40, eviction_policy="least-recently-used",
                            cull_limit=0)
    for i in range(n):
        size = rng.randint(100, 4000)
        rng.expovariate(1.0)
        rng.uniform(0, 1)
        rng.randint(0, 5)
        cache.set(("bench", i), i.to_bytes(8, "little") * (size // 8))
    os.sync()
    return cache


def quiet(argv: list[str]) -> float:
    with contextlib.redirect_stdout(io.StringIO()):
        return timed(lambda: cli(argv))


def bench_store(root: Path, n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    cfg = build_pairio(root, n)
    out["pairio build (s)"] = time.perf_counter() - t0
    with pa.config(database_path=cfg.database_path):
        out["pairio ls (s)"] = quiet(["ls"])
        out["pairio ls --json (s)"] = quiet(["ls", "--json"])
        out["pairio gc --dry-run (s)"] = quiet(["gc", "--dry-run"])
        t = time.perf_counter()
        report = gc.collect(cfg)
        out["pairio gc (s)"] = time.perf_counter() - t
        out["pairio gc objects removed"] = report.objects
        remaining = eviction.total_size(cfg)
        t = time.perf_counter()
        ev = eviction.evict(cfg, max_size=remaining // 2)
        out["pairio eviction pass (s)"] = time.perf_counter() - t
        out["  of which writers wait (s)"] = ev.seconds_holding_writers
        out["pairio entries evicted"] = ev.entries
    t0 = time.perf_counter()
    cache = build_diskcache(root, n)
    out["diskcache build (s)"] = time.perf_counter() - t0
    t = time.perf_counter()
    listed = [(k, cache.get(k, read=False) is not None) for k in cache.iterkeys()]
    out["diskcache list keys (s)"] = time.perf_counter() - t
    assert len(listed) == n
    volume = cache.volume()
    cache.reset("size_limit", volume // 2)
    t = time.perf_counter()
    culled = cache.cull()
    out["diskcache cull pass (s)"] = time.perf_counter() - t
    out["diskcache entries culled"] = culled
    cache.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="10,000 entries, 2 rounds")
    parser.add_argument("--dir", default=default_dir())
    args = parser.parse_args()
    if args.quick:
        args.entries, args.rounds, args.calls = 10_000, 2, 5_000
    root = Path(tempfile.mkdtemp(prefix="pairio-bench-lifecycle-", dir=args.dir))
    try:
        hits = bench_hits(root, args.rounds, args.calls)
        print(f"1. hit of f(3, 4.5, 'abc'), median us over {args.rounds} rounds x {args.calls} calls")
        for k, v in hits.items():
            print(f"   {k:<16} {v:8.2f} us   ({v / hits['pairio after']:.2f}x pairio after)")
        print(f"   recording last use + lineage: after/before = {hits['pairio after'] / hits['pairio before']:.3f}")
        figures = bench_store(root, args.entries)
        print(f"2. a store of {args.entries:,} entries (seconds, one round)")
        for k, v in figures.items():
            print(f"   {k:<28} {v:10.3f}" if isinstance(v, float) else f"   {k:<28} {v:>10}")
        print(f"   eviction pass: diskcache cull / pairio = "
              f"{figures['diskcache cull pass (s)'] / figures['pairio eviction pass (s)']:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
