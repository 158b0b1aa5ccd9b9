"""Coordination held in this process's memory: right for one server process per store."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from ...signing import NonceCache
from ..ratelimit import RateLimiter
from .base import Coordination, Lease

_DAY = 86_400


class MemoryCoordination(Coordination):
    """Nonces, token buckets, daily upload counts and leases in memory; thread-safe."""

    def __init__(self, max_nonces: int = 2_000_000, clock=time.monotonic) -> None:
        self._nonces = NonceCache(max_size=max_nonces)
        self._limiter = RateLimiter(clock)
        self._uploads: dict[str, tuple[int, int]] = {}  # channel -> (UTC day number, bytes)
        self._leases: dict[str, Lease] = {}
        self._lock = threading.Lock()

    def add_nonce(self, channel: str, nonce: str, expires_at: float, now: float | None = None) -> bool:
        return self._nonces.add(channel, nonce, expires_at, now)

    def take_tokens(self, bucket: tuple[str, str, str], per_minute: int, count: int = 1) -> float:
        return self._limiter.acquire(bucket, per_minute, count)

    def add_upload_bytes(self, channel: str, nbytes: int, quota: int, now: float | None = None) -> float:
        now = time.time() if now is None else now
        day = int(now // _DAY)
        with self._lock:
            counted_day, used = self._uploads.get(channel, (day, 0))
            if counted_day != day:
                used = 0
            if used + nbytes > quota:
                return (day + 1) * _DAY - now
            self._uploads[channel] = (day, used + nbytes)
            return 0.0

    def uploaded_today(self, channel: str, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self._lock:
            day, used = self._uploads.get(channel, (-1, 0))
            return used if day == int(now // _DAY) else 0

    def acquire_lease(self, name: str, owner: str, info: Mapping[str, Any], ttl: float,
                      now: float | None = None) -> Lease:
        now = time.time() if now is None else now
        with self._lock:
            if len(self._leases) > 10_000:
                self._leases = {n: lease for n, lease in self._leases.items() if lease.expires_at > now}
            held = self._leases.get(name)
            if held is not None and held.expires_at > now and held.owner != owner:
                return held
            acquired = held.acquired_at if held is not None and held.owner == owner else now
            lease = self._leases[name] = Lease(name, owner, dict(info), acquired, now + ttl)
            return lease

    def renew_lease(self, name: str, owner: str, ttl: float, now: float | None = None) -> Lease | None:
        now = time.time() if now is None else now
        with self._lock:
            held = self._leases.get(name)
            # An expired lease nobody else took is still ours to renew: nothing has changed hands.
            if held is None or held.owner != owner:
                return None
            lease = self._leases[name] = Lease(name, owner, held.info, held.acquired_at, now + ttl)
            return lease

    def release_lease(self, name: str, owner: str) -> bool:
        with self._lock:
            held = self._leases.get(name)
            if held is None or held.owner != owner:
                return False
            del self._leases[name]
            return True

    def leases(self, now: float | None = None) -> list[Lease]:
        now = time.time() if now is None else now
        with self._lock:
            held = [lease for lease in self._leases.values() if lease.expires_at > now]
        return sorted(held, key=lambda lease: lease.acquired_at)
