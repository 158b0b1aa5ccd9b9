"""The figure of issue 21: 100 trials of a writer killed at random while the disk fills up.

Each trial mounts a 3 MB tmpfs, starts a writer (pairs, cached results of 10 B to 200 kB,
content objects) on a store there, fills the disk beside it in random steps, and SIGKILLs
the writer at a random moment (0.05-1.5 s); then every write the writer acknowledged is
read back (a pair's value, a cached result's hit, an object's bytes), the disk is freed, the
content store is fsck'd and the database integrity-checked. Needs root (mounts).

    sudo .venv/bin/python benchmarks/full_disk_kills.py [TRIALS]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import store_faults  # noqa: E402


def main() -> int:
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    if os.geteuid() != 0:
        print("needs root (tmpfs mounts)", file=sys.stderr)
        return 2
    totals = {"set": 0, "cached": 0, "object": 0, "refused": 0}
    full = lost = unclean = 0
    started = time.perf_counter()
    for seed in range(trials):
        mounts = store_faults.Mounts()
        try:
            result = store_faults.killed_writer_trial(mounts, seed)
        finally:
            mounts.close()
        for word, n in result["acknowledged"].items():
            totals[word] += n
        full += result["full"]
        lost += len(result["lost"])
        unclean += bool(result["fsck_corrupt"] or result["fsck_unreadable"] or result["integrity"] != "ok")
        if result["lost"] or result["integrity"] != "ok":
            print(f"trial {seed}: {result}")
    seconds = time.perf_counter() - started
    print(f"{trials} trials in {seconds:.0f} s; the disk was full at the kill in {full}")
    print(f"acknowledged: {totals['set']} pairs, {totals['cached']} cached results, {totals['object']} objects; "
          f"{totals['refused']} sets refused (StoreNotWritableError)")
    print(f"acknowledged writes lost: {lost}; trials with fsck or integrity_check not clean: {unclean}")
    return 0 if lost == 0 and unclean == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
