"""``import pairio`` over a bare interpreter, beside ``import diskcache`` and ``import joblib``.

Two measures, each the median of --runs runs (interleaved, so a slow spell of the machine falls
on every tool):

- wall: ``python -c "import X"`` minus ``python -c "pass"``;
- importtime: the cumulative milliseconds ``python -X importtime`` reports for what the code
  imports (its top-level imports, and those its lines trigger, as ``pairio.cached`` does).

Beside them, the floor: the standard-library modules ``import pairio`` loads, imported alone.
Then what a program pays before its first result, beside diskcache: ``import pairio;
pairio.cached`` (the decorator resolved: pairio's names load at first use), and the import, one
decorated function and its first call on an empty store in a new temporary directory, beside
``Cache(tmp).memoize()(f)(1)``. Target: ``import pairio`` at most 40 ms. Run with the .pyc files
written, as an installed pairio has them.
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

from common import default_dir

TOOLS = ("pairio", "diskcache", "joblib")
STORE_ENV = "PAIRIO_BENCH_STORE"  # the empty store of one run of a first call (diskcache's directory too)
FIRST_CALL = {
    "pairio.cached": "import pairio; pairio.cached",
    "from diskcache import Cache": "from diskcache import Cache",
    "pairio: decorate + first call": ("import pairio\n@pairio.cached\ndef f(x):\n    return x\nf(1)"),
    "diskcache: memoize + first call": ("import os\nfrom diskcache import Cache\n"
                                        f"@Cache(os.environ[{STORE_ENV!r}]).memoize()\ndef f(x):\n    return x\nf(1)"),
}
# (what pairio does, what diskcache does for it)
BESIDE = (("import", "pairio", "diskcache"),
          ("the decorator", "pairio.cached", "from diskcache import Cache"),
          ("decorate + first call", "pairio: decorate + first call", "diskcache: memoize + first call"))


def stdlib_of_pairio(env: dict[str, str]) -> str:
    """``import ...`` of the standard-library modules ``import pairio`` loads beyond a bare interpreter."""
    code = ("import sys; before = set(sys.modules); import pairio; "
            "print(','.join(sorted(m for m in set(sys.modules) - before "
            "if not m.startswith(('pairio', '_')) and '._' not in m)))")
    found = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)
    return f"import {found.stdout.strip()}" if found.stdout.strip() else "pass"


def importtime_ms(code: str, env: dict[str, str]) -> float:
    """The cumulative milliseconds ``-X importtime`` gives the top-level imports of ``code``."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", code], check=True, env=env,
                         capture_output=True, text=True).stderr
    rows = [line.split("|") for line in err.splitlines() if line.startswith("import time:")][1:]
    names = [row[2][1:] for row in rows]
    after_site = names.index("site") + 1 if "site" in names else 0  # what the interpreter loads first
    return sum(int(row[1]) for row, name in zip(rows[after_site:], names[after_site:], strict=True)
               if not name.startswith(" ")) / 1e3


def run(code: str, env: dict[str, str], importtime: bool) -> tuple[float, float | None]:
    """Wall milliseconds of ``code`` in a new interpreter (and its import time), each on an empty store."""
    stores = []

    def fresh() -> dict[str, str]:
        stores.append(tempfile.mkdtemp(prefix="pairio-import-", dir=default_dir()))
        return {**env, STORE_ENV: stores[-1], "PAIRIO_DB_PATH": stores[-1]}

    try:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=fresh())
        wall = (time.perf_counter() - start) * 1e3
        return wall, importtime_ms(code, fresh()) if importtime else None
    finally:
        for store in stores:
            shutil.rmtree(store, ignore_errors=True)


def measure(runs: int) -> dict[str, dict[str, float]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    codes = {"bare": "pass", **{tool: f"import {tool}" for tool in TOOLS}, "stdlib floor": stdlib_of_pairio(env),
             **FIRST_CALL}
    for code in codes.values():
        run(code, env, importtime=False)  # write the .pyc files once
    wall: dict[str, list[float]] = {name: [] for name in codes}
    importtime: dict[str, list[float]] = {name: [] for name in codes if name != "bare"}
    for _ in range(runs):
        for name, code in codes.items():
            ms, imported = run(code, env, importtime=name != "bare")
            wall[name].append(ms)
            if imported is not None:
                importtime[name].append(imported)
    bare = statistics.median(wall.pop("bare"))
    return {name: {"wall": statistics.median(wall[name]) - bare, "importtime": statistics.median(importtime[name])}
            for name in importtime}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="2 runs: that it works, not a figure")
    args = parser.parse_args()
    runs = 2 if args.quick else args.runs
    ms = measure(runs)
    print(f"median of {runs} runs, ms                wall  importtime  wall/pairio")
    for name, row in ms.items():
        ratio = row["wall"] / ms["pairio"]["wall"] if ms["pairio"]["wall"] > 0 else float("nan")
        print(f"  {name:<34}{row['wall']:7.1f}{row['importtime']:12.1f}{ratio:12.2f}")
    print("beside diskcache, wall ms          pairio  diskcache  pairio/diskcache")
    for what, ours, theirs in BESIDE:
        mine, other = ms[ours]["wall"], ms[theirs]["wall"]
        print(f"  {what:<30}{mine:9.1f}{other:11.1f}{mine / other if other > 0 else float('nan'):18.2f}")
    floor = ms["stdlib floor"]["wall"]
    print(f"pairio over its stdlib floor: {ms['pairio']['wall'] - floor:.1f} ms; "
          f"target pairio <= 40 ms: {'yes' if ms['pairio']['wall'] <= 40 else 'NO'}")


if __name__ == "__main__":
    main()
