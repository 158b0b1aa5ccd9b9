"""Deferred writes: one background writer for every module that batches its writes.

A module keeps its own queue (counts, rows) and gives a :class:`DeferredWriter` the
function that writes it out and the one that says whether anything is queued. The
writer starts a daemon thread when work arrives (:meth:`DeferredWriter.notify`),
writes every ``interval_s`` while there is work, and stops when there is none; it
writes at exit, and in a multiprocessing worker before the worker's result goes back
(pool workers leave through ``os._exit``, skipping atexit, but run multiprocessing's
finalizers). After a fork the child starts afresh: the writer calls the module's
``forget`` so that the parent's pending work is not written twice. A failing write
is logged and never raised; the writer keeps going.

Tests call :func:`drain_all` to write out every writer's queue.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable

logger = logging.getLogger("pairio")

_writers: weakref.WeakSet[DeferredWriter] = weakref.WeakSet()


class DeferredWriter:
    """A background thread that calls ``write`` while ``has_work()`` is true.

    ``interval_s``: how long work waits before it is written. With ``eager``, work is
    written as soon as it arrives, and the thread waits ``interval_s`` for more before it
    stops. ``forget``: called in a forked child to drop the parent's queue.
    """

    def __init__(self, name: str, write: Callable[[], None], has_work: Callable[[], bool], *,
                 interval_s: float, forget: Callable[[], None], eager: bool = False) -> None:
        self.name = name
        self.interval_s = interval_s
        self.eager = eager
        self._write = write
        self._has_work = has_work
        self._forget = forget
        self._start_fresh()
        _writers.add(self)

    def _start_fresh(self) -> None:
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._arrived = threading.Event()
        self._thread: threading.Thread | None = None
        self._hooked = False

    def notify(self) -> None:
        """Say that work was queued: starts the thread if none is running (cheap when one is)."""
        if self.eager:
            self._arrived.set()
        if self._thread is None or not self._hooked:
            self._start()

    def _start(self) -> None:
        with self._lock:
            if not self._hooked:
                self._hooked = True
                _flush_at_exit_of_worker(self)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            if self.eager:
                self._arrived.wait(self.interval_s)
                self._arrived.clear()
            else:
                time.sleep(self.interval_s)
            if self._thread is not me:
                return  # forgotten (a fork) or replaced
            if not self._has_work() and self._stop(me):
                return
            self.flush()

    def _stop(self, me: threading.Thread) -> bool:
        """Stop the thread for want of work; False if work came meanwhile (the thread goes on)."""
        with self._lock:
            if self._thread is me:
                self._thread = None
        if not self._has_work():
            return True
        # Queued between the look and the stop, by a caller that saw this thread still running.
        with self._lock:
            if self._thread is None:
                self._thread = me
                return False
        return True

    def flush(self) -> None:
        """Write what is queued now, one flush at a time (errors are logged, never raised)."""
        with self._flushing:
            try:
                self._write()
            except Exception:
                logger.exception("pairio: the deferred writer %s could not write", self.name)

    def _after_fork_in_child(self) -> None:
        self._start_fresh()  # the thread did not follow the fork; its locks may have been held
        self._forget()


_DRAIN_ROUNDS = 3


def drain_all() -> None:
    """Write out what every deferred writer has queued (at exit; tests, between steps). A writer's
    write may queue work for another (the calls' counts give the hourly counts their saved
    seconds), so the writers are flushed again while any has work, a few rounds at most."""
    for _ in range(_DRAIN_ROUNDS):
        for writer in list(_writers):
            writer.flush()
        if not any(writer._has_work() for writer in list(_writers)):
            return


def _flush_at_exit_of_worker(writer: DeferredWriter) -> None:
    """Flush ``writer`` when this process exits as a multiprocessing worker. Registered at the
    first work of each process (a worker's table of finalizers is emptied when it starts), and
    only if multiprocessing is in use: importing it would cost ``import pairio`` much of its time."""
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        util.Finalize(None, writer.flush, exitpriority=10)


def _forget_all_after_fork() -> None:
    for writer in list(_writers):
        writer._after_fork_in_child()


atexit.register(drain_all)
os.register_at_fork(after_in_child=_forget_all_after_fork)
