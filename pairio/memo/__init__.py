"""Memoized pipeline steps: the ``@cached`` decorator, key derivation, result storage, single flight, stats."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .decorator import BoundCachedMethod, CachedFunction, cached

if TYPE_CHECKING:
    from .call_stats import reset as reset_stats
    from .call_stats import stats
    from .key import KEY_FORMAT


def __getattr__(name: str):
    # Loaded at first use, not with the decorator: the call counts (and the stores they are written
    # to), and KEY_FORMAT with key derivation, which loads when the first function is decorated.
    if name in ("stats", "reset_stats"):
        from . import call_stats

        return call_stats.stats if name == "stats" else call_stats.reset
    if name == "KEY_FORMAT":
        from .key import KEY_FORMAT

        return KEY_FORMAT
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["KEY_FORMAT", "BoundCachedMethod", "CachedFunction", "cached", "reset_stats", "stats"]
