"""The benchmarks keep working as pairio's insides move: each imports, and those with a --quick
mode run it to the end (their figures are not checked here: timed assertions do not belong in tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if p.name != "common.py")
QUICK = [p for p in SCRIPTS if "--quick" in p.read_text()]


def run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PAIRIO_DB_PATH": str(tmp_path / "home")}
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_a_benchmark_imports(script, tmp_path):
    code = f"import sys, runpy; sys.path.insert(0, {str(BENCHMARKS)!r}); runpy.run_path({str(script)!r})"
    done = run(["-c", code], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("script", QUICK, ids=lambda p: p.name)
def test_a_benchmark_runs_its_quick_mode(script, tmp_path):
    done = run([str(script), "--quick"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
