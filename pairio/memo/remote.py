"""``@pairio.cached`` with a server: pairs read and written along ``get_from``/``set_to``, and outages.

A cache outage never stops a pipeline. A server that is unreachable, fails (5xx),
rejects the channel (401) or refuses an operation (403, 404, 429) is, for a cached
call, a remote miss or a failed remote store: the call warns once, naming the server
and the cause, computes, and stores locally. After a failure the server is skipped
for :data:`SKIP_S` seconds (no call pays for retries against a server that is down;
no warning is repeated meanwhile), then tried again. An operation the channel may not
do on a collection (403, or 404: a collection it does not list) is remembered for the process: a read-only channel warns
once, then its results are kept locally without asking again. ``strict_remote=True``
raises the errors instead.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import warnings
from typing import TYPE_CHECKING

from ..config import Config
from ..errors import BadRequestError, PermissionDeniedError, RemoteError
from ..kv import local_store, remote_store

if TYPE_CHECKING:  # the HTTP client (requests) is imported only where a server is used
    from ..kv.remote import RemoteStore

logger = logging.getLogger("pairio")

SKIP_S = 30.0


@dataclasses.dataclass
class _Health:
    skip_until: float = 0.0
    denied: set[tuple[str, str]] = dataclasses.field(default_factory=set)  # (operation, collection)


_lock = threading.Lock()
_health: dict[tuple, _Health] = {}


class Server:
    """The server as one configuration of cached calls sees it: its store, its health."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.store: RemoteStore = remote_store(cfg)  # type: ignore[assignment]
        identity = (cfg.url, cfg.channel, cfg.database_path)
        with _lock:
            self._health = _health.setdefault(identity, _Health())

    def up(self) -> bool:
        """False while the server is skipped after a failure."""
        return time.monotonic() >= self._health.skip_until

    def may(self, operation: str, collection: str) -> bool:
        """True if the server is up and ``operation`` (get, set) was not refused on ``collection``."""
        return self.up() and (operation, collection) not in self._health.denied

    def failed(self, exc: RemoteError, operation: str, collection: str, doing: str) -> None:
        """A remote operation failed: raise with ``strict_remote``, else warn once and go on without it."""
        if self.cfg.strict_remote:
            raise exc
        if isinstance(exc, (PermissionDeniedError, BadRequestError)):
            with _lock:
                first = (operation, collection) not in self._health.denied
                self._health.denied.add((operation, collection))
            if first:
                consequence = ("results are computed here and not recorded on the server"
                               if operation == "set" else "results are looked up locally only")
                warn(f"{doing}: {exc}; {consequence} (said once per collection)")
            return
        with _lock:
            first = self.up()
            self._health.skip_until = time.monotonic() + SKIP_S
        if first:
            warn(f"{doing}: {exc}; going on without the server for {SKIP_S:.0f} s: results are computed and "
                 "stored locally (strict_remote=True raises instead)")
        else:
            logger.debug("%s: %s", doing, exc)

    # --- pairs -------------------------------------------------------------------------

    def get_pairs(self, collection: str, keys: list[str], doing: str) -> tuple[dict[str, str], bool]:
        """The stored pairs among ``keys`` along ``get_from``, and whether they came from the server."""
        mode = self.cfg.get_from
        local = local_store(self.cfg)
        if mode == "local_then_remote":
            found = local.get_many(collection, keys)
            if keys[0] in found or not self.may("get", collection):
                return found, False
            more = self._remote_get(collection, keys, doing)
            if more:
                local.set_many(collection, more)
            return {**found, **more}, bool(more)
        found = self._remote_get(collection, keys, doing) if self.may("get", collection) else {}
        if keys[0] in found:
            return found, True
        if mode == "remote_then_local":
            return local.get_many(collection, keys), False
        return found, False

    def _remote_get(self, collection: str, keys: list[str], doing: str) -> dict[str, str]:
        try:
            return self.store.get_many(collection, keys)
        except RemoteError as exc:
            self.failed(exc, "get", collection, doing)
            return {}

    def set_pairs(self, collection: str, pairs: dict[str, str | None], doing: str) -> bool:
        """Store ``pairs`` along ``set_to``; True if the server has them.

        If the server should have them and cannot, they are stored locally instead.
        """
        local = local_store(self.cfg)
        if self.cfg.set_to != "remote":
            local.set_many(collection, pairs)
        if self.cfg.set_to == "local":
            return False
        if self.may("set", collection):
            try:
                self.store.set_many(collection, pairs)
                return True
            except RemoteError as exc:
                self.failed(exc, "set", collection, doing)
        if self.cfg.set_to == "remote":
            local.set_many(collection, pairs)
        return False


def warn(message: str) -> None:
    """One message for one event: a RuntimeWarning (``logging.captureWarnings`` routes it to logs)."""
    warnings.warn(message, RuntimeWarning, stacklevel=2)


def forget_health() -> None:
    """Forget every server's failures: the next call tries each server again."""
    with _lock:
        _health.clear()

