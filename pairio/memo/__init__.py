"""Memoized pipeline steps: the ``@cached`` decorator, key derivation, result storage, single flight, stats."""

from __future__ import annotations

from .call_stats import reset as reset_stats
from .call_stats import stats
from .decorator import BoundCachedMethod, CachedFunction, cached


def __getattr__(name: str):
    # KEY_FORMAT lives with key derivation, which loads when the first function is decorated.
    if name == "KEY_FORMAT":
        from .key import KEY_FORMAT

        return KEY_FORMAT
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["KEY_FORMAT", "BoundCachedMethod", "CachedFunction", "cached", "reset_stats", "stats"]
