"""The server's backend interfaces: coordination between requests (and replicas), and content.

Nothing above these classes knows which implementation it talks to. Each method is
atomic on its own: two replicas calling it at once see one of the two orders.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Lease:
    """A claim on ``name`` (a cache key) until ``expires_at`` (seconds since the epoch).

    ``owner`` is the holder's opaque token, unique to one acquisition; ``info`` says who
    the holder is, for people (host, process, function).
    """

    name: str
    owner: str
    info: Mapping[str, Any]
    acquired_at: float
    expires_at: float


class Coordination(abc.ABC):
    """What every request of every replica must agree on: nonces, rate limits, quotas, leases."""

    @abc.abstractmethod
    def add_nonce(self, channel: str, nonce: str, expires_at: float, now: float | None = None) -> bool:
        """Record ``nonce`` until ``expires_at``; False if it was already recorded (a replay).

        May raise :class:`pairio.signing.NonceCacheFull` rather than forget a live nonce.
        """

    @abc.abstractmethod
    def take_tokens(self, bucket: tuple[str, str, str], per_minute: int, count: int = 1) -> float:
        """Take ``count`` tokens from a bucket refilling at ``per_minute``: 0.0 if allowed, else the
        seconds to wait before retrying (see :mod:`pairio.server.ratelimit` for the exact rule)."""

    @abc.abstractmethod
    def add_upload_bytes(self, channel: str, nbytes: int, quota: int, now: float | None = None) -> float:
        """Count ``nbytes`` against ``channel``'s daily (UTC) upload ``quota``: 0.0 if within it (and
        counted), else the seconds until the day's count resets (and nothing is counted)."""

    @abc.abstractmethod
    def uploaded_today(self, channel: str, now: float | None = None) -> int:
        """The bytes counted against ``channel``'s quota on this UTC day."""

    @abc.abstractmethod
    def acquire_lease(self, name: str, owner: str, info: Mapping[str, Any], ttl: float,
                      now: float | None = None) -> Lease:
        """Take the lease on ``name`` for ``ttl`` seconds if it is free or expired.

        Returns the lease that holds after the call: ours if ``lease.owner == owner``,
        else the current holder's (acquiring a lease one already holds renews it).
        """

    @abc.abstractmethod
    def renew_lease(self, name: str, owner: str, ttl: float, now: float | None = None) -> Lease | None:
        """Extend ``owner``'s lease on ``name`` to ``now + ttl``; None if ``owner`` no longer holds it."""

    @abc.abstractmethod
    def release_lease(self, name: str, owner: str) -> bool:
        """Give up ``owner``'s lease on ``name``; False if ``owner`` did not hold it."""

    @abc.abstractmethod
    def leases(self, now: float | None = None) -> list[Lease]:
        """The leases held (unexpired), oldest first."""

    def check(self) -> None:
        """Raise a PairioError if the coordination cannot be used now (a cheap probe)."""
        self.uploaded_today("pairio.health")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and other resources."""


class Upload(abc.ABC):
    """An object being received: written, then committed (visible under its SHA-1) or aborted.

    Use as a context manager: leaving the block without :meth:`commit` aborts.
    """

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Append ``data`` to the object being received."""

    @abc.abstractmethod
    def commit(self) -> int:
        """Make the object visible under its SHA-1, atomically, and return its size.

        Raises :class:`pairio.CorruptContentError` (and keeps nothing) if the bytes written
        do not hash to the SHA-1 the upload was opened for. Committing an object that is
        already present keeps the one copy.
        """

    @abc.abstractmethod
    def abort(self) -> None:
        """Discard everything written; nothing becomes visible. Safe to call twice."""

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


class ContentBackend(abc.ABC):
    """Immutable objects named by their SHA-1 (40 lowercase hex digits, already validated)."""

    @abc.abstractmethod
    def size(self, sha1: str) -> int | None:
        """The object's size in bytes, or None if it is absent."""

    def missing(self, sha1s: Iterable[str]) -> list[str]:
        """Those of ``sha1s`` that are absent, in their order (one batch, like FindMissingBlobs)."""
        return [sha1 for sha1 in sha1s if self.size(sha1) is None]

    @abc.abstractmethod
    def read(self, sha1: str, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """The bytes ``[start, stop)`` of the object, in chunks of bounded size.

        Raises :class:`pairio.ContentNotFoundError` before yielding if the object is absent.
        """

    @abc.abstractmethod
    def upload(self, sha1: str) -> Upload:
        """Begin receiving the object ``sha1``; see :class:`Upload`."""

    def check(self) -> None:
        """Raise a PairioError (or OSError) if the content cannot be used now (a cheap probe)."""
        self.size("0" * 40)

    @abc.abstractmethod
    def usage(self) -> tuple[int, int]:
        """How many objects are stored, and their bytes (for metrics: may walk every object)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and other resources."""
