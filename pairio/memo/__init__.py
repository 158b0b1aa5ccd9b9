"""Memoized pipeline steps: the ``@cached`` decorator, key derivation, result storage, single flight, stats."""

from __future__ import annotations

from .call_stats import reset as reset_stats
from .call_stats import stats
from .decorator import BoundCachedMethod, CachedFunction, cached
from .key import KEY_FORMAT

__all__ = ["KEY_FORMAT", "BoundCachedMethod", "CachedFunction", "cached", "reset_stats", "stats"]
