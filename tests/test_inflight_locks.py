"""Computations in flight on the local embedded store: the holder of a key's lock says who it is
(host, pid, function, collection, started) in its process's small file beside the locks, and
`pairio ui`'s leases view lists it with its age, from another process; a dead holder's list is never
listed as in flight, and `pairio gc --locks` removes it. A hit writes nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import requests
from status_data import start_ui

import pairio as pa
from pairio.key_lock_files import HOLDERS_DIRNAME, holders, locks_dir, remove_idle_locks

CHILD = textwrap.dedent("""
    import pathlib, sys, time
    import pairio as pa

    gate = pathlib.Path(sys.argv[1])

    @pa.cached
    def slow_sort(n):
        (gate.parent / "started").write_text("1")
        while not gate.exists():
            time.sleep(0.02)
        return list(range(n))

    with pa.config(collection="spikes"):
        slow_sort(3)
""")


def start_child(tmp_path, home) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PAIRIO_DB_PATH": str(home)}
    child = subprocess.Popen([sys.executable, str(script), str(tmp_path / "gate")], env=env)
    deadline = time.monotonic() + 30
    while not (tmp_path / "started").exists():
        assert child.poll() is None and time.monotonic() < deadline, "the child never started computing"
        time.sleep(0.02)
    return child


def holder_files(home) -> list[str]:
    directory = locks_dir(home) / HOLDERS_DIRNAME
    return sorted(os.listdir(directory)) if directory.exists() else []


def test_pairio_ui_lists_a_computation_in_flight_with_its_age_and_not_after_it_ends(tmp_path, pairio_home):
    child = start_child(tmp_path, pairio_home)
    process, url = start_ui(tmp_path, pairio_home)
    try:
        base, token = url.split("/?token=")
        time.sleep(0.3)
        (lease,) = requests.get(f"{base}/api/v1/status/leases", params={"token": token}, timeout=10).json()["leases"]
        assert lease["function"].endswith("slow_sort") and lease["collection"] == "spikes"
        assert lease["pid"] == child.pid and lease["host"] == socket.gethostname()
        assert lease["age"] >= 0.3 and lease["expires_at"] is None and len(lease["key"]) == 40
        page = requests.get(f"{base}/leases", params={"token": token}, timeout=10).text
        assert "slow_sort" in page and f"pid {child.pid}" in page
        (tmp_path / "gate").write_text("go")
        assert child.wait(30) == 0
        assert requests.get(f"{base}/api/v1/status/leases", params={"token": token}, timeout=10).json()["leases"] == []
        (name,) = holder_files(pairio_home)  # the process's file, rewritten in place at each claim: one file
        assert name == f"{socket.gethostname()}-{child.pid}.json"
        # A release writes nothing (the lock's state says the key is let go): it may still be listed.
        listed = json.loads((locks_dir(pairio_home) / HOLDERS_DIRNAME / name).read_text())
        assert [i["key"] for i in listed] in ([], [lease["key"]])
    finally:
        child.kill()
        process.terminate()
        process.wait(10)


def test_a_dead_holders_file_is_not_in_flight_and_gc_removes_it(tmp_path, pairio_home):
    child = start_child(tmp_path, pairio_home)
    assert [h["pid"] for h in holders(pairio_home)] == [child.pid]
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    (name,) = holder_files(pairio_home)  # its file stays: it died holding the lock
    (listed,) = json.loads((locks_dir(pairio_home) / HOLDERS_DIRNAME / name).read_text())
    assert listed["pid"] == child.pid and listed["function"].endswith("slow_sort")
    assert holders(pairio_home) == []
    assert remove_idle_locks(pairio_home, min_age_s=0) == [locks_dir(pairio_home) / HOLDERS_DIRNAME / name]
    assert holder_files(pairio_home) == []


def test_a_hit_writes_no_holder_file(pairio_home):
    @pa.cached
    def quick(x):
        return x * 2

    assert quick(2) == 4  # a miss: this process's holder file, nothing in flight after it
    (name,) = holder_files(pairio_home)
    path = locks_dir(pairio_home) / HOLDERS_DIRNAME / name
    before = os.stat(path).st_mtime_ns
    time.sleep(0.01)
    assert quick(2) == 4
    assert os.stat(path).st_mtime_ns == before and holders(pairio_home) == []


def test_a_thread_holding_two_locks_lists_both_until_each_is_let_go(tmp_path):
    from pairio.key_lock_files import remove_holder, write_holder
    from pairio.memo import flight

    with flight.claim(tmp_path, "a" * 40, "steps.outer", "spikes"):
        with flight.claim(tmp_path, "b" * 40, "steps.inner", "spikes"):
            assert [h["function"] for h in holders(tmp_path)] == ["steps.outer", "steps.inner"]
        assert [h["function"] for h in holders(tmp_path)] == ["steps.outer"]
    assert holders(tmp_path) == []
    held = write_holder(tmp_path, "c" * 40, "steps.unlocked")  # listed, but its key is not locked
    assert holders(tmp_path) == []
    remove_holder(held)


def test_a_key_let_go_and_claimed_again_is_listed_once_with_its_newest_claim(tmp_path):
    import fcntl

    from pairio import key_lock_files
    from pairio.key_lock_files import holders, remove_holder, write_holder

    key = "ab" * 20
    first = write_holder(tmp_path, key, "steps.first")
    remove_holder(first)  # let go: this process's file still lists it until its next claim
    time.sleep(0.01)
    second = write_holder(tmp_path, key, "steps.second")
    locks_dir(tmp_path).mkdir(parents=True, exist_ok=True)
    if key_lock_files.USE_RANGES:  # the key's lock: its byte of the ranges file, as single flight takes it
        fd = os.open(locks_dir(tmp_path) / key_lock_files.RANGES_FILENAME, os.O_RDWR | os.O_CREAT)
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, key_lock_files.range_request(fcntl.F_WRLCK, key))
        release = lambda: os.close(fd)  # noqa: E731
    else:
        lock = key_lock_files.KeyLockFile(str(locks_dir(tmp_path) / f"{key}.lock"))
        assert lock.try_acquire()
        release = lock.release
    try:
        assert [h["function"] for h in holders(tmp_path)] == ["steps.second"]
    finally:
        release()
        remove_holder(second)
    assert holders(tmp_path) == []
