"""The restricted unpickler (content loaded as data only) beside ``pickle.loads``, in one run.

Measured, each repeated (--runs, default 7), medians and ratios printed:

- a 100 MB numpy array result, as pairio stores it (protocol 5, its buffer out of band), loaded from
  its bytes in memory: ``pickles.loads`` as data only vs as ``pickle.loads`` (target: at most 1.1x);
  and the same array pickled in band, ``safe_loads`` vs ``pickle.loads``;
- a result of 100,000 small Python objects (dicts, tuples, strings, floats, ints):
  ``safe_loads`` vs ``pickle.loads`` (target: at most 2x); and, for reference, 100,000 dataclass
  instances (each made by the restricted loader's stand-in).

Run: python benchmarks/safe_loading.py [--runs N]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import io
import pickle
import statistics
import time

import numpy as np

from pairio.content import pickles
from pairio.content.safe_pickle import safe_loads


@dataclasses.dataclass
class Point:
    x: float
    y: float
    label: str


def out_of_band(value: object) -> bytes:
    """The bytes pairio stores for ``value`` (as pickles.dump writes them)."""
    buffers: list[pickle.PickleBuffer] = []
    head = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    out = io.BytesIO()
    out.write(head)
    table = bytearray()
    for b in buffers:
        raw = b.raw()
        out.write(bytes(-out.tell() % 64))
        table += pickles._ENTRY.pack(out.tell(), raw.nbytes)
        out.write(raw)
    out.write(bytes(table) + pickles._FOOTER.pack(len(head), len(buffers), pickles.MAGIC))
    return out.getvalue()


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(label: str, baseline, contender, runs: int, target: float | None) -> None:
    # Interleaved, so load on the machine hits both alike.
    a, b = [], []
    for _ in range(runs):
        a.append(median_time(baseline, 1))
        b.append(median_time(contender, 1))
    ma, mb = statistics.median(a), statistics.median(b)
    verdict = "" if target is None else ("  OK" if mb / ma <= target else f"  OVER the {target}x target")
    print(f"{label:58s} pickle {ma * 1e3:8.2f} ms  safe {mb * 1e3:8.2f} ms  ratio {mb / ma:5.2f}x{verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    runs = args.runs

    array = np.random.default_rng(0).random(100 * 2**20 // 8)
    stored = out_of_band(array)
    compare("100 MB array, out of band (as stored)", lambda: pickles.loads(stored),
            lambda: pickles.loads(stored, frozenset()), runs, 1.1)
    in_band = pickle.dumps(array, protocol=5)
    compare("100 MB array, in band", lambda: pickle.loads(in_band), lambda: safe_loads(in_band), runs, 1.1)

    small = []
    for i in range(25_000):
        small += [{"i": i, "name": f"n{i}"}, (i, i * 0.5), f"s{i}", float(i)]
    data = pickle.dumps(small, protocol=5)
    compare("100,000 small objects (dicts, tuples, str, float)", lambda: pickle.loads(data),
            lambda: safe_loads(data), runs, 2.0)
    points = pickle.dumps([Point(i, -i, "p") for i in range(100_000)], protocol=5)
    compare("100,000 dataclass instances (reference)", lambda: pickle.loads(points), lambda: safe_loads(points),
            runs, None)


if __name__ == "__main__":
    main()
