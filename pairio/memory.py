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
import inspect
import logging
import os
import reprlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .config import Config, config, get_config
from .errors import ConfigurationError
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
        """Forget every entry recorded in this Memory's store (the content goes at ``pairio gc``)."""
        if self._fields is None:
            return
        from .kv import local_store
        from .lifecycle import records

        with self._scope() as cfg:
            store = local_store(cfg)
            records.remove(store, records.entries(store))

    def reduce_size(self, bytes_limit: int | str | None = None, items_limit: int | None = None,
                    age_limit: Any = None) -> None:
        """Evict as joblib does: the entries not used for ``age_limit`` (a ``datetime.timedelta`` or
        seconds), those beyond the ``items_limit`` used last, then, through pairio's eviction, entries
        until the results take at most ``bytes_limit`` (default: the Memory's; bytes or ``"1G"``).
        The content of the entries removed by age or count goes at the next ``pairio gc``."""
        if self._fields is None:
            return
        from .kv import local_store
        from .lifecycle import records
        from .lifecycle.eviction import evict
        from .units import parse_size

        limit = self.bytes_limit if bytes_limit is None else bytes_limit
        with self._scope() as cfg:
            store = local_store(cfg)
            if age_limit is not None or items_limit is not None:
                found = sorted(records.entries(store), key=lambda e: -e.last_used)  # used last first
                drop = []
                if age_limit is not None:
                    seconds = age_limit.total_seconds() if hasattr(age_limit, "total_seconds") else float(age_limit)
                    oldest = time.time() - seconds
                    drop = [e for e in found if e.last_used < oldest]
                    found = [e for e in found if e.last_used >= oldest]
                if items_limit is not None:
                    if isinstance(items_limit, bool) or not isinstance(items_limit, int) or items_limit < 0:
                        raise ConfigurationError(f"reduce_size(items_limit=...) takes a count >= 0, "
                                                 f"got {items_limit!r}")
                    drop += found[items_limit:]
                records.remove(store, drop)
            if limit is not None:
                evict(cfg, max_size=parse_size(limit, "bytes_limit") if isinstance(limit, str) else int(limit))


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


def _format_time(seconds: float) -> str:
    return f"{seconds:.1f}s, {seconds / 60:.1f}min"  # as joblib writes durations


_ARG_REPR = reprlib.Repr()
_ARG_REPR.maxstring = _ARG_REPR.maxother = 60


class _LoggedFunction(CachedFunction):
    """``@pairio.cached`` that logs joblib's lines around a computation (``verbose`` > 0)."""

    joblib_verbose = 0  # joblib's level (``verbose`` is the decorator's short hit/miss line)
    _last_computed = threading.local()  # whether the last call in this thread computed

    def _run_and_store(self, cfg: Config, key: str, args: tuple, kwargs: dict, store: bool) -> Any:
        self._last_computed.value = True
        short = _short_name(self.__wrapped__)
        if self.joblib_verbose > 0:
            shown = [_ARG_REPR.repr(a) for a in args] + [f"{k}={_ARG_REPR.repr(v)}" for k, v in kwargs.items()]
            logger.info("[Memory] Calling %s...\n%s(%s)", self.name, short, ", ".join(shown))
        started = time.time()
        out = super()._run_and_store(cfg, key, args, kwargs, store)
        if self.joblib_verbose > 0:
            logger.info("[Memory] %s - %s", short, _format_time(time.time() - started))
        return out


def _short_name(func: Callable[..., Any]) -> str:
    """The name joblib's lines give a function (a ``functools.partial`` has none: its function's)."""
    return getattr(func, "__name__", None) or _short_name(getattr(func, "func", type(func)))


class MemorizedFunc:
    """joblib's ``MemorizedFunc`` API over ``@pairio.cached``, plus pairio's ``key``, ``explain``,
    ``is_cached`` and ``forget``.

    ``verbose`` as joblib's: above 0, a miss logs ``[Memory] Calling ...`` and its duration;
    above 4, a hit logs ``... cache loaded``; through the ``pairio`` logger, at INFO.
    """

    def __init__(self, memory: Memory, func: Callable[..., Any], ignore: Iterable[str] | None = None,
                 verbose: int = 1, cache_validation_callback: Callable[[dict], bool] | None = None) -> None:
        self.memory = memory
        self.func = func
        self.ignore = list(ignore or ())
        self.verbose = verbose
        self.cache_validation_callback = cache_validation_callback
        self._cached = _LoggedFunction(func, ignore=self.ignore, verbose=None if verbose else False)
        self._cached.joblib_verbose = verbose
        functools.update_wrapper(self, func)

    def __reduce__(self) -> tuple:
        return MemorizedFunc, (self.memory, self.func, self.ignore, self.verbose, self.cache_validation_callback)

    def __repr__(self) -> str:
        return f"<pairio.Memory cached {self._cached.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.memory._fields is None:
            return self.func(*args, **kwargs)
        with self.memory._scope():
            if self.cache_validation_callback is not None and not self._valid(args, kwargs):
                return self._cached.recompute(*args, **kwargs)
            if self.verbose <= 4:
                return self._cached(*args, **kwargs)  # the key is computed once, as for @pairio.cached
            flag = _LoggedFunction._last_computed
            flag.value = False
            started = time.time()
            out = self._cached(*args, **kwargs)
            if not flag.value:
                logger.info("[Memory] %s cache loaded - %s", _short_name(self.func), _format_time(time.time() - started))
            return out

    def _valid(self, args: tuple, kwargs: dict) -> bool:
        """False if the stored result of this call is rejected by ``cache_validation_callback``
        (given joblib's metadata of the stored call); True if it is kept or nothing is stored."""
        from .kv import local_store
        from .lifecycle import records

        cfg = get_config()
        key = self._cached.key(*args, **kwargs)
        entry = records.get(local_store(cfg), self._cached.collection or cfg.collection, key)
        if entry is None:
            return True
        return bool(self.cache_validation_callback(  # type: ignore[misc]
            {"duration": entry.seconds, "input_args": self._input_args(args, kwargs), "time": entry.created}))

    def _input_args(self, args: tuple, kwargs: dict) -> dict[str, str]:
        """joblib's ``input_args``: each argument's repr by name, defaults applied, ``ignore`` left out
        (``*`` and ``**`` for variadic ones)."""
        signature = inspect.signature(self.func)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        out = {}
        for name, value in bound.arguments.items():
            kind = signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                name, value = "*", list(value)
            elif kind is inspect.Parameter.VAR_KEYWORD:
                name, value = "**", dict(value)
            if name not in self.ignore:
                out[name] = repr(value)
        return out

    def call(self, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """Compute the call even if it is cached (as joblib's ``call`` does), store it and return the
        output with its metadata: ``duration``, ``input_args`` (each argument's repr), ``time``."""
        started = time.time()
        if self.memory._fields is None:
            out = self.func(*args, **kwargs)
        else:
            with self.memory._scope():
                out = self._cached.recompute(*args, **kwargs)
        return out, {"duration": time.time() - started, "input_args": self._input_args(args, kwargs),
                     "time": started}

    def call_and_shelve(self, *args: Any, **kwargs: Any) -> MemorizedResult:
        """Compute (or find) the call and return a :class:`MemorizedResult` for it."""
        self(*args, **kwargs)
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
