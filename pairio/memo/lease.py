"""One computation per key across machines: the server's lease on a key, held while it is computed.

Within a machine the file lock of :mod:`.flight` already keeps a key to one computer,
so only that one asks the server. :meth:`ServerLease.wait` asks for the key's lease
until one of three things happens:

- the lease is ours (``HELD``): compute, store, then :meth:`ServerLease.release`;
  meanwhile a daemon thread renews it every ``lease_ttl / 3`` seconds;
- the key has a value by now (``DONE``): look the result up;
- no lease (``NONE``): the server failed (see :mod:`.remote`), or ``max_wait`` ran out;
  compute without one.

A waiter logs whom it waits for (host, process, function, for how long), again every
30 s. A holder that dies stops renewing; its lease expires and one waiter takes over.

The renewals run in a Python thread, so they need the GIL now and then. Pure Python
code and most numerical libraries (numpy, which releases the GIL in its long loops) let
it run; a C extension that holds the GIL for longer than two thirds of ``lease_ttl``
stalls it, the lease can expire and a second computer may start the same step. That
costs a duplicate computation, never a wrong result (results are content-addressed and
the first value stored wins), and the holder logs a warning when it finds its lease
lost. Raise ``lease_ttl`` for such steps.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time

from ..config import Config
from ..errors import RemoteError
from . import remote

logger = logging.getLogger("pairio")

# Waiters ask the server this often at most (and a tenth of the TTL at least): a step worth
# a lease takes longer than this, and every poll is a request every waiter makes.
_MAX_POLL_S = 0.25
_LOG_EVERY_S = 30.0


class Outcome(enum.Enum):
    HELD = "held"   # the lease is ours: compute
    DONE = "done"   # the key has a value: look it up
    NONE = "none"   # no lease (server failed, or max_wait ran out): compute without one


class ServerLease:
    """The lease on ``key`` in ``collection`` for one computation of ``label``."""

    def __init__(self, cfg: Config, server: remote.ServerLink, collection: str, key: str, label: str) -> None:
        self.cfg = cfg
        self.server = server
        self.collection = collection
        self.key = key
        self.label = label
        self.owner = os.urandom(16).hex()
        self.waited = False
        self._renewer: _Renewer | None = None

    def wait(self) -> Outcome:
        """Ask for the lease until it is ours, the key is done, or there is no point (see the module)."""
        if not self.server.may("set", self.collection):
            return Outcome.NONE
        ttl = self.cfg.lease_ttl
        poll = min(_MAX_POLL_S, ttl / 10)
        import socket  # only a lease on a server needs the host name: `import pairio` stays light

        info = {"host": socket.gethostname(), "pid": os.getpid(), "function": self.label}
        started = time.monotonic()
        next_log = started
        while True:
            try:
                answer = self.server.store.acquire_lease(self.collection, self.key, self.owner, ttl, info)
            except RemoteError as exc:
                self.server.failed(exc, "set", self.collection, f"{self.label} {self.key[:8]}: taking the lease")
                return Outcome.NONE
            if answer["held"]:
                self._renewer = _Renewer(self, ttl)
                self._renewer.start()
                return Outcome.HELD
            if answer.get("value") is not None:
                return Outcome.DONE
            waited_s = time.monotonic() - started
            holder = answer.get("lease") or {}
            who = holder.get("info") or {}
            if time.monotonic() >= next_log:
                logger.info("waiting for %s %s being computed on %s (pid %s) for %.0f s so far",
                            self.label, self.key[:8], who.get("host", "?"), who.get("pid", "?"),
                            time.time() - holder.get("acquired_at", time.time()))
                next_log += _LOG_EVERY_S
            self.waited = True
            if self.cfg.max_wait is not None and waited_s >= self.cfg.max_wait:
                logger.warning("%s %s: gave up waiting after %.0f s (max_wait) for %s (pid %s); computing here",
                               self.label, self.key[:8], waited_s, who.get("host", "?"), who.get("pid", "?"))
                return Outcome.NONE
            time.sleep(poll)

    def release(self) -> None:
        """Stop renewing and give the lease up (a failure only means it expires on its own)."""
        renewer, self._renewer = self._renewer, None
        if renewer is None:
            return
        renewer.stop()
        try:
            self.server.store.release_lease(self.collection, self.key, self.owner)
        except RemoteError as exc:
            logger.debug("could not release the lease on %s %s (it expires on its own): %s",
                         self.label, self.key[:8], exc)


class _Renewer(threading.Thread):
    """Renews a held lease every ttl/3 seconds until stopped."""

    def __init__(self, lease: ServerLease, ttl: float) -> None:
        super().__init__(name=f"pairio-lease-{lease.key[:8]}", daemon=True)
        self.lease = lease
        self.ttl = ttl
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=self.lease.cfg.timeout)

    def run(self) -> None:
        lease = self.lease
        renewed = time.monotonic()
        while not self._stop_event.wait(self.ttl / 3):
            try:
                held = lease.server.store.renew_lease(lease.collection, lease.key, lease.owner, self.ttl)
            except RemoteError as exc:
                # The next tick tries again; the lease is lost only once it has expired.
                logger.debug("renewing the lease on %s %s failed: %s", lease.label, lease.key[:8], exc)
                continue
            now = time.monotonic()
            if not held:
                logger.warning(
                    "%s %s: the lease on this computation was lost (last renewed %.1f s ago, lease_ttl %g s; "
                    "a call that holds the GIL that long stalls renewals): another computer may compute it "
                    "too, which costs time but not correctness", lease.label, lease.key[:8],
                    now - renewed, self.ttl)
                return
            renewed = now
