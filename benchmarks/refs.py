"""Refs (issue 23's figures), in one run: a loopback ``pairio serve`` and fresh "machines".

    .venv/bin/python benchmarks/refs.py [--mb 100] [--big-mb 1000] [--repeat 5]

1. ``load -> filter -> summary`` with two ``--mb`` MB intermediate arrays, computed on machine
   A; machine B reruns it by values (three hits: each intermediate downloaded, the next key
   hashed from it), each of ``--repeat`` fresh machines C through Refs
   (``summary.ref(filter.ref(load.ref(n))).load()``). Bytes the server sent (its /metrics)
   and seconds. Targets for Refs: at most 1 MB and 0.2 s.
2. A hit of a step whose argument is a Ref to a ``--big-mb`` MB result, beside the same hit
   given the value (hashed): target at most 5 ms.
3. A miss storing a ``--mb`` MB array result, with its argument digest, beside joblib.Memory's
   store of it (both local, medians of ``--repeat``): target at most 1.5x joblib's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
import requests
from common import default_dir

import pairio as pa
from pairio.lifecycle import records
from pairio.memo import call_stats
from pairio.server.process import ServerProcess

PASSWORD = "benchmark-password-0123456789"
SETTINGS = {"channels": [{"name": "bench", "password": PASSWORD, "readContent": True, "writeContent": True,
                          "collections": [{"name": "bench", "maxNumGetsPerMinute": 1_000_000_000,
                                           "maxNumSetsPerMinute": 1_000_000_000}]}]}


@pa.cached
def load(n: int) -> np.ndarray:
    return np.random.default_rng(n).standard_normal(n)


@pa.cached
def filter_rows(a: np.ndarray) -> np.ndarray:
    return np.where(a > 0, a, 0.0)  # as large as its input


@pa.cached
def summary(a: np.ndarray) -> float:
    return float(a.sum())


@pa.cached
def big(n: int) -> np.ndarray:
    return np.ones(n)


@pa.cached
def mean(a: np.ndarray) -> float:
    return float(a.mean())


ARRAYS: dict[int, np.ndarray] = {}  # a global: not hashed into keys (a closure's values would be)


def produce(i: int) -> np.ndarray:
    return ARRAYS[i]  # a different array per call: each store writes its bytes


def sent(server: ServerProcess) -> float:
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("pairio_sent_bytes_total{") and "/metrics" not in line)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--big-mb", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--parts", default="123", help="which measurements to run (e.g. 3)")
    opts = parser.parse_args()
    n, n_big = opts.mb * (1 << 20) // 8, opts.big_mb * (1 << 20) // 8
    print(f"Refs, python {sys.version.split()[0]}, numpy {np.__version__}, joblib {joblib.__version__}")
    if "1" in opts.parts or "2" in opts.parts:
        chains(opts, n, n_big)
    if "3" in opts.parts:
        stores(opts, n)


def chains(opts: argparse.Namespace, n: int, n_big: int) -> None:
    with tempfile.TemporaryDirectory(dir=default_dir(), ignore_cleanup_errors=True) as tmp, \
            ServerProcess(Path(tmp) / "server", SETTINGS) as server:
        def machine(name: str, **fields) -> dict:
            return dict(url=server.url, channel="bench", password=PASSWORD, collection="bench",
                        database_path=str(Path(tmp) / name), get_from="local_then_remote",
                        set_to="local_and_remote", **fields)

        # --- 1. the chain on machine B ------------------------------------------------------
        with pa.config(**machine("a")):
            expected = summary(filter_rows(load(n)))
        before = sent(server)
        with pa.config(**machine("b")):
            t_values, out = timed(lambda: summary(filter_rows(load(n))))
        b_values = sent(server) - before
        assert out == expected
        t_refs, b_refs = [], []
        for i in range(opts.repeat):
            before = sent(server)
            with pa.config(**machine(f"c{i}")):
                t, out = timed(lambda: summary.ref(filter_rows.ref(load.ref(n))).load())
            assert out == expected
            t_refs.append(t)
            b_refs.append(sent(server) - before)
        print(f"1. load -> filter -> summary ({opts.mb} MB intermediates), machine B's rerun")
        print(f"   by values          {t_values:8.3f} s   {b_values / 1e6:10.3f} MB downloaded")
        print(f"   through Refs       {statistics.median(t_refs):8.3f} s   {statistics.median(b_refs) / 1e6:10.3f} MB "
              f"downloaded   (targets <= 0.2 s, <= 1 MB; median of {opts.repeat} fresh machines)")
        # --- 2. a hit whose argument is a Ref to a big result -----------------------------------
        with pa.config(**machine("a", mmap=False)):
            ref = big.ref(n_big)
            mean(ref)  # computed once
            value = ref.load()
            mean(value)  # a hit; warms up
            hits = [timed(lambda: mean(ref))[0] for _ in range(opts.repeat * 4)]
            hashed = [timed(lambda: mean(value))[0] for _ in range(opts.repeat)]
        value = None  # (1 GB freed before the next part)
        print(f"2. a hit of a step whose argument is a Ref to a {opts.big_mb} MB result")
        print(f"   the Ref            {statistics.median(hits) * 1e3:8.3f} ms   (target <= 5 ms)")
        print(f"   the value (hashed) {statistics.median(hashed) * 1e3:8.1f} ms   "
              f"ratio {statistics.median(hits) / statistics.median(hashed):.4f}")
        records.flush()
        call_stats.flush()  # (written before the directories go)


def stores(opts: argparse.Namespace, n: int) -> None:
    # --- 3. storing a result with its argument digest, beside joblib.Memory --------------------
    with tempfile.TemporaryDirectory(dir=default_dir(), ignore_cleanup_errors=True) as tmp:
        ARRAYS.update({i: np.random.default_rng(i + 1).standard_normal(n) for i in range(-1, opts.repeat)})
        memory = joblib.Memory(Path(tmp) / "joblib", verbose=0)
        jl = memory.cache(produce)
        pc = pa.cached(produce)
        t_joblib, t_pairio = [], []
        with pa.config(database_path=str(Path(tmp) / "pairio")):
            jl(-1), pc(-1)  # warm up
            for i in range(opts.repeat):
                t_joblib.append(timed(lambda i=i: jl(i))[0])
                t_pairio.append(timed(lambda i=i: pc(i))[0])
        mj, mp = statistics.median(t_joblib), statistics.median(t_pairio)
        print(f"3. a miss storing a {opts.mb} MB array (pairio with its argument digest), medians of {opts.repeat}")
        print(f"   joblib.Memory      {mj:8.3f} s")
        print(f"   pairio             {mp:8.3f} s   pairio/joblib = {mp / mj:.2f}   (target <= 1.5)")
        records.flush()
        call_stats.flush()


if __name__ == "__main__":
    main()
