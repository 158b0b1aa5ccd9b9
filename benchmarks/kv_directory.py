"""The directory store (pairs as files, for a directory shared by hosts) beside the embedded store.

1. Speed, in one run: 5,000 random 40-hex pairs in each store; get of present keys, get of
   absent keys, and set, timed in turns (a slow spell of the machine falls on both); medians
   of the per-operation times and the ratio directory / embedded. Target: get at most 3x.
2. Durability: 8 processes for 60 s on one directory store, each setting its own keys (and
   overwriting 7 shared ones) and reading the others' meanwhile; each reports the last pair
   whose set returned; then every acknowledged pair is read back. Target: 0 lost.

Run: python benchmarks/kv_directory.py [--rounds N] [--processes 8] [--seconds 60] [--dir DIR]
(--dir: where the stores go, e.g. an NFS or FUSE mount; default: the temporary directory).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import secrets
import statistics
import tempfile
import time

from common import default_dir

from pairio.kv.directory import DirectoryStore
from pairio.kv.embedded import EmbeddedStore

N = 5_000


def _per_op(fn, keys) -> float:
    start = time.perf_counter()
    for k in keys:
        fn("default", k)
    return (time.perf_counter() - start) / len(keys)


def speed(directory: str, rounds: int) -> None:
    stores = {"embedded": EmbeddedStore(os.path.join(directory, "embedded")),
              "directory": DirectoryStore(os.path.join(directory, "directory"))}
    keys = [secrets.token_hex(20) for _ in range(N)]
    values = [secrets.token_hex(20) for _ in range(N)]
    absent = [secrets.token_hex(20) for _ in range(N)]
    times: dict[tuple[str, str], list[float]] = {}
    for r in range(rounds):
        for name, store in stores.items():
            start = time.perf_counter()
            for k, v in zip(keys, values, strict=True):
                store.set("default", k, v)
            times.setdefault(("set", name), []).append((time.perf_counter() - start) / N)
        for _ in range(3):
            for name, store in (stores.items() if r % 2 == 0 else reversed(stores.items())):
                times.setdefault(("get", name), []).append(_per_op(store.get, keys))
                times.setdefault(("get absent", name), []).append(_per_op(store.get, absent))
    assert stores["directory"].get_many("default", keys) == dict(zip(keys, values, strict=True))
    print(f"{'operation':<12} {'embedded':>10} {'directory':>10} {'ratio':>7}")
    for op in ("get", "get absent", "set"):
        e, d = statistics.median(times[op, "embedded"]), statistics.median(times[op, "directory"])
        target = "  (target: at most 3x)" if op == "get" else ""
        print(f"{op:<12} {e * 1e6:>8.1f}us {d * 1e6:>8.1f}us {d / e:>6.2f}x{target}")


def _writer(directory: str, me: int, processes: int, seconds: float, out) -> None:
    store = DirectoryStore(directory)
    deadline = time.monotonic() + seconds
    i, reads = 0, 0
    while time.monotonic() < deadline:
        store.set("c", f"{me}-{i}", f"value-{me}-{i}")
        store.set("c", f"shared-{i % 7}", f"{me}-{i}")
        peer = f"{(me + 1) % processes}-{i // 2}"
        value = store.get("c", peer)
        if value not in (None, "value-" + peer):
            raise AssertionError(f"{peer}: read {value!r}")
        reads += 1
        i += 1
    out.put((me, i - 1, reads))


def durability(directory: str, processes: int, seconds: float) -> None:
    store_dir = os.path.join(directory, "durability")
    out: multiprocessing.Queue = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_writer, args=(store_dir, p, processes, seconds, out))
               for p in range(processes)]
    for w in workers:
        w.start()
    results = [out.get() for _ in workers]
    for w in workers:
        w.join()
    store = DirectoryStore(store_dir)
    acknowledged = lost = reads = 0
    for me, last, n_reads in results:
        keys = [f"{me}-{i}" for i in range(last + 1)]
        found = store.get_many("c", keys)
        acknowledged += len(keys)
        lost += sum(1 for k in keys if found.get(k) != f"value-{k}")
        reads += n_reads
    print(f"durability: {processes} processes for {seconds:g}s: {acknowledged} acknowledged pairs "
          f"(+{acknowledged} overwrites of 7 shared keys, {reads} reads of others' pairs meanwhile), "
          f"{lost} lost (target: 0); {2 * acknowledged / seconds:.0f} sets/s in all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--dir", default=None, help="where the stores go (default: the temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir or default_dir()) as directory:
        speed(directory, args.rounds)
        durability(directory, args.processes, args.seconds)


if __name__ == "__main__":
    main()
