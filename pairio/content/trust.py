"""Whose content runs: pickles from trusted writers are unpickled as they are, others as data only.

An object this user pickled (a result computed here, ``store_pickle``) is trusted. An object
that came from a server (:meth:`ContentStore.mark_foreign`) is not, unless the pair naming it
is signed by a writer the reader trusts: such a load passes ``trusted=True``. Untrusted content
is unpickled by :mod:`pairio.content.safe_pickle`. ``trust="all"`` (config field, or
``PAIRIO_TRUST=all``) unpickles everything as pickle does, with one warning per process.
"""

from __future__ import annotations

import threading

from ..config import Config
from ..user_warnings import warn_user
from . import safe_pickle
from .pickles import Safe, calls_nothing
from .store import ContentStore


class _Once:
    """Messages said once per process; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._said: set[str] = set()

    def first(self, what: str) -> bool:
        with self._lock:
            if what in self._said:
                return False
            self._said.add(what)
            return True

    def clear(self) -> None:
        with self._lock:
            self._said.clear()


_once = _Once()


def warn_once(what: str, message: str) -> None:
    """Warn ``message`` unless a warning about ``what`` was given in this process already."""
    if _once.first(what):
        warn_user(message)


def forget_warnings() -> None:
    """Forget what was said: the next untrusted load warns again (for tests)."""
    _once.clear()


def safe_for(cfg: Config, store: ContentStore, sha1: str, trusted: bool = False, data: bytes | None = None) -> Safe:
    """How to unpickle object ``sha1`` of ``store``: None (as pickle does) if it is trusted, else the
    extra globals allowed when it is loaded as data only. ``trusted``: True if the pair naming it is
    signed by a trusted writer; else where the object came from decides. ``data``: the object's
    bytes, if read already: a small pickle that can only build plain data (:func:`calls_nothing`)
    loads alike either way, so where it came from is not asked (a small hit spares a system call)."""
    if cfg.trust == "all":
        warn_once("trust=all", "trust='all': pickles from any writer are unpickled as they are, and may run "
                  "code on this machine (said once)")
        return None
    if trusted or (data is not None and calls_nothing(data)) or not store.is_foreign(sha1):
        return None
    return safe_pickle.safe_globals_of(cfg.safe_globals) if cfg.safe_globals else frozenset()
