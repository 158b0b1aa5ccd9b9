"""``pairio.Memory``: a drop-in for ``joblib.Memory`` whose cache is pairio's.

``Memory(location).cache(func)`` returns a :class:`MemorizedFunc` over ``@pairio.cached``: the key
counts the function's code with its helpers, dependency versions and the arguments by content.
When joblib is installed, :class:`Memory` subclasses ``joblib.Memory`` (nilearn checks
``isinstance(memory, joblib.Memory)``); this module is loaded by ``pairio.Memory``, not by
``import pairio``.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .config import Config, config, get_config
from .memo.decorator import CachedFunction

logger = logging.getLogger("pairio")

try:
    import joblib as _joblib

    _Base: type = _joblib.Memory
except ImportError:  # usable without joblib
    _joblib = None
    _Base = object


def _fields(location: Any) -> dict[str, Any] | None:
    """The config fields a ``location`` stands for; None: no caching."""
    if location is None:
        return None
    if isinstance(location, Config):
        return {f: getattr(location, f) for f in location.__dataclass_fields__}
    if location == "config":
        return {}
    if isinstance(location, (str, os.PathLike)):
        return {"database_path": os.fspath(location)}
    raise TypeError(f"pairio.Memory(location=...) takes a directory, a pairio.Config, 'config' or None, "
                    f"got {type(location).__name__}")


class Memory(_Base):  # type: ignore[misc,valid-type]
    """A ``joblib.Memory`` whose store is pairio's.

    ``location``: a directory (a pairio store there), a ``pairio.Config`` or ``"config"`` (the
    configured store, server included), or None (no caching: functions run every time).
    ``verbose`` logs joblib-like lines through the ``pairio`` logger; ``bytes_limit`` is applied by
    ``reduce_size``. Accepted and ignored: ``backend``, ``mmap_mode`` (pairio's ``mmap`` config
    decides), ``compress``, ``backend_options``.
    """

    def __init__(self, location: Any = None, backend: str = "local", mmap_mode: str | None = None,
                 compress: bool | int = False, verbose: int = 1, bytes_limit: int | str | None = None,
                 backend_options: dict | None = None) -> None:
        self._fields = _fields(location)
        self.location = location
        self.backend = backend
        self.mmap_mode = mmap_mode
        self.compress = compress
        self.verbose = verbose
        self.bytes_limit = bytes_limit
        self.backend_options = backend_options or {}
        self.store_backend = None  # joblib's attribute: None means no caching to its callers too

    def __repr__(self) -> str:
        return f"pairio.Memory(location={self.location!r})"

    def __reduce__(self) -> tuple:
        return Memory, (self.location, self.backend, self.mmap_mode, self.compress, self.verbose,
                        self.bytes_limit, self.backend_options)

    @contextlib.contextmanager
    def _scope(self) -> Iterator[Config]:
        with config(**(self._fields or {})) as cfg:
            yield cfg

    def cache(self, func: Callable[..., Any] | None = None, ignore: Iterable[str] | None = None,
              verbose: int | None = None, mmap_mode: Any = False,
              cache_validation_callback: Callable[[dict], bool] | None = None) -> Any:
        """Decorate ``func`` (with or without arguments) as joblib does; returns a :class:`MemorizedFunc`."""
        if func is None:
            return functools.partial(self.cache, ignore=ignore, verbose=verbose, mmap_mode=mmap_mode,
                                     cache_validation_callback=cache_validation_callback)
        if isinstance(func, MemorizedFunc):
            func = func.func
        return MemorizedFunc(self, func, ignore=ignore, verbose=self.verbose if verbose is None else verbose,
                             cache_validation_callback=cache_validation_callback)

    def eval(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``func(*args, **kwargs)``, cached."""
        return self.cache(func)(*args, **kwargs)

    def clear(self, warn: bool = True) -> None:
        """Forget every entry recorded in this Memory's store."""
        if self._fields is None:
            return
        from .lifecycle import api as lifecycle_api

        with self._scope():
            names = {e.function for e in lifecycle_api.entries()}
            for name in names:
                lifecycle_api.forget(name)

    def reduce_size(self, bytes_limit: int | str | None = None, items_limit: int | None = None,
                    age_limit: Any = None) -> None:
        """Evict entries beyond ``bytes_limit`` (default: the Memory's), ``items_limit`` or older than
        ``age_limit`` (a ``datetime.timedelta`` or seconds), through pairio's eviction."""
        if self._fields is None:
            return
        from .lifecycle import api as lifecycle_api

        limit = self.bytes_limit if bytes_limit is None else bytes_limit
        with self._scope():
            if age_limit is not None:
                seconds = age_limit.total_seconds() if hasattr(age_limit, "total_seconds") else float(age_limit)
                for name in {e.function for e in lifecycle_api.entries()}:
                    lifecycle_api.forget(name, older_than=seconds)
            if items_limit is not None:
                for entry in lifecycle_api.entries()[items_limit:]:
                    lifecycle_api.forget(entry.function, older_than=time.time() - entry.created)
            if limit is not None:
                from .lifecycle.eviction import evict
                from .lifecycle.units import parse_size

                evict(get_config(), max_size=parse_size(limit) if isinstance(limit, str) else int(limit))


class MemorizedResult:
    """A shelved result (``MemorizedFunc.call_and_shelve``): ``get()`` loads it, ``clear()`` forgets it."""

    def __init__(self, memorized: MemorizedFunc, args: tuple, kwargs: dict) -> None:
        self._memorized, self._args, self._kwargs = memorized, args, kwargs

    def get(self) -> Any:
        """The stored result (computed again if it was evicted)."""
        return self._memorized(*self._args, **self._kwargs)

    def clear(self) -> None:
        """Forget the stored result."""
        self._memorized.forget(*self._args, **self._kwargs)


class MemorizedFunc:
    """joblib's ``MemorizedFunc`` API over ``@pairio.cached``, plus pairio's ``key``, ``explain``,
    ``is_cached`` and ``forget``."""

    def __init__(self, memory: Memory, func: Callable[..., Any], ignore: Iterable[str] | None = None,
                 verbose: int = 1, cache_validation_callback: Callable[[dict], bool] | None = None) -> None:
        self.memory = memory
        self.func = func
        self.ignore = list(ignore or ())
        self.verbose = verbose
        self.cache_validation_callback = cache_validation_callback
        self._cached = CachedFunction(func, ignore=self.ignore, verbose=None if verbose else False)
        functools.update_wrapper(self, func)

    def __reduce__(self) -> tuple:
        return MemorizedFunc, (self.memory, self.func, self.ignore, self.verbose, self.cache_validation_callback)

    def __repr__(self) -> str:
        return f"<pairio.Memory cached {self._cached.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.memory._fields is None:
            return self.func(*args, **kwargs)
        if self.cache_validation_callback is None and not self.verbose:
            with self.memory._scope():
                return self._cached(*args, **kwargs)  # the key is computed once, as for @pairio.cached
        return self.call(*args, **kwargs)[0]

    def call(self, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """The output and its metadata (``duration``, ``time``), as joblib's ``call`` returns them."""
        if self.memory._fields is None:
            started = time.time()
            out = self.func(*args, **kwargs)
            return out, {"duration": time.time() - started, "time": started, "input_args": {}}
        with self.memory._scope():
            started = time.time()
            stored = self._stored_time(args, kwargs)
            if stored is not None and self.cache_validation_callback is not None:
                meta = {"duration": None, "time": stored, "input_args": {}}
                if not self.cache_validation_callback(meta):
                    stored = -1.0  # rejected: computed again below
            if self.verbose:
                logger.info("[Memory] %s %s", "loading from cache" if stored and stored > 0 else "calling",
                            self._cached.name)
            out = self._cached.recompute(*args, **kwargs) if stored == -1.0 else self._cached(*args, **kwargs)
            duration = time.time() - started
            if self.verbose:
                logger.info("[Memory] %s - %.1fs", self._cached.name, duration)
            return out, {"duration": duration, "time": started, "input_args": {}}

    def _stored_time(self, args: tuple, kwargs: dict) -> float | None:
        """When this call's result was stored here (the local record), None if it is not recorded."""
        if self.cache_validation_callback is None and not self.verbose:
            return None  # nobody asks: spare a hit the read of the records
        from .lifecycle import api as lifecycle_api

        key = self._cached.key(*args, **kwargs)
        return next((e.created for e in lifecycle_api.entries(self._cached.name) if e.key == key), None)

    def call_and_shelve(self, *args: Any, **kwargs: Any) -> MemorizedResult:
        """Compute (or find) the call and return a :class:`MemorizedResult` for it."""
        self.call(*args, **kwargs)
        return MemorizedResult(self, args, kwargs)

    def check_call_in_cache(self, *args: Any, **kwargs: Any) -> bool:
        """True if this call's result is stored."""
        return self.is_cached(*args, **kwargs)

    def clear(self, warn: bool = True) -> None:
        """Forget every stored result of this function."""
        if self.memory._fields is not None:
            with self.memory._scope():
                self._cached.clear()

    def _in_scope(name: str) -> Callable[..., Any]:  # type: ignore[misc]
        def method(self: MemorizedFunc, *args: Any, **kwargs: Any) -> Any:
            if self.memory._fields is None:
                return False if name in ("is_cached", "forget") else getattr(self._cached, name)(*args, **kwargs)
            with self.memory._scope():
                return getattr(self._cached, name)(*args, **kwargs)

        method.__name__ = name
        method.__doc__ = getattr(CachedFunction, name).__doc__
        return method

    key = _in_scope("key")
    explain = _in_scope("explain")
    is_cached = _in_scope("is_cached")
    forget = _in_scope("forget")
    del _in_scope


__all__ = ["Memory", "MemorizedFunc", "MemorizedResult", "get_config"]
