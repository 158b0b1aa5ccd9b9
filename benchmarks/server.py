"""Benchmark the pairio server on loopback, beside redis-benchmark GET as the ceiling.

    .venv/bin/python benchmarks/server.py [--clients 4] [--seconds 5]

Starts ``pairio serve`` on a free 127.0.0.1 port with a pairio.json of high
limits, preloads pairs, then runs N client processes (each a RemoteStore:
signed requests over a pooled session) for a fixed time:

1. single gets: gets/s over all clients, and p50/p99 latency of one get;
2. get_many of 1,000 keys: keys/s over all clients;

then ``redis-benchmark -t get -n 100000 -q`` against 127.0.0.1:6379 if it runs.
Every loop is bounded in time; nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pairio.kv.remote import RemoteStore
from pairio.server.process import ServerProcess

PASSWORD = "benchmark-password-0123456789"
CHANNEL = "bench"
COLLECTION = "bench"
NUM_KEYS = 10_000
BATCH = 1_000
SETTINGS = {"channels": [{"name": CHANNEL, "password": PASSWORD, "collections": [
    {"name": COLLECTION, "maxNumGetsPerMinute": 1_000_000_000, "maxNumSetsPerMinute": 1_000_000_000}]}]}


def keys() -> list[str]:
    return [hashlib.sha1(str(i).encode()).hexdigest() for i in range(NUM_KEYS)]


def single_gets(url: str, seconds: float, start_at: float, queue) -> None:
    store = RemoteStore(url, CHANNEL, PASSWORD)
    ks = keys()
    store.get(COLLECTION, ks[0])  # open the connection before the clock starts
    latencies = []
    while time.time() < start_at:
        time.sleep(0.001)
    end = time.perf_counter() + seconds
    i = os.getpid()
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            break
        value = store.get(COLLECTION, ks[i % NUM_KEYS])
        latencies.append(time.perf_counter() - t0)
        assert value is not None
        i += 1
    queue.put(latencies)


def batch_gets(url: str, seconds: float, start_at: float, queue) -> None:
    store = RemoteStore(url, CHANNEL, PASSWORD)
    ks = keys()
    batches = [ks[i : i + BATCH] for i in range(0, NUM_KEYS, BATCH)]
    store.get_many(COLLECTION, batches[0])
    while time.time() < start_at:
        time.sleep(0.001)
    end = time.perf_counter() + seconds
    done = 0
    latencies = []
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            break
        found = store.get_many(COLLECTION, batches[done % len(batches)])
        latencies.append(time.perf_counter() - t0)
        assert len(found) == BATCH
        done += 1
    queue.put(latencies)


def run_clients(target, url: str, clients: int, seconds: float) -> list[list[float]]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 2.0  # time for every client to start and connect
    processes = [ctx.Process(target=target, args=(url, seconds, start_at, queue)) for _ in range(clients)]
    for p in processes:
        p.start()
    results = [queue.get(timeout=seconds + 60) for _ in processes]
    for p in processes:
        p.join(30)
    return results


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def redis_get_ceiling() -> float | None:
    """redis-benchmark GET requests/s on 127.0.0.1:6379, or None if redis is not there."""
    if shutil.which("redis-benchmark") is None:
        return None
    try:
        out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", "6379", "-t", "get",
                              "-n", "100000", "-q"], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return None
    match = re.search(r"GET: ([0-9.]+) requests per second", out.stdout.replace("\r", "\n"))
    return float(match.group(1)) if match else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase (default 5)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    args = parser.parse_args(argv)

    directory = Path(tempfile.mkdtemp(prefix="pairio-bench-"))
    figures: dict[str, float | int | str | None] = {"clients": args.clients, "seconds": args.seconds,
                                                    "cpus": os.cpu_count()}
    try:
        with ServerProcess(directory, SETTINGS) as server:
            loader = RemoteStore(server.url, CHANNEL, PASSWORD)
            ks = keys()
            loader.set_many(COLLECTION, {k: k[:20] for k in ks})

            results = run_clients(single_gets, server.url, args.clients, args.seconds)
            latencies = [x for r in results for x in r]
            figures["single_gets_per_s"] = len(latencies) / args.seconds
            figures["single_get_p50_ms"] = 1000 * statistics.median(latencies)
            figures["single_get_p99_ms"] = 1000 * percentile(latencies, 99)

            results = run_clients(batch_gets, server.url, args.clients, args.seconds)
            latencies = [x for r in results for x in r]
            figures["get_many_keys_per_s"] = len(latencies) * BATCH / args.seconds
            figures["get_many_p50_ms"] = 1000 * statistics.median(latencies)
            figures["get_many_p99_ms"] = 1000 * percentile(latencies, 99)
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    redis = redis_get_ceiling()
    figures["redis_benchmark_get_per_s"] = redis
    print(f"pairio server on loopback, {args.clients} client processes, {args.seconds:g} s a phase, "
          f"{os.cpu_count()} CPUs")
    print(f"  single get:         {figures['single_gets_per_s']:>10,.0f} gets/s   "
          f"p50 {figures['single_get_p50_ms']:.2f} ms  p99 {figures['single_get_p99_ms']:.2f} ms")
    print(f"  get_many of {BATCH}:  {figures['get_many_keys_per_s']:>10,.0f} keys/s   "
          f"p50 {figures['get_many_p50_ms']:.2f} ms  p99 {figures['get_many_p99_ms']:.2f} ms per request")
    if redis is None:
        print("  redis-benchmark GET: not available (no redis at 127.0.0.1:6379)")
    else:
        print(f"  redis-benchmark GET: {redis:>9,.0f} requests/s (ceiling); pairio single gets are "
              f"{figures['single_gets_per_s'] / redis:.1%} of it, get_many keys/s "
              f"{figures['get_many_keys_per_s'] / redis:.1f}x it")
    targets = (figures["single_gets_per_s"] >= 3000, figures["get_many_keys_per_s"] >= 150_000,
               figures["single_get_p99_ms"] < 20)
    print(f"  targets (>=3,000 gets/s, >=150,000 keys/s, p99 < 20 ms): "
          f"{'met' if all(targets) else 'NOT met'} {targets}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
