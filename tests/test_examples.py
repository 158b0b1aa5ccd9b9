"""The examples run end to end, and a second run is all hits."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, home: Path, *args: str) -> str:
    env = {**os.environ, "PAIRIO_DB_PATH": str(home)}
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *args], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _outcomes(output: str) -> list[str]:
    return re.findall(r"^\w+\s+(hit|miss)\s", output, flags=re.M)


def test_pipeline_computes_every_step_once_then_hits(tmp_path):
    first = _run("pipeline.py", tmp_path, "--channels", "4", "--seconds", "2")
    second = _run("pipeline.py", tmp_path, "--channels", "4", "--seconds", "2")
    assert _outcomes(first) == ["miss"] * 5
    assert _outcomes(second) == ["hit"] * 5
    summary = lambda out: out.split("total")[1].split("\n", 1)[1]  # noqa: E731
    assert summary(first) == summary(second)


def test_pipeline_with_other_arguments_misses(tmp_path):
    _run("pipeline.py", tmp_path, "--channels", "4", "--seconds", "2")
    other = _run("pipeline.py", tmp_path, "--channels", "4", "--seconds", "2", "--seed", "1")
    assert _outcomes(other) == ["miss"] * 5


def test_parallel_workers_share_one_cache(tmp_path):
    args = ("--recordings", "3", "--workers", "2", "--channels", "4", "--seconds", "2")
    first = _run("parallel.py", tmp_path, *args)
    # 4 pipelines of 5 steps; recording 0 twice: its 5 steps are computed once.
    assert "15 misses" in first and "5 hits" in first
    second = _run("parallel.py", tmp_path, *args)
    assert "20 hits, 0 misses" in second


def test_the_pool_reuses_what_running_the_script_computed(tmp_path):
    _run("pipeline.py", tmp_path, "--channels", "4", "--seconds", "2", "--seed", "0")
    # The workers import examples/pipeline.py as the module `pipeline`: the same steps, the same keys.
    out = _run("parallel.py", tmp_path, "--recordings", "1", "--workers", "1", "--channels", "4",
               "--seconds", "2")
    assert "1 recording as 1 pipeline run on 1 worker" in out and "5 hits, 0 misses" in out


def test_parallel_counts_what_it_was_asked_for(tmp_path):
    out = _run("parallel.py", tmp_path, "--recordings", "2", "--workers", "2", "--channels", "4", "--seconds", "2")
    # Recording 0 runs twice (its 5 steps computed once): 3 runs of 5 steps, 10 computed.
    assert "2 recordings as 3 pipeline runs (recording 0 twice) on 2 workers" in out
    assert "5 hits, 10 misses" in out
    assert [line.split()[0] for line in out.splitlines() if line[:9].strip().isdigit()] == ["0", "0", "1"]


@pytest.mark.parametrize("option", ["--recordings", "--workers", "--channels", "--seconds"])
def test_parallel_refuses_a_count_of_zero(tmp_path, option):
    done = subprocess.run([sys.executable, str(EXAMPLES / "parallel.py"), option, "0"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2 and "must be positive" in done.stderr
