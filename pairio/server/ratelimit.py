"""Rate limits per (channel, collection, operation), as token buckets.

Each bucket holds up to a minute's allowance and refills continuously at
``per_minute / 60`` tokens a second. Every pair counts: a ``get_many`` of N keys
takes N get tokens, a ``set_many`` of N pairs N set tokens, so batching does not
bypass a limit. A batch larger than a whole minute's allowance is let through
when the bucket is full, leaving it in debt, so such a batch is slowed, not
refused forever.

This class keeps the buckets in this process's memory (one server process per
store); :class:`pairio.server.backends.postgres.PostgresCoordination` applies the
same rule to buckets in PostgreSQL shared by replicas (see server/README.md).
"""

from __future__ import annotations

import math
import threading
import time


class RateLimiter:
    """Token buckets keyed by (channel, collection, 'get' or 'set'); thread-safe."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, str, str], list[float]] = {}  # key -> [tokens, updated]
        self._lock = threading.Lock()

    def acquire(self, key: tuple[str, str, str], per_minute: int, count: int = 1) -> float:
        """Take ``count`` tokens; 0.0 if allowed, else the seconds to wait before retrying."""
        now = self._clock()
        rate = per_minute / 60.0
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = [float(per_minute), now]
            else:
                bucket[0] = min(float(per_minute), bucket[0] + (now - bucket[1]) * rate)
                bucket[1] = now
            needed = min(count, per_minute)
            if bucket[0] >= needed:
                bucket[0] -= count
                return 0.0
            return (needed - bucket[0]) / rate

    def __len__(self) -> int:
        """The number of buckets kept."""
        return len(self._buckets)

    def wait(self, key: tuple[str, str, str], per_minute: int) -> float:
        """The seconds until one token can be taken from ``key`` (0.0: now), taking none."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                return 0.0
            tokens = min(float(per_minute), bucket[0] + (self._clock() - bucket[1]) * per_minute / 60.0)
        return 0.0 if tokens >= 1 else (1 - tokens) * 60.0 / per_minute

    def forget_idle(self, seconds: float = 60.0) -> None:
        """Drop the buckets untouched for ``seconds`` (a bucket refills within a minute unless a batch
        left it in debt): bounds memory when the keys are many, as client addresses are."""
        cutoff = self._clock() - seconds
        with self._lock:
            self._buckets = {k: b for k, b in self._buckets.items() if b[1] > cutoff or b[0] < 0}


def retry_after_header(seconds: float) -> str:
    """The Retry-After value (whole seconds, at least 1) for a wait of ``seconds``."""
    return str(max(1, math.ceil(seconds)))
