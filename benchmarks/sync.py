"""``pairio sync`` of 1,000 entries beside ``pairio push`` of the same objects, through a server on loopback.

One local store holds 1,000 cached results (4 KB each, computed here with no server). Each
measurement starts a fresh ``pairio serve`` (empty, so it lacks everything) and times one
command line, run as a child process as a user would run it:

- push: ``pairio push sha1://... (x1000)``: one ``content/missing`` request, then one upload per object;
- sync: ``pairio sync``: which keys the server has, what it lacks of their content, one upload per
  object, then the 2,000 pairs (each result and its seconds).

Rates are entries (objects) per second. The two take turns (--runs, default 5); medians and the
ratio are printed. Target: sync at least 80% of push's rate. The temporary directory (on disk,
not tmpfs; --dir to choose) is deleted at the end.
Run: python benchmarks/sync.py [--runs N] [--entries N] [--dir PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import default_dir

import pairio as pa
from pairio.server.process import ServerProcess

PASSWORD = "bench-password-0123456789"
SETTINGS = {"channels": [{"name": "bench", "password": PASSWORD, "readContent": True, "writeContent": True,
                          "collections": [{"name": "bench", "maxNumGetsPerMinute": 10_000_000,
                                           "maxNumSetsPerMinute": 10_000_000}]}]}


@pa.cached
def result(i: int) -> bytes:
    return i.to_bytes(8, "little") + os.urandom(4088)


def make_entries(home: Path, n: int) -> list[str]:
    from pairio.lifecycle import records

    with pa.config(database_path=str(home), collection="bench"):
        for i in range(n):
            result(i)
        records.flush()
        return [f"sha1://{e.sha1}" for e in pa.entries()]


def timed_command(args: list[str], home: Path, url: str) -> float:
    env = {**os.environ, "PAIRIO_DB_PATH": str(home), "PAIRIO_URL": url, "PAIRIO_CHANNEL": "bench",
           "PAIRIO_PASSWORD": PASSWORD, "PAIRIO_COLLECTION": "bench"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pairio", *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"pairio {args[0]} failed ({done.returncode}): {done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--dir", default=default_dir())
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pairio-bench-sync-", dir=args.dir))
    try:
        home = work / "store"
        uris = make_entries(home, args.entries)
        assert len(uris) == args.entries
        seconds: dict[str, list[float]] = {"push": [], "sync": []}
        for run in range(args.runs):
            for tool in ("push", "sync") if run % 2 == 0 else ("sync", "push"):
                with ServerProcess(work / f"server-{run}-{tool}", SETTINGS) as server:
                    command = ["push", *uris] if tool == "push" else ["sync"]
                    seconds[tool].append(timed_command(command, home, server.url))
        print(f"{args.entries} entries of 4 KB, {args.runs} runs, a fresh server on loopback for each")
        rates = {tool: args.entries / statistics.median(s) for tool, s in seconds.items()}
        for tool, s in seconds.items():
            print(f"  pairio {tool:<5} median {statistics.median(s):6.2f} s  {rates[tool]:7.0f} entries/s  "
                  f"(runs: {', '.join(f'{x:.2f}' for x in s)})")
        ratio = rates["sync"] / rates["push"]
        print(f"  sync / push rate: {ratio:.2f} (target >= 0.80) {'OK' if ratio >= 0.8 else 'MISSED'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
