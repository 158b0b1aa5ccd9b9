"""Content store speed on a 1 GB file, beside ``sha1sum`` + ``cp`` of the same file, in one run.

Measured (warm page cache for every contender; a fresh, empty store for every store run):

- store: ``ContentStore.put_file`` (hash while copying, fsync, rename) vs ``sha1sum F; cp F D``
  (and, for reference, ``cp F D; sync D``: cp with the fsync pairio does);
- load with link=True: ``load_file(uri, dest, link=True)`` (target: under 10 ms);
- load with copy: ``load_file(uri, dest)`` (atomic) vs ``cp OBJECT D``, and with ``durable=True``
  (atomic, fsync'd) vs ``cp OBJECT D; sync D``;
- get_file_hash of the unchanged 1 GB file (target: under 1 ms), after its first hashing.

Each is repeated (--runs, default 5); medians and ratios are printed. The temporary
directory (on disk, not tmpfs; --dir to choose) and its gigabytes are deleted at the end.
Run: python benchmarks/content.py [--runs N] [--size-mb N] [--dir PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import default_dir, timed

import pairio as pa
from pairio.content import ContentStore, HashCache


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)




def make_file(path: Path, size_mb: int) -> None:
    chunk = os.urandom(16 << 20)
    with open(path, "wb") as f:
        for i in range(0, size_mb, 16):
            # Vary each chunk a little so no block repeats exactly.
            f.write(i.to_bytes(8, "little") + chunk[8:])
    past = time.time_ns() - 60 * 10**9  # as if written a minute ago: the hash cache may remember it
    os.utime(path, ns=(past, past))


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--dir", default=None, help="where to put the temporary files (not tmpfs)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pairio-bench-", dir=args.dir or default_dir()))
    try:
        src = work / "data.bin"
        make_file(src, args.size_mb)
        print(f"{args.size_mb} MB file in {work} ({args.runs} runs, medians)")
        dest = work / "dest.bin"
        results: dict[str, list[float]] = {k: [] for k in (
            "pairio store", "sha1sum + cp", "cp + sync", "load link", "load copy", "load copy durable",
            "cp object", "cp object + sync")}

        for i in range(args.runs):
            store = ContentStore(work / f"store{i}")
            results["pairio store"].append(timed(lambda: store.put_file(src)))  # noqa: B023
            results["sha1sum + cp"].append(timed(lambda: (run("sha1sum", str(src)), run("cp", str(src), str(dest)))))
            dest.unlink()
            results["cp + sync"].append(timed(lambda: (run("cp", str(src), str(dest)), run("sync", str(dest)))))
            dest.unlink()
            shutil.rmtree(work / f"store{i}")

        cdir = str(work / "content")
        uri = pa.store_file(src, content_dir=cdir, database_path=str(work / "db"))
        obj = pa.load_file(uri, content_dir=cdir)
        for _ in range(args.runs):
            results["load link"].append(timed(lambda: pa.load_file(uri, dest=dest, link=True, content_dir=cdir)))
            dest.unlink()
            results["load copy"].append(timed(lambda: pa.load_file(uri, dest=dest, content_dir=cdir)))
            dest.unlink()
            results["load copy durable"].append(
                timed(lambda: pa.load_file(uri, dest=dest, durable=True, content_dir=cdir)))
            dest.unlink()
            results["cp object"].append(timed(lambda: run("cp", obj, str(dest))))
            dest.unlink()
            results["cp object + sync"].append(timed(lambda: (run("cp", obj, str(dest)), run("sync", str(dest)))))
            dest.unlink()

        cache = HashCache(work / "hashdb")
        first = timed(lambda: cache.file_hash(src))
        again = [timed(lambda: cache.file_hash(src)) for _ in range(1000)]

        m = {k: median_ms(v) for k, v in results.items()}
        print(f"store:      pairio {m['pairio store']:8.1f} ms | sha1sum+cp {m['sha1sum + cp']:8.1f} ms "
              f"| ratio {m['pairio store'] / m['sha1sum + cp']:.2f}x (target <= 1.3x)")
        print(f"            (cp + sync, the fsync pairio pays: {m['cp + sync']:.1f} ms)")
        print(f"load link:  pairio {m['load link']:8.3f} ms (target < 10 ms)")
        print(f"load copy:  pairio {m['load copy']:8.1f} ms | cp {m['cp object']:8.1f} ms "
              f"| ratio {m['load copy'] / m['cp object']:.2f}x (target <= 1.2x)")
        print(f"  durable:  pairio {m['load copy durable']:8.1f} ms | cp + sync {m['cp object + sync']:8.1f} ms "
              f"| ratio {m['load copy durable'] / m['cp object + sync']:.2f}x")
        print(f"get_file_hash: first {first * 1000:.1f} ms, unchanged {median_ms(again) * 1000:.1f} us "
              f"(target < 1 ms)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
