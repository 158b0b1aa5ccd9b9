"""``@pairio.cached`` beside joblib.Memory, cachier (pickle backend) and diskcache's memoize, in one run.

Measured (a fresh, empty cache directory per tool and round; warm page cache):

1. hit with small arguments, ``f(3, 4.5, 'abc')``: median microseconds of one call, over
   --calls calls per round (targets: pairio <= 25 us; joblib/pairio >= 3x);
2. hit with an 80 MB float64 array argument: median milliseconds of one call, beside a bare
   ``hashlib.sha1(arr)`` of the same buffer (target: sha1/pairio >= 0.75, i.e. pairio hashes
   at three quarters of sha1's speed or better);
3. a 100 MB numpy array as the result: the miss (key, compute, pickle, write; pairio also
   hashes what it writes, with SHA-1; nobody fsyncs) and the hit that loads it. The compute (a
   copy of a preallocated array) is timed alone and printed; the miss figures include it.
   Before each miss, memory of three times the result's size is touched and given back (see
   warm_memory);
4. two spawned processes calling the same --keys keys of a 20 ms function at the same time,
   sharing one cache: the executions (each appends a line to a file) are counted. Target for
   pairio, which has single flight: exactly one execution per key.

The rows of issue 10 ("speed where pipelines feel it"), each beside its target:

5. the miss of a trivial ``f(a: int, b: str)`` (key, compute, store), median over --misses new
   arguments: pairio at most 2x diskcache's;
6. the hit of ``f(a, b)`` with one entry, and over 2,000 entries (each hit a different one, in a
   shuffled order): pairio at most 0.8x diskcache's. In 5 and 6 the tools take turns, 50 calls
   each, so that a slow spell of the machine falls on all of them;
7. in 3 above: the store overhead of the 100 MB result (the miss minus the compute alone) at most
   2x joblib's, and its load on a hit at most 1.3x joblib's;
8. ``@pairio.cached(mmap=True)`` hit on a --mmap-mb (1 GB) float64 array: under 5 ms;
9. ``python -c "import X"`` minus ``python -c "pass"``, median of --imports runs each, interleaved:
   pairio at most 40 ms; beside it, the same for the standard library modules pairio loads
   (imported alone, without pairio): the floor under that figure.

The rows of issue 18 ("never a stale hit in a live session"), with every per-call check on (the
identity of each global read, each helper's ``__code__``, the contents of mutable globals):

5 and 6 above, with targets: the miss at most 1.0x diskcache's, each hit at most 0.8x;
10. the hit of a step reading 10 module-level constants (one a 1,000-element list) and calling 5
    helpers, beside the hit of a step reading none (the two take turns): at most 1.5x.

``--issue18`` runs only rows 5, 6 and 10.

Each of 1-3 and 5-6 is repeated (--rounds, default 5) and medians are printed, with ratios.
The temporary directory (on disk, not tmpfs; --dir to choose) is deleted at the end.
Run: python benchmarks/cached.py [--rounds N] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import multiprocessing
import os
import queue
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from common import default_dir, timed

import pairio as pa
from pairio import deferred
from pairio.memo import call_stats, values

TOOLS = ("pairio", "joblib", "cachier", "diskcache")
LOG_ENV = "PAIRIO_BENCH_CACHED_LOG"
SLEEP_S = 0.02
CACHIER_WAIT_S = 2

# The result of big_output(): set by the benchmark, not at import (spawned workers import this file).
_OUTPUT: Any = None


# --- the cached functions (module level: the tools locate them by module and name) ---------------


def small(a: int, b: float, c: str) -> float:
    return a * b + len(c)


def trivial(a: int, b: str) -> int:
    return a + len(b)


C0, C1, C2, C3 = 1, 2.5, "name", (1, 2)
C4, C5, C6, C7 = {"scale": 2}, [1, 2, 3], frozenset({1}), None
C8 = {"a": [1, 2], "b": (3, 4)}
C9 = list(range(1000))


def _h1(x: int) -> int:
    return x + C0


def _h2(x: int) -> int:
    return _h1(x) * C4["scale"]


def _h3(x: int) -> int:
    return x + len(C3) + len(C6)


def _h4(x: int) -> int:
    return x if C7 is None else -x


def _h5(x: int) -> int:
    return x + len(C8["a"])


def reads_globals(a: int, b: str) -> float:
    """Reads 10 module-level constants (C9 a 1,000-element list) and calls 5 helpers."""
    return _h2(a) + _h3(a) + _h4(a) + _h5(a) + C1 + len(C2) + C5[0] + len(C9) + len(b)


def reads_none(a: int, b: str) -> float:
    return a + len(b) + 0.5


def array_sum(arr: Any) -> float:
    return float(arr[0] + arr[-1])


def big_output(tag: int) -> Any:
    return _OUTPUT.copy()


def slow(k: int) -> int:
    time.sleep(SLEEP_S)
    with open(os.environ[LOG_ENV], "a") as log:
        log.write(f"{k}\n")
    return 2 * k


def _pairio_done() -> None:
    """Write what pairio writes in the background while its directory exists (a write after it
    is deleted re-creates files in it, or fails the rmtree that deletes it): call and hit
    counts and records, written at most once a second, and the signatures of large objects just stored."""
    deferred.drain_all()


def wrap(tool: str, func: Callable[..., Any], directory: Path) -> tuple[Callable[..., Any], Callable[[], None]]:
    """``func`` cached by ``tool`` in ``directory`` (pairio: the process-wide config points there),
    and what to call when done with it."""
    directory.mkdir(parents=True, exist_ok=True)
    if tool == "pairio":
        pa.set_config(database_path=str(directory))
        # Each round starts cold, as the other tools do: the bytes of small results this process
        # loaded in an earlier round (the same results, by hash) are forgotten.
        values._recent.clear()
        return pa.cached(func), _pairio_done
    if tool == "joblib":
        import joblib

        return joblib.Memory(str(directory), verbose=0).cache(func), lambda: None
    if tool == "cachier":
        from cachier import cachier

        # A waiter that misses the inotify event of the computer's write waits for good unless
        # given a timeout (seen in 4): after it, cachier computes the value itself.
        return cachier(cache_dir=str(directory), backend="pickle", wait_for_calc_timeout=CACHIER_WAIT_S)(func), \
            lambda: None
    if tool == "diskcache":
        import diskcache

        cache = diskcache.Cache(str(directory))
        return cache.memoize()(func), cache.close
    raise ValueError(tool)


# --- timing -------------------------------------------------------------------------------------





def small_hits(work: Path, calls: int) -> dict[str, list[float]]:
    """Seconds of each of ``calls`` hits of small(3, 4.5, 'abc'), per tool."""
    out = {}
    for tool in TOOLS:
        fn, done = wrap(tool, small, work / tool)
        expected = fn(3, 4.5, "abc")  # the miss
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            got = fn(3, 4.5, "abc")
            times.append(time.perf_counter() - start)
        assert got == expected == 16.5, (tool, got)
        done()
        out[tool] = times
    return out


def array_hits(work: Path, arr: Any, calls: int) -> dict[str, list[float]]:
    """Seconds of each hit of array_sum(arr), per tool, and of a bare sha1 of the buffer."""
    out = {"sha1": [timed(lambda: hashlib.sha1(arr).digest()) for _ in range(calls)]}
    for tool in TOOLS:
        fn, done = wrap(tool, array_sum, work / tool)
        expected = fn(arr)
        out[tool] = [timed(lambda: fn(arr)) for _ in range(calls)]  # noqa: B023
        assert fn(arr) == expected
        done()
    return out


def warm_memory(nbytes: int) -> None:
    """Touch ``nbytes`` of memory and give it back at once.

    A virtual machine may hand the memory its kernel left free for a few seconds back to its
    host (virtio-balloon free page reporting): using it again then costs a fault in the host per
    page, which made a 100 MB write into the page cache take 150-300 ms instead of 15-25, at
    random, mostly for whichever tool came first after a pause. Warmed, every tool's miss finds
    the memory it needs (the result's copy, the page cache) ready.
    """
    block = np.ones(nbytes // 8)
    del block


def output_store_load(work: Path, loads: int) -> dict[str, dict[str, float]]:
    """Seconds of the miss of big_output(1) and the median of ``loads`` hits, per tool."""
    out = {}
    for tool in TOOLS:
        fn, done = wrap(tool, big_output, work / tool)
        warm_memory(3 * _OUTPUT.nbytes)
        miss = timed(lambda: fn(1))  # noqa: B023
        hits = []
        for _ in range(loads):
            start = time.perf_counter()
            got = fn(1)
            hits.append(time.perf_counter() - start)
            assert got.shape == _OUTPUT.shape and got[-1] == _OUTPUT[-1]
            del got
        done()
        out[tool] = {"miss": miss, "hit": statistics.median(hits)}
        shutil.rmtree(work / tool)  # 100 MB per tool: do not keep them all
    return out


def trivial_misses_and_hits(work: Path, misses: int, hits: int, entries: int,
                            turn: int = 50) -> dict[str, dict[str, list[float]]]:
    """Seconds of each miss of trivial(i, 'abc') for ``misses`` new i, of each of ``hits`` hits of one
    entry, and of each hit over ``entries`` entries (each a different one, shuffled), per tool.

    The tools take turns, ``turn`` calls each, through each of the three: a slow spell of this
    machine (they last seconds, and come and go) then falls on all of them alike, where timing
    one tool after another would charge it to whichever ran then."""
    rng = random.Random(0)
    tools = {tool: wrap(tool, trivial, work / tool) for tool in TOOLS}
    for fn, _ in tools.values():
        fn(-1, "warm")  # the first call imports and opens what the tool needs
    out: dict[str, dict[str, list[float]]] = {tool: {"miss": [], "hit1": [], "hitN": []} for tool in TOOLS}

    def take_turns(measure: str, arguments: list[int]) -> None:
        for start in range(0, len(arguments), turn):
            for tool, (fn, _) in tools.items():
                times = out[tool][measure]
                for i in arguments[start:start + turn]:
                    begin = time.perf_counter()
                    got = fn(i, "abc")
                    times.append(time.perf_counter() - begin)
                assert got == i + 3, (tool, got)

    take_turns("miss", list(range(misses)))
    take_turns("hit1", [0] * hits)
    for fn, _ in tools.values():
        for i in range(misses, entries):  # fill up to ``entries`` entries
            fn(i, "abc")
    order = list(range(entries))
    rng.shuffle(order)
    take_turns("hitN", order)
    for _, done in tools.values():
        done()
    return out


def globals_hits(work: Path, hits: int, turn: int = 50) -> dict[str, list[float]]:
    """Seconds of each pairio hit of reads_globals(1, 'abc') and of reads_none(1, 'abc'), taking turns."""
    steps = {"reads 10 globals": pa.cached(reads_globals), "reads none": pa.cached(reads_none)}
    pa.set_config(database_path=str(work / "globals"))
    values._recent.clear()
    for fn in steps.values():
        fn(1, "abc")
    out: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(0, hits, turn):
        for name, fn in steps.items():
            times = out[name]
            for _ in range(turn):
                begin = time.perf_counter()
                fn(1, "abc")
                times.append(time.perf_counter() - begin)
    _pairio_done()
    return out


def mmap_hits(work: Path, mb: int, hits: int) -> tuple[float, float]:
    """Seconds of a pairio mmap=True hit on a ``mb`` MB array (median of ``hits``) and of its miss."""
    global _OUTPUT
    saved, _OUTPUT = _OUTPUT, np.random.default_rng(1).random((mb << 20) // 8)
    try:
        pa.set_config(database_path=str(work / "mmap"))
        fn = pa.cached(mmap=True)(big_output)
        miss = timed(lambda: fn(2))
        times = []
        for _ in range(hits):
            start = time.perf_counter()
            got = fn(2)
            times.append(time.perf_counter() - start)
            assert got.shape == _OUTPUT.shape and not got.flags.writeable
            del got
        _pairio_done()
    finally:
        _OUTPUT = saved
        shutil.rmtree(work / "mmap", ignore_errors=True)
    return statistics.median(times), miss


IMPORTS = {"pairio": "pairio", "diskcache": "diskcache", "joblib": "joblib", "cachier": "cachier"}


def stdlib_of_pairio(env: dict[str, str]) -> str:
    """``import ...`` of the modules outside pairio that ``import pairio`` loads beyond what a bare
    interpreter has (the standard library's, all of them): the floor under pairio's figure."""
    code = ("import sys; before = set(sys.modules); import pairio; "
            "print(','.join(sorted(m for m in set(sys.modules) - before "
            "if not m.startswith(('pairio', '_')) and '._' not in m)))")
    found = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)
    return f"import {found.stdout.strip()}" if found.stdout.strip() else "pass"


def import_times(runs: int) -> dict[str, float]:
    """Median seconds of ``python -c "import X"`` minus ``python -c "pass"``, runs interleaved; under
    ``stdlib``, the same for the standard library modules that ``import pairio`` loads."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as installed: with .pyc
    codes = {"bare": "pass", **{tool: f"import {module}" for tool, module in IMPORTS.items()},
             "stdlib": stdlib_of_pairio(env)}
    for code in codes.values():
        subprocess.run([sys.executable, "-c", code], check=True, env=env)  # write the .pyc files once
    times: dict[str, list[float]] = {name: [] for name in codes}
    for _ in range(runs):
        for name, code in codes.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env=env)
            times[name].append(time.perf_counter() - start)
    bare = statistics.median(times.pop("bare"))
    return {name: statistics.median(t) - bare for name, t in times.items()}


# --- 4: two processes, one store --------------------------------------------------------------------


def race_worker(tool: str, directory: str, log: str, keys: int, barrier: Any, results: Any) -> None:
    os.environ[LOG_ENV] = log
    # cachier's inotify watcher logs an error when it is stopped mid-event; harmless here.
    logging.getLogger("watchdog").setLevel(logging.CRITICAL)
    fn, done = wrap(tool, slow, Path(directory))
    barrier.wait()
    start = time.perf_counter()
    for k in range(keys):
        assert fn(k) == 2 * k
    results.put((tool, time.perf_counter() - start))
    done()


def race(work: Path, tool: str, keys: int) -> tuple[int, float]:
    """Executions of slow() and the slower worker's seconds, for 2 processes x ``keys`` keys
    (seconds is NaN if a worker did not finish in time: it is killed, and its executions so far counted)."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    log = work / f"race-{tool}.log"
    log.touch()
    directory = work / f"race-{tool}"
    procs = [ctx.Process(target=race_worker, args=(tool, str(directory), str(log), keys, barrier, results))
             for _ in range(2)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 30 + 4 * keys * SLEEP_S
    try:
        seconds = max(results.get(timeout=max(0.1, deadline - time.monotonic()))[1] for _ in procs)
    except queue.Empty:
        seconds = math.nan
    for p in procs:
        p.join(timeout=max(0.1, deadline - time.monotonic()))
        if p.exitcode is None:
            p.kill()
            p.join()
        assert p.exitcode == 0 or math.isnan(seconds), (tool, p.exitcode)
    with open(log) as f:
        lines = f.read().split()
    assert math.isnan(seconds) or set(lines) == {str(k) for k in range(keys)}, tool
    return len(lines), seconds


# --- the report ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000, help="hits timed per tool and round in 1")
    parser.add_argument("--array-mb", type=int, default=80)
    parser.add_argument("--output-mb", type=int, default=100)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--misses", type=int, default=300, help="misses of the trivial function timed per round")
    parser.add_argument("--entries", type=int, default=2000, help="entries the hits of 6 go over")
    parser.add_argument("--mmap-mb", type=int, default=1024)
    parser.add_argument("--imports", type=int, default=15, help="runs of each python -c 'import X'")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a few seconds")
    parser.add_argument("--dir", default=None, help="where to put the temporary files (not tmpfs)")
    parser.add_argument("--issue18", action="store_true", help="only rows 5, 6 and 10")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.calls, args.array_mb, args.output_mb, args.keys = 2, 200, 8, 10, 20
        args.misses, args.entries, args.mmap_mb, args.imports = 50, 200, 16, 3

    global _OUTPUT
    rng = np.random.default_rng(0)
    arr = rng.random((args.array_mb << 20) // 8)
    _OUTPUT = rng.random((args.output_mb << 20) // 8)

    work = Path(tempfile.mkdtemp(prefix="pairio-bench-cached-", dir=args.dir or default_dir()))
    if args.issue18:
        try:
            issue18(work, args)
        finally:
            call_stats.flush()
            shutil.rmtree(work, ignore_errors=True)
        return
    try:
        small_t: dict[str, list[float]] = {t: [] for t in TOOLS}
        array_t: dict[str, list[float]] = {t: [] for t in ("sha1", *TOOLS)}
        output_t: dict[str, dict[str, list[float]]] = {t: {"miss": [], "hit": []} for t in TOOLS}
        compute_t: list[float] = []
        trivial_t: dict[str, dict[str, list[float]]] = {t: {"miss": [], "hit1": [], "hitN": []} for t in TOOLS}
        for i in range(args.rounds):
            for tool, m in trivial_misses_and_hits(work / f"trivial{i}", args.misses, args.calls,
                                                   args.entries).items():
                for name, times in m.items():
                    trivial_t[tool][name].extend(times)
            shutil.rmtree(work / f"trivial{i}")
            for tool, times in small_hits(work / f"small{i}", args.calls).items():
                small_t[tool].extend(times)
            for tool, times in array_hits(work / f"array{i}", arr, 3).items():
                array_t[tool].extend(times)
            for tool, m in output_store_load(work / f"output{i}", 3).items():
                output_t[tool]["miss"].append(m["miss"])
                output_t[tool]["hit"].append(m["hit"])
            warm_memory(3 * _OUTPUT.nbytes)
            compute_t.append(timed(lambda: _OUTPUT.copy()))
            shutil.rmtree(work / f"array{i}")  # the array as a diskcache key: 80 MB in its database
        counts: dict[str, int] = {}
        race_s: dict[str, float] = {}
        for tool in TOOLS:
            counts[tool], race_s[tool] = race(work, tool, args.keys)
        mmap_hit_s, mmap_miss_s = mmap_hits(work, args.mmap_mb, 5)
        imports = import_times(args.imports)
    finally:
        call_stats.flush()
        shutil.rmtree(work, ignore_errors=True)

    us = {t: statistics.median(v) * 1e6 for t, v in small_t.items()}
    ms_arr = {t: statistics.median(v) * 1e3 for t, v in array_t.items()}
    ms_miss = {t: statistics.median(v["miss"]) * 1e3 for t, v in output_t.items()}
    ms_hit = {t: statistics.median(v["hit"]) * 1e3 for t, v in output_t.items()}

    print(f"{args.rounds} rounds, medians; {os.cpu_count()} cores; temporary files in {work.parent}\n")
    head = f"{'measure':<34}" + "".join(f"{t:>11}" for t in TOOLS) + f"  {'ratio':<22}{'target':<24}met"
    print(head)
    print("-" * len(head))

    def row(measure: str, values: dict[str, float], fmt: str, ratio: str, target: str, met: str) -> None:
        cells = "".join(f"{format(values[t], fmt):>11}" if t in values else " " * 11 for t in TOOLS)
        print(f"{measure:<34}{cells}  {ratio:<22}{target:<24}{met}")

    def yes(ok: bool) -> str:
        return "yes" if ok else "no"

    jp = us["joblib"] / us["pairio"]
    row("1 hit f(3, 4.5, 'abc'), us", us, ".1f", f"joblib/pairio {jp:.2f}x",
        "pairio <= 25 us", yes(us["pairio"] <= 25))
    row("", {}, "", "", "joblib/pairio >= 3x", yes(jp >= 3))
    sp = ms_arr["sha1"] / ms_arr["pairio"]
    row(f"2 hit f({args.array_mb} MB array), ms", ms_arr, ".1f", f"sha1/pairio {sp:.2f}x",
        "sha1/pairio >= 0.75x", yes(sp >= 0.75))
    row(f"  (bare hashlib.sha1: {ms_arr['sha1']:.1f} ms)", {}, "",
        f"joblib/pairio {ms_arr['joblib'] / ms_arr['pairio']:.2f}x", "", "")
    row(f"3 miss, {args.output_mb} MB output, ms", ms_miss, ".1f",
        f"joblib/pairio {ms_miss['joblib'] / ms_miss['pairio']:.2f}x", "-", "")
    row(f"  (compute alone: {statistics.median(compute_t) * 1e3:.1f} ms, included)", {}, "", "", "", "")
    row(f"3 hit, load {args.output_mb} MB output, ms", ms_hit, ".1f",
        f"joblib/pairio {ms_hit['joblib'] / ms_hit['pairio']:.2f}x", "-", "")
    row(f"4 executions, 2 procs x {args.keys} keys", {t: float(c) for t, c in counts.items()}, ".0f",
        "", f"pairio == {args.keys}", yes(counts["pairio"] == args.keys))
    row("  seconds (the slower process)", race_s, ".2f",
        f"floor {args.keys * SLEEP_S:.1f} s (1 exec/key)", "", "")
    for tool, seconds in race_s.items():
        if math.isnan(seconds):
            print(f"  {tool}: a worker did not finish in time and was killed (executions counted until then)")

    # The rows of issue 10, each with its target.
    med = {t: {k: statistics.median(v) * 1e6 for k, v in m.items()} for t, m in trivial_t.items()}
    print()
    miss_r = med["pairio"]["miss"] / med["diskcache"]["miss"]
    row("5 miss f(a: int, b: str), us", {t: m["miss"] for t, m in med.items()}, ".0f",
        f"pairio/diskcache {miss_r:.2f}x", "<= 2x diskcache", yes(miss_r <= 2))
    hit1_r = med["pairio"]["hit1"] / med["diskcache"]["hit1"]
    row("6 hit f(a, b), one entry, us", {t: m["hit1"] for t, m in med.items()}, ".1f",
        f"pairio/diskcache {hit1_r:.2f}x", "<= 0.8x diskcache", yes(hit1_r <= 0.8))
    hitn_r = med["pairio"]["hitN"] / med["diskcache"]["hitN"]
    row(f"6 hit over {args.entries} entries, us", {t: m["hitN"] for t, m in med.items()}, ".1f",
        f"pairio/diskcache {hitn_r:.2f}x", "<= 0.8x diskcache", yes(hitn_r <= 0.8))
    compute_ms = statistics.median(compute_t) * 1e3
    overhead = {t: ms_miss[t] - compute_ms for t in TOOLS}
    over_r = overhead["pairio"] / overhead["joblib"]
    row(f"7 {args.output_mb} MB store overhead, ms", overhead, ".1f",
        f"pairio/joblib {over_r:.2f}x", "<= 2x joblib", yes(over_r <= 2))
    load_r = ms_hit["pairio"] / ms_hit["joblib"]
    row(f"7 {args.output_mb} MB load on a hit, ms", ms_hit, ".1f",
        f"pairio/joblib {load_r:.2f}x", "<= 1.3x joblib", yes(load_r <= 1.3))
    row(f"8 mmap hit, {args.mmap_mb} MB array, ms", {"pairio": mmap_hit_s * 1e3}, ".2f",
        f"(its miss: {mmap_miss_s:.1f} s)", "< 5 ms", yes(mmap_hit_s < 0.005))
    ms_imports = {t: v * 1e3 for t, v in imports.items()}
    stdlib_ms = ms_imports.pop("stdlib")
    row("9 import over bare python, ms", ms_imports, ".1f", "", "pairio <= 40 ms", yes(ms_imports["pairio"] <= 40))
    print(f"  (the standard library modules pairio loads, imported alone: {stdlib_ms:.1f} ms)")


def issue18(work: Path, args: argparse.Namespace) -> None:
    """Rows 5, 6 and 10 alone, with the targets of issue 18."""
    trivial_t: dict[str, dict[str, list[float]]] = {t: {"miss": [], "hit1": [], "hitN": []} for t in TOOLS}
    globals_t: dict[str, list[float]] = {"reads 10 globals": [], "reads none": []}
    for i in range(args.rounds):
        for tool, m in trivial_misses_and_hits(work / f"trivial{i}", args.misses, args.calls,
                                               args.entries).items():
            for name, times in m.items():
                trivial_t[tool][name].extend(times)
        shutil.rmtree(work / f"trivial{i}")
        for name, times in globals_hits(work / f"globals{i}", args.calls).items():
            globals_t[name].extend(times)
    med = {t: {k: statistics.median(v) * 1e6 for k, v in m.items()} for t, m in trivial_t.items()}
    print(f"{args.rounds} rounds, medians (us); {os.cpu_count()} cores\n")
    print(f"{'measure':<34}" + "".join(f"{t:>11}" for t in TOOLS) + f"  {'ratio':<22}{'target':<24}met")
    for label, measure, limit in [("5 miss f(a: int, b: str)", "miss", 1.0), ("6 hit f(a, b), one entry", "hit1", 0.8),
                                  (f"6 hit over {args.entries} entries", "hitN", 0.8)]:
        ratio = med["pairio"][measure] / med["diskcache"][measure]
        cells = "".join(f"{med[t][measure]:>11.1f}" for t in TOOLS)
        print(f"{label:<34}{cells}  {f'pairio/diskcache {ratio:.2f}x':<22}{f'<= {limit}x diskcache':<24}"
              f"{'yes' if ratio <= limit else 'no'}")
    g = {name: statistics.median(times) * 1e6 for name, times in globals_t.items()}
    ratio = g["reads 10 globals"] / g["reads none"]
    print(f"{'10 hit, step reading 10 globals':<34}{g['reads 10 globals']:>11.1f}  "
          f"{f'/ reads none {ratio:.2f}x':<22}{'<= 1.5x':<24}{'yes' if ratio <= 1.5 else 'no'}")
    print(f"{'   the step reading none':<34}{g['reads none']:>11.1f}")


if __name__ == "__main__":
    main()
