"""The deferred writer: starts with work, writes on an interval, at exit and in a pool worker,
is forgotten after a fork, and survives a failing write."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from pairio.deferred import DeferredWriter, drain_all


class _Queue:
    """A list of items written by a writer to ``written`` (or to a file, one line each)."""

    def __init__(self, interval_s: float = 0.05, path: str | None = None, fail: int = 0) -> None:
        self.items: list[str] = []
        self.written: list[str] = []
        self.path = path
        self.fail = fail
        self.writer = DeferredWriter(f"test-writer-{id(self)}", self.write, lambda: bool(self.items),
                                     interval_s=interval_s, forget=self.items.clear)

    def put(self, item: str) -> None:
        self.items.append(item)
        self.writer.notify()

    def write(self) -> None:
        if self.fail:
            self.fail -= 1
            raise OSError("disk full")
        taken, self.items[:] = list(self.items), []
        self.written.extend(taken)
        if self.path is not None and taken:
            with open(self.path, "a") as f:
                f.write("".join(f"{item}\n" for item in taken))


def _threads(queue: _Queue) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == queue.writer.name]


def _until(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_no_thread_runs_before_work_arrives_and_none_after_it_is_written():
    queue = _Queue()
    time.sleep(0.1)
    assert _threads(queue) == []
    queue.put("a")
    assert len(_threads(queue)) == 1
    assert _until(lambda: not _threads(queue))  # nothing more to write: the thread stops
    assert queue.written == ["a"]


def test_work_is_written_on_the_interval_without_a_flush():
    queue = _Queue(interval_s=0.05)
    queue.put("a")
    assert queue.written == []  # not at once: at the interval
    assert _until(lambda: queue.written == ["a"])
    queue.put("b")  # after the thread stopped, or while it runs: written all the same
    assert _until(lambda: queue.written == ["a", "b"])


def test_drain_all_writes_every_writer_at_once():
    first, second = _Queue(interval_s=60), _Queue(interval_s=60)
    first.put("a")
    second.put("b")
    drain_all()
    assert (first.written, second.written) == (["a"], ["b"])


def test_a_failing_write_is_logged_and_the_next_one_still_happens(caplog):
    queue = _Queue(interval_s=0.05, fail=1)
    with caplog.at_level(logging.ERROR, logger="pairio"):
        queue.put("a")
        queue.writer.flush()  # raises inside: logged, not raised here
        assert any("could not write" in r.getMessage() for r in caplog.records)
        assert _until(lambda: queue.written == ["a"])  # the thread's next write
    queue.put("b")
    assert _until(lambda: queue.written == ["a", "b"])


_PROGRAM = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tests!r})
    from test_deferred import _Queue

    queue = _Queue(interval_s=3600, path=sys.argv[1])
    queue.put("parent")
""")


def _run(tmp_path, body: str) -> list[str]:
    out = tmp_path / "written.txt"
    program = _PROGRAM.format(tests=os.path.dirname(__file__)) + textwrap.dedent(body)
    subprocess.run([sys.executable, "-c", program, str(out)], check=True, timeout=120)
    return out.read_text().split() if out.exists() else []


def test_what_is_queued_is_written_when_the_process_exits(tmp_path):
    assert _run(tmp_path, "") == ["parent"]


def test_a_forked_child_starts_afresh_and_never_writes_its_parents_work(tmp_path):
    body = """
    pid = os.fork()
    if pid == 0:
        queue.put("child")
        sys.exit(0)  # atexit runs in the child: it writes its own work only
    os.waitpid(pid, 0)
    """
    assert sorted(_run(tmp_path, body)) == ["child", "parent"]


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_a_pool_worker_writes_before_its_result_goes_back(tmp_path):
    body = """
    import multiprocessing

    def put(item):
        queue.put(item)

    with multiprocessing.get_context("fork").Pool(1, maxtasksperchild=1) as pool:
        pool.apply(put, ("worker",))
        pool.apply(len, ("x",))  # a second worker: the first has exited
    """
    assert sorted(_run(tmp_path, body)) == ["parent", "worker"]
