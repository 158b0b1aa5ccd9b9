"""One computation per key across the hosts sharing a directory store, without a server.

The file lock of :mod:`.flight` keeps a key to one computer per host (and, where the file
system's locks reach across hosts, beyond); a lease of :class:`~pairio.kv.directory.DirectoryLeases`
(a file made with ``O_EXCL``, with an expiry) keeps it to one across hosts. It behaves as the
server's lease (:class:`.lease.ServerLease`): :meth:`DirectoryLease.wait` returns ``HELD`` (compute,
store, release; a thread renews it every ``lease_ttl / 3`` s), ``DONE`` (the key has a value) or
``NONE`` (``max_wait`` ran out, or the leases cannot be written: compute without one).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from ..config import Config
from ..kv.directory import DirectoryLeases, DirectoryStore
from .lease import Outcome

logger = logging.getLogger("pairio")
_MAX_POLL_S = 0.25
_LOG_EVERY_S = 30.0


class DirectoryLease:
    """The lease on ``key`` in ``collection`` of the directory store ``store``, for one computation of ``label``."""

    def __init__(self, cfg: Config, store: DirectoryStore, collection: str, key: str, label: str) -> None:
        self.cfg = cfg
        self.store = store
        self.leases = DirectoryLeases(store.directory)
        self.collection = collection
        self.key = key
        self.name = f"{collection}/{key}"
        self.label = label
        self.owner = os.urandom(16).hex()
        self.waited = False
        self._stop: threading.Event | None = None

    def wait(self) -> Outcome:
        """Take the lease, waiting while another host holds it (see the module)."""
        ttl = self.cfg.lease_ttl
        poll = min(_MAX_POLL_S, ttl / 10)
        info = {"host": socket.gethostname(), "pid": os.getpid(), "function": self.label}
        started = next_log = time.monotonic()
        while True:
            try:
                lease = self.leases.acquire_lease(self.name, self.owner, info, ttl)
                if lease.owner == self.owner:
                    self._start_renewing(ttl)
                    return Outcome.HELD
                if self.store.get(self.collection, self.key) is not None:
                    return Outcome.DONE
            except OSError as exc:
                logger.warning("%s %s: cannot take a lease in %s (%s); computing without one",
                               self.label, self.key[:8], self.leases.directory, exc)
                return Outcome.NONE
            who = lease.info
            if time.monotonic() >= next_log:
                logger.info("waiting for %s %s being computed on %s (pid %s) for %.0f s so far",
                            self.label, self.key[:8], who.get("host", "?"), who.get("pid", "?"),
                            time.time() - lease.acquired_at)
                next_log += _LOG_EVERY_S
            self.waited = True
            waited_s = time.monotonic() - started
            if self.cfg.max_wait is not None and waited_s >= self.cfg.max_wait:
                logger.warning("%s %s: gave up waiting after %.0f s (max_wait) for %s (pid %s); computing here",
                               self.label, self.key[:8], waited_s, who.get("host", "?"), who.get("pid", "?"))
                return Outcome.NONE
            time.sleep(poll)

    def _start_renewing(self, ttl: float) -> None:
        stop = self._stop = threading.Event()

        def renew() -> None:
            while not stop.wait(ttl / 3):
                try:
                    held = self.leases.renew_lease(self.name, self.owner, ttl)
                except OSError as exc:
                    logger.debug("renewing the lease on %s %s failed: %s", self.label, self.key[:8], exc)
                    continue
                if held is None:
                    logger.warning("%s %s: the lease on this computation was lost (lease_ttl %g s): another "
                                   "host may compute it too, which costs time but not correctness",
                                   self.label, self.key[:8], ttl)
                    return

        threading.Thread(target=renew, name=f"pairio-lease-{self.key[:8]}", daemon=True).start()

    def release(self) -> None:
        """Stop renewing and give the lease up (a failure only means it expires on its own)."""
        stop, self._stop = self._stop, None
        if stop is None:
            return
        stop.set()
        try:
            self.leases.release_lease(self.name, self.owner)
        except OSError as exc:
            logger.debug("could not release the lease on %s %s (it expires on its own): %s",
                         self.label, self.key[:8], exc)
