"""``@pairio.cached`` across threads and real processes: single flight, a SIGKILLed computer, a 200 MB result.

No assertion depends on timing. Where a test needs calls to overlap, the
computing body holds its claim until the others have logged that they wait
(each wait is bounded, so a broken lock fails the test instead of hanging it).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest

import pairio as pa
from pairio.memo import flight
from pairio.memo.call_stats import read_persistent

WAIT_S = 60.0  # the bound on every wait: far more than any step needs, so only a bug reaches it
THREADS = 6
PROCESSES = 3


def _wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {WAIT_S:.0f} s waiting for {what}")
        time.sleep(0.01)


def _waits_for(record: logging.LogRecord) -> str | None:
    """The key prefix a 'waiting for <function> <key8> ...' line of the pairio logger names."""
    if isinstance(record.msg, str) and record.msg.startswith("waiting for"):
        return record.args[1]
    return None


class WaitCounter(logging.Handler):
    """Counts, per key prefix, the calls of this process that waited for another computer."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.waiting: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        key8 = _waits_for(record)
        if key8 is not None:
            with self._lock:
                self.waiting[key8] += 1

    def wait_for(self, key: str, n: int) -> None:
        _wait_until(lambda: self.waiting[key[:8]] >= n, f"{n} callers to wait for key {key[:8]}")


@pytest.fixture
def waits():
    logger = logging.getLogger("pairio")
    handler = WaitCounter()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    pa.reset_stats()
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)
    pa.reset_stats()


# --- threads -------------------------------------------------------------------------------------


def test_threads_calling_the_same_key_compute_it_once(waits, caplog):
    caplog.set_level(logging.INFO, logger="pairio")
    executions = []

    @pa.cached(ignore=["hold"])
    def step(x, hold):
        executions.append(threading.get_ident())
        hold()
        return x * 2

    key = step.key(21, None)

    def hold():  # keep the claim until every other thread waits for it
        waits.wait_for(key, THREADS - 1)

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(lambda _: step(21, hold), range(THREADS)))
    assert results == [42] * THREADS
    assert len(executions) == 1
    counts = pa.stats()[step.name]
    assert (counts["hits"], counts["misses"]) == (THREADS - 1, 1)
    messages = [r.getMessage() for r in caplog.records if r.name == "pairio"]
    assert sum("being computed elsewhere" in m for m in messages) == THREADS - 1
    assert sum("computed elsewhere while waiting" in m for m in messages) == THREADS - 1


def test_threads_on_different_keys_do_not_wait_for_each_other():
    both_running = threading.Barrier(2, timeout=WAIT_S)

    @pa.cached
    def step(x):
        both_running.wait()  # breaks (and fails the test) if one key's claim blocked the other
        return x

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(step, [1, 2])) == [1, 2]


def test_a_waiter_computes_when_the_computer_fails(waits):
    executions = []

    @pa.cached(ignore=["hold"])
    def step(x, hold):
        executions.append(threading.get_ident())
        if len(executions) == 1:
            hold()
            raise RuntimeError("the first computer fails")
        return x + 1

    key = step.key(1, None)

    def hold():
        waits.wait_for(key, 1)

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(step, 1, hold)
        _wait_until(lambda: executions, "the first computer to start")
        second = pool.submit(step, 1, hold)
        with pytest.raises(RuntimeError, match="fails"):
            first.result(WAIT_S)
        assert second.result(WAIT_S) == 2
    assert len(executions) == 2 and step.is_cached(1, None)


def test_coroutines_calling_the_same_key_compute_it_once(waits):
    executions = []

    @pa.cached
    async def step(x):
        executions.append(x)
        # Keep the claim until the other coroutine waits for it, without blocking the event loop.
        deadline = time.monotonic() + WAIT_S
        while waits.waiting[key[:8]] < 1:
            assert time.monotonic() < deadline, "the second coroutine never waited"
            await asyncio.sleep(0.01)
        return x * 3

    key = step.key(5)

    async def main():
        return await asyncio.gather(step(5), step(5))

    assert asyncio.run(main()) == [15, 15]
    assert executions == [5]


# --- processes -----------------------------------------------------------------------------------


class MarkWaits(logging.Handler):
    """In a worker process: each time a call waits for another computer, create ``waiting-<k>-<pid>``."""

    def __init__(self, log_dir: Path, keys: dict[str, object]) -> None:
        super().__init__(logging.INFO)
        self.log_dir = log_dir
        self.keys = keys  # key prefix -> the call's first argument

    def emit(self, record: logging.LogRecord) -> None:
        key8 = _waits_for(record)
        if key8 is not None:
            (self.log_dir / f"waiting-{self.keys[key8]}-{os.getpid()}").touch()


def _record_run(log_dir: str, k: int) -> None:
    with open(Path(log_dir) / f"ran-{k}", "a") as f:
        f.write(f"{os.getpid()}\n")


@pa.cached(ignore=["log_dir", "processes"])
def shared_step(k, log_dir, processes):
    _record_run(log_dir, k)
    # Hold the claim until every other process waits for it: each of them must then get this result.
    _wait_until(lambda: len(list(Path(log_dir).glob(f"waiting-{k}-*"))) >= processes - 1,
                f"{processes - 1} processes to wait for key {k}")
    return {"k": k, "square": k * k}


@pa.cached(ignore=["log_dir", "hang"])
def crashing_step(k, log_dir, hang):
    _record_run(log_dir, k)
    if hang:
        (Path(log_dir) / "computing").touch()
        time.sleep(WAIT_S)  # SIGKILLed while it holds the claim
    return k + 1


def _worker(database_path: str, log_dir: str, name: str, calls: list[tuple]) -> None:
    """A process calling ``name(*args)`` for each of ``calls``; writes what it got to ``results-<pid>``."""
    pa.set_config(database_path=database_path)
    func = globals()[name]
    logger = logging.getLogger("pairio")
    logger.setLevel(logging.INFO)
    logger.addHandler(MarkWaits(Path(log_dir), {func.key(*args)[:8]: args[0] for args in calls}))
    results = [func(*args) for args in calls]
    out = {"results": results, "stats": pa.stats()[func.name]}
    (Path(log_dir) / f"results-{os.getpid()}.json").write_text(json.dumps(out))


def _start(database_path: Path, log_dir: Path, name: str, calls: list[tuple]) -> multiprocessing.Process:
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=_worker, args=(str(database_path), str(log_dir), name, calls))
    p.start()
    return p


def _runs(log_dir: Path, k: int) -> list[int]:
    path = log_dir / f"ran-{k}"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def test_processes_calling_the_same_keys_compute_each_once(pairio_home, tmp_path):
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    keys = [0, 1, 2, 3]
    calls = [(k, str(log_dir), PROCESSES) for k in keys]
    procs = [_start(pairio_home, log_dir, "shared_step", calls) for _ in range(PROCESSES)]
    for p in procs:
        p.join(WAIT_S * len(keys))
    assert [p.exitcode for p in procs] == [0] * PROCESSES

    assert all(len(_runs(log_dir, k)) == 1 for k in keys)
    outputs = [json.loads((log_dir / f"results-{p.pid}.json").read_text()) for p in procs]
    assert all(out["results"] == [{"k": k, "square": k * k} for k in keys] for out in outputs)
    assert sum(out["stats"]["misses"] for out in outputs) == len(keys)
    assert sum(out["stats"]["hits"] for out in outputs) == len(keys) * (PROCESSES - 1)
    for k in keys:  # every process other than the computer waited for it
        assert len(list(log_dir.glob(f"waiting-{k}-*"))) == PROCESSES - 1
    # The workers' counts reached the database's totals (`pairio stats`) as they exited.
    totals = read_persistent(pairio_home)[shared_step.name]
    assert (totals["hits"], totals["misses"]) == (len(keys) * (PROCESSES - 1), len(keys))
    # The parent finds them all stored.
    assert all(shared_step.is_cached(k, None, None) for k in keys)
    assert shared_step(2, None, None) == {"k": 2, "square": 4}


def test_a_computer_killed_holding_the_claim_lets_a_waiter_take_over(pairio_home, tmp_path):
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    computer = _start(pairio_home, log_dir, "crashing_step", [(7, str(log_dir), True)])
    try:
        _wait_until(lambda: (log_dir / "computing").exists(), "the first process to start computing")
        waiter = _start(pairio_home, log_dir, "crashing_step", [(7, str(log_dir), False)])
        _wait_until(lambda: list(log_dir.glob("waiting-7-*")), "the second process to wait")
    finally:
        computer.kill()  # SIGKILL: no cleanup of any kind runs
        computer.join(WAIT_S)
    waiter.join(WAIT_S)
    assert computer.exitcode == -9 and waiter.exitcode == 0

    assert _runs(log_dir, 7) == [computer.pid, waiter.pid]
    out = json.loads((log_dir / f"results-{waiter.pid}.json").read_text())
    assert out["results"] == [8] and out["stats"]["misses"] == 1
    assert crashing_step.is_cached(7, None, None)
    assert crashing_step(7, str(log_dir), False) == 8 and len(_runs(log_dir, 7)) == 2


def test_a_later_caller_computes_after_the_computer_was_killed(pairio_home, tmp_path):
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    computer = _start(pairio_home, log_dir, "crashing_step", [(3, str(log_dir), True)])
    try:
        _wait_until(lambda: (log_dir / "computing").exists(), "the process to start computing")
    finally:
        computer.kill()
        computer.join(WAIT_S)
    assert crashing_step(3, str(log_dir), False) == 4  # the claim died with its process
    assert _runs(log_dir, 3) == [computer.pid, os.getpid()]


@pa.cached(ignore=["log_dir"])
def pool_step(k, log_dir):
    _record_run(log_dir, k)
    return -k


class Scaler:
    def __init__(self, factor):
        self.factor = factor

    def __pairio_hash__(self):
        return self.factor

    @pa.cached(ignore=["log_dir"])
    def scale(self, k, log_dir):
        _record_run(log_dir, k)
        return k * self.factor


def test_a_process_pool_maps_a_cached_function_computing_each_key_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    keys = [1, 2, 1, 3, 2, 1, 3, 3]
    pool = ctx.Pool(2)
    try:
        results = pool.starmap(pool_step, [(k, str(tmp_path)) for k in keys])
    finally:
        pool.close()
        pool.join()
    assert results == [-k for k in keys]
    assert all(len(_runs(tmp_path, k)) == 1 for k in set(keys))
    assert all(pool_step.is_cached(k, None) for k in set(keys))


def test_a_process_pool_executor_maps_a_cached_method(tmp_path):
    keys = [1, 2, 1, 2]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(Scaler(10).scale, keys, [str(tmp_path)] * len(keys)))
    assert results == [10, 20, 10, 20]
    assert all(len(_runs(tmp_path, k)) == 1 for k in (1, 2))
    assert Scaler(10).scale.is_cached(1, None) and not Scaler(11).scale.is_cached(1, None)


# --- a large result ------------------------------------------------------------------------------

_LARGE = """
import json, resource, sys
import numpy as np
import pairio as pa

N = 25_000_000  # 200 MB of float64

@pa.cached
def big(n):
    return np.arange(n, dtype=np.float64)

def resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

def peak_bytes():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))

# Start the peak afresh (Linux >= 4.0), so that what imports used and freed is not counted.
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = resident_bytes()
if sys.argv[1] == "load_pickle":
    value = pa.load_pickle("sha1://" + pa.get(big.key(N)))
else:
    value = big(N)
grown = peak_bytes() - before
counts = pa.stats().get(big.name, {})
ok = value.shape == (N,) and value[12345] == 12345.0 and value[-1] == N - 1
print(json.dumps({"grown": grown, "size": value.nbytes, "ok": bool(ok),
                  "hits": counts.get("hits", 0), "misses": counts.get("misses", 0)}))
"""


def _run_large(mode: str) -> dict:
    env = {**os.environ, "PAIRIO_DB_PATH": str(pa.get_config().database_dir)}
    done = subprocess.run([sys.executable, "-c", _LARGE, mode], env=env, capture_output=True, text=True,
                          timeout=WAIT_S * 2)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; ru_maxrss is in KiB on Linux only")
def test_a_200_mb_result_is_stored_and_loaded_in_well_under_twice_its_size():
    pytest.importorskip("numpy")
    stored = _run_large("call")
    assert stored["ok"] and (stored["hits"], stored["misses"]) == (0, 1)
    hit = _run_large("call")
    assert hit["ok"] and (hit["hits"], hit["misses"]) == (1, 0)
    loaded = _run_large("load_pickle")
    assert loaded["ok"]
    for run in (stored, hit, loaded):
        # The array itself must be in memory once; a copy of it (a pickle in bytes) would be 2x.
        assert run["size"] * 0.9 <= run["grown"] < run["size"] * 1.4, run


# --- claims: a result stored just before the claim; idle lock files -----------------------------


def test_a_result_stored_between_the_lookup_and_the_claim_is_used(monkeypatch):
    from pairio.memo import flight, values

    runs = []

    @pa.cached
    def triple(x):
        runs.append(x)
        return 3 * x

    real_claim = flight.claim

    def claim_after_another_computer(database_dir, key, label, *rest, **options):
        # Another process stored the result and let go after our lookup missed.
        sha1 = values.store_result(pa.content_store(pa.get_config()), "from the other computer")
        pa.set(key, sha1)
        return real_claim(database_dir, key, label, *rest, **options)

    monkeypatch.setattr(flight, "claim", claim_after_another_computer)
    assert triple(2) == "from the other computer"
    assert runs == []


def test_gc_removes_idle_lock_files_and_keeps_held_and_young_ones(pairio_home, monkeypatch):
    import filelock

    from pairio.cli import main
    from pairio.key_lock_files import remove_idle_locks

    # Lock files per key are what platforms without range locks use (and what older versions left).
    monkeypatch.setattr(flight, "_USE_RANGES", False)

    @pa.cached
    def double(x):
        return 2 * x

    for x in range(3):
        double(x)
    locks = sorted((pairio_home / "locks").glob("*.lock"))
    assert len(locks) == 3
    old = time.time() - 7200
    for path in locks[:2]:
        os.utime(path, (old, old))
    held = filelock.FileLock(locks[0], thread_local=False)
    held.acquire()
    try:
        assert remove_idle_locks(pairio_home) == [locks[1]]  # locks[0] is held, locks[2] is young
    finally:
        held.release()
    assert sorted((pairio_home / "locks").glob("*.lock")) == [locks[0], locks[2]]
    assert main(["gc", "--locks"]) == 0
    assert sorted((pairio_home / "locks").glob("*.lock")) == [locks[2]]
    assert double(0) == 0 and double.is_cached(1)  # the cache itself is untouched


@pytest.mark.parametrize("ranges", [True, False] if flight._USE_RANGES else [False])
def test_a_claim_excludes_other_threads_on_its_key_and_lets_other_keys_through(pairio_home, monkeypatch, ranges):
    monkeypatch.setattr(flight, "_USE_RANGES", ranges)
    key, other = "a" * 40, "b" * 40
    waited = []
    with flight.claim(pairio_home, key, "step") as first_waited:
        # A nested claim of another key, as a cached step calling another: never blocked.
        with flight.claim(pairio_home, other, "inner") as inner_waited:
            assert (first_waited, inner_waited) == (False, False)
        thread = threading.Thread(target=lambda: waited.append(_claim_and_report(pairio_home, key)))
        thread.start()
        thread.join(0.2)
        assert thread.is_alive()  # blocked on our claim
    thread.join(WAIT_S)
    assert waited == [True]


def _claim_and_report(home: Path, key: str) -> bool:
    with flight.claim(home, key, "step") as waited:
        return waited


_LATE_MULTIPROCESSING = """
import os, sys
import pairio as pa

pa.set_config(database_path=sys.argv[1])


@pa.cached
def negate(k):
    with open(os.path.join(sys.argv[1], f"run-{k}-{os.getpid()}"), "w"):
        pass
    return -k


if __name__ == "__main__":
    assert "multiprocessing" not in sys.modules
    import multiprocessing  # after the decoration: pairio registers with its pickler late

    with multiprocessing.get_context("spawn").Pool(2) as pool:
        assert pool.map(negate, [1, 2, 1]) == [-1, -2, -1]
    # The workers ran this script's own function (by name), so the parent finds their results.
    assert negate.is_cached(1) and negate.is_cached(2)
    print(len([n for n in os.listdir(sys.argv[1]) if n.startswith("run-")]))
"""


def test_a_main_function_goes_to_pool_workers_by_name_when_multiprocessing_comes_after_it(tmp_path):
    script = tmp_path / "late.py"
    script.write_text(_LATE_MULTIPROCESSING)
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run([sys.executable, str(script), str(home)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2"]


def test_import_pairio_loads_none_of_what_only_some_paths_need():
    code = ("import sys, pairio; print(sorted(m for m in ('asyncio', 'cloudpickle', 'requests', 'importlib.metadata', "
            "'multiprocessing', 'filelock', 'socket', 'starlette', 'numpy', "
            "'pairio.memo.key', 'pairio.memo.code', 'pairio.memo.source', 'pairio.memo.arguments', "
            "'pairio.memo.dependencies') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["[]"]


def test_key_format_is_still_public_though_key_derivation_loads_lazily():
    code = "import sys, pairio; k = pairio.KEY_FORMAT; print(k, 'pairio.memo.key' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["1", "True"]
