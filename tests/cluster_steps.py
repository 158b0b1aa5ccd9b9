"""Cached steps, and a command line running them, for the tests of machines sharing one server.

Each execution of a step's body appends a line to the file named by PAIRIO_TEST_RUNS
(one small O_APPEND write: lines of concurrent processes never mix), so a test counts
executions across processes. Run as

    python cluster_steps.py CONFIG_JSON COMMAND [ARG...]

where CONFIG_JSON holds the pairio config fields of this "machine"; the command's
result is printed as JSON on stdout.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import pairio as pa

BIG_ARRAY_LENGTH = 12_500_000  # float64: 100 MB
# The tests' hooks. An environment variable a step reads counts in its key: the file executions are
# noted in is the same for every machine of a test; the hang, which only the leaseholder a test kills
# has, reaches the step as an ignored argument (ignore= leaves it out of the key on purpose).
RUNS_VARIABLE, HANG_VARIABLE, GO_VARIABLE = "PAIRIO_TEST_RUNS", "PAIRIO_TEST_HANG_FILE", "PAIRIO_TEST_GO_FILE"


def note(step: str) -> None:
    runs = os.environ.get(RUNS_VARIABLE)
    if runs:
        fd = os.open(runs, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{step} {os.getpid()}\n".encode())
        finally:
            os.close(fd)


def executions(runs: Path) -> list[str]:
    """The steps whose bodies ran, one entry per execution."""
    return [line.split()[0] for line in runs.read_text().splitlines()] if runs.exists() else []


@pa.cached(ignore=["hang_file"])
def slow(x: int, seconds: float = 0.2, hang_file: str | None = None) -> dict:
    note(f"slow-{x}")
    started = hang_file
    if started:  # the leaseholder that a test kills: it says it started, then never finishes
        Path(started).write_text(str(os.getpid()))
        time.sleep(600)
    time.sleep(seconds)
    return {"x": x, "square": x * x, "text": "x" * 100}


@pa.cached
def big(n: int):
    import numpy as np

    note("big")
    return np.random.default_rng(n).standard_normal(n)


@pa.cached(ignore=["out_dir"])
def with_paths(text: str, out_dir: str) -> dict:
    note("with_paths")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "a.txt").write_text(text)
    (out / "b.bin").write_bytes(text.encode() * 1000)
    return {"a": out / "a.txt", "b": out / "b.bin", "n": len(text)}


def describe(value: object) -> object:
    """A JSON summary that two machines' results must share."""
    if isinstance(value, Path):
        return {"path": str(value), "sha1": hashlib.sha1(value.read_bytes()).hexdigest()}
    if isinstance(value, dict):
        return {k: describe(v) for k, v in value.items()}
    if hasattr(value, "tobytes"):
        return {"shape": list(value.shape), "sha1": hashlib.sha1(value.tobytes()).hexdigest()}
    return value


def main(argv: list[str]) -> None:
    config, command, *args = argv
    pa.set_config(**json.loads(config))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    go = os.environ.get(GO_VARIABLE)
    if go:  # start together: wait for the test to say go
        deadline = time.monotonic() + 60
        while not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.005)
    if command == "small":
        out = slow(int(args[0]), 0.0)
    elif command == "big":
        out = big(BIG_ARRAY_LENGTH)
    elif command == "paths":
        out = with_paths(args[0], args[1])
    elif command == "many":
        out = [slow(int(x)) for x in args]
    elif command == "one":
        started = time.monotonic()
        out = {"result": slow(int(args[0]), hang_file=os.environ.get(HANG_VARIABLE)),
               "seconds": time.monotonic() - started}
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps({"result": describe(out), "stats": pa.stats()}))


if __name__ == "__main__":
    main(sys.argv[1:])
