"""Helpers the benchmark scripts share: a timer and where to put their large temporary files."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def on_tmpfs(path: str) -> bool:
    """True if ``path`` lies on a tmpfs (in memory: file benchmarks there would flatter everyone)."""
    try:
        with open("/proc/mounts") as mounts:
            best = ("", "")
            for line in mounts:
                _, mount_point, fstype, *_ = line.split()
                if path.startswith(mount_point) and len(mount_point) > len(best[0]):
                    best = (mount_point, fstype)
        return best[1] == "tmpfs"
    except OSError:
        return False


def default_dir() -> str:
    """The system's temporary directory, or the checkout's parent when that is a tmpfs."""
    tmp = tempfile.gettempdir()
    return str(Path(__file__).resolve().parents[2]) if on_tmpfs(os.path.realpath(tmp)) else tmp
