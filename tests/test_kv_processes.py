"""Many processes at once, and a writer killed with SIGKILL mid-stream."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys

import pairio as pa
from pairio.kv import EmbeddedStore

PROCESSES = 4
ROUNDS = 1500
SHARED_KEYS = 50


def _value(proc: int, i: int) -> str:
    # A self-checking value: a torn or mixed-up value would not verify.
    body = f"{proc}:{i}"
    return body + ":" + hashlib.sha1(body.encode()).hexdigest()[:20]


def _is_whole(value: str) -> bool:
    proc, i, check = value.split(":")
    return _value(int(proc), int(i)) == value


def _hammer(database_path: str, proc: int) -> None:
    with pa.config(database_path=database_path):
        for i in range(ROUNDS):
            value = _value(proc, i)
            pa.set(f"own-{proc}-{i}", value)
            pa.set(f"shared-{i % SHARED_KEYS}", value)
            seen = pa.get(f"shared-{(i * 7) % SHARED_KEYS}")
            if seen is not None and not _is_whole(seen):
                raise AssertionError(f"torn value {seen!r}")
            if i % 100 == 0:
                batch = pa.get_many([f"shared-{k}" for k in range(SHARED_KEYS)])
                if not all(v is None or _is_whole(v) for v in batch.values()):
                    raise AssertionError("torn value in get_many")
                pa.set_many({f"batch-{proc}-{i}-{k}": value for k in range(20)})


def test_four_processes_overlapping_sets_and_gets_lose_nothing(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(str(tmp_path), n)) for n in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * PROCESSES

    store = EmbeddedStore(tmp_path)
    own = store.get_many("default", [f"own-{p}-{i}" for p in range(PROCESSES) for i in range(ROUNDS)])
    assert len(own) == PROCESSES * ROUNDS
    assert all(own[f"own-{p}-{i}"] == _value(p, i) for p in range(PROCESSES) for i in range(ROUNDS))
    shared = store.get_many("default", [f"shared-{k}" for k in range(SHARED_KEYS)])
    # Each shared key ends with some process's last write to it.
    last_round = {k: max(i for i in range(ROUNDS) if i % SHARED_KEYS == k) for k in range(SHARED_KEYS)}
    assert all(shared[f"shared-{k}"] in {_value(p, last_round[k]) for p in range(PROCESSES)}
               for k in range(SHARED_KEYS))
    assert store.count("default") == PROCESSES * ROUNDS + SHARED_KEYS + PROCESSES * (ROUNDS // 100) * 20


_WRITER = """
import sys
import pairio as pa
pa.set_config(database_path=sys.argv[1])
i = 0
while True:
    pa.set(f"key-{i}", f"value-{i}")
    if i % 10 == 0:
        pa.set_many({f"batch-{i}-{k}": f"value-{i}-{k}" for k in range(50)})
    print(i, flush=True)  # acknowledged only after set returned
    i += 1
"""


def test_writer_killed_mid_stream_leaves_every_acknowledged_write(tmp_path):
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    acknowledged = -1
    try:
        for line in writer.stdout:
            acknowledged = int(line)
            if acknowledged >= 2000:
                break
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    assert acknowledged >= 2000

    with pa.config(database_path=str(tmp_path)):
        found = pa.get_many([f"key-{i}" for i in range(acknowledged + 1)])
        assert all(found[f"key-{i}"] == f"value-{i}" for i in range(acknowledged + 1))
        batches = pa.get_many([f"batch-{i}-{k}" for i in range(0, acknowledged + 1, 10) for k in range(50)])
        assert all(v is not None for v in batches.values())
        pa.set("after-crash", "writable")  # the store is still usable
        assert pa.get("after-crash") == "writable"
