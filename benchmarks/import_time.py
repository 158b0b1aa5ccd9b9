"""``import pairio`` over a bare interpreter, beside ``import diskcache`` and ``import joblib``.

Two measures, each the median of --runs runs (interleaved, so a slow spell of the machine falls
on every tool):

- wall: ``python -c "import X"`` minus ``python -c "pass"``;
- importtime: the cumulative microseconds ``python -X importtime`` reports for ``X`` itself.

Beside them, the floor: the standard-library modules ``import pairio`` loads, imported alone.
Target: pairio at most 40 ms. Run with the .pyc files written, as an installed pairio has them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

TOOLS = ("pairio", "diskcache", "joblib")


def stdlib_of_pairio(env: dict[str, str]) -> str:
    """``import ...`` of the standard-library modules ``import pairio`` loads beyond a bare interpreter."""
    code = ("import sys; before = set(sys.modules); import pairio; "
            "print(','.join(sorted(m for m in set(sys.modules) - before "
            "if not m.startswith(('pairio', '_')) and '._' not in m)))")
    found = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)
    return f"import {found.stdout.strip()}"


def importtime_ms(code: str, env: dict[str, str]) -> float:
    """The cumulative milliseconds ``-X importtime`` gives the last top-level import of ``code``."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", code], check=True, env=env,
                         capture_output=True, text=True).stderr
    rows = [line.split("|") for line in err.splitlines() if line.startswith("import time:")][1:]
    names = [row[2][1:] for row in rows]
    after_site = names.index("site") + 1 if "site" in names else 0  # what the interpreter loads first
    return sum(int(row[1]) for row, name in zip(rows[after_site:], names[after_site:], strict=True)
               if not name.startswith(" ")) / 1e3


def measure(runs: int) -> dict[str, dict[str, float]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    codes = {"bare": "pass", **{tool: f"import {tool}" for tool in TOOLS}, "stdlib floor": stdlib_of_pairio(env)}
    for code in codes.values():
        subprocess.run([sys.executable, "-c", code], check=True, env=env)  # write the .pyc files once
    wall: dict[str, list[float]] = {name: [] for name in codes}
    importtime: dict[str, list[float]] = {name: [] for name in codes if name != "bare"}
    for _ in range(runs):
        for name, code in codes.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env=env)
            wall[name].append((time.perf_counter() - start) * 1e3)
            if name != "bare":
                importtime[name].append(importtime_ms(code, env))
    bare = statistics.median(wall.pop("bare"))
    return {name: {"wall": statistics.median(wall[name]) - bare, "importtime": statistics.median(importtime[name])}
            for name in importtime}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    ms = measure(args.runs)
    print(f"median of {args.runs} runs, ms     wall  importtime  wall/pairio")
    for name, row in ms.items():
        ratio = row["wall"] / ms["pairio"]["wall"] if ms["pairio"]["wall"] > 0 else float("nan")
        print(f"  {name:<28}{row['wall']:7.1f}{row['importtime']:12.1f}{ratio:12.2f}")
    floor = ms["stdlib floor"]["wall"]
    print(f"pairio over its stdlib floor: {ms['pairio']['wall'] - floor:.1f} ms; "
          f"target pairio <= 40 ms: {'yes' if ms['pairio']['wall'] <= 40 else 'NO'}")


if __name__ == "__main__":
    main()
