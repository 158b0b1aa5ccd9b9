"""Issue 18, item 7: records and call counts made in ``multiprocessing.Pool`` workers are not lost.

Pool workers leave through ``os._exit`` (no atexit), and ``with Pool() as p:`` or
``p.terminate()`` kill them without running even multiprocessing's finalizers. Each program
runs in a fresh process: three misses in a pool, then the same three again (hits); ``pairio ls``
must list three entries with their hits, and ``pairio stats`` count them all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROGRAM = """
import json
import multiprocessing
import sys

import pairio


@pairio.cached
def square(x):
    return x * x


def run(method, ending):
    ctx = multiprocessing.get_context(method)
    if ending == "with":  # Pool.__exit__ calls terminate()
        with ctx.Pool(2) as pool:
            return pool.map(square, [1, 2, 3])
    pool = ctx.Pool(2, maxtasksperchild=1 if ending == "maxtasksperchild" else None)
    out = pool.map(square, [1, 2, 3], chunksize=1)
    if ending == "terminate":
        pool.terminate()
    else:
        pool.close()
    pool.join()
    return out


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], sys.argv[2])))
"""


def _pairio(*args: str) -> dict | list:
    done = subprocess.run([sys.executable, "-m", "pairio", *args, "--json"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("ending", ["with", "close", "maxtasksperchild", "terminate"])
def test_records_and_counts_made_in_pool_workers_are_kept(tmp_path, method, ending):
    (tmp_path / "pool_program.py").write_text(PROGRAM)
    for _ in range(2):  # three misses, then three hits
        done = subprocess.run([sys.executable, "pool_program.py", method, ending], cwd=tmp_path,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == [1, 4, 9]
    listed = _pairio("ls")
    entries = listed["entries"] if isinstance(listed, dict) else listed
    assert sorted(e["summary"]["x"] for e in entries) == ["1", "2", "3"]
    assert sum(e["hits"] for e in entries) == 3
    counts = _pairio("stats")
    assert {name: (c["misses"], c["hits"]) for name, c in counts.items()} == {"pool_program.square": (3, 3)}
