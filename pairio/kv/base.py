"""The key/value store interface.

Stores take keys and values that are already validated strings (see
:mod:`pairio.hashing`); validation happens once, at the public API or the
server's request parsing.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol


class Attachment(Protocol):
    """A database of another layer that a store's readers may attach, to read a pair's value and
    the row it names in one statement (:meth:`pairio.kv.embedded.EmbeddedStore.get_with_object`).
    The small objects of a content store are one (:class:`pairio.content.small.SmallObjects`)."""

    path: Path

    def select_data(self, schema: str, sha1_sql: str) -> str:
        """An SQL scalar subquery for the row named by the SQL expression ``sha1_sql`` (NULL if
        none), with this database attached as ``schema``."""


class KeyValueStore(abc.ABC):
    """Pairs of short strings, grouped in collections."""

    @abc.abstractmethod
    def get(self, collection: str, key: str) -> str | None:
        """The value stored under ``key``, or None."""

    @abc.abstractmethod
    def get_many(self, collection: str, keys: Iterable[str]) -> dict[str, str]:
        """The stored pairs among ``keys`` (absent keys are left out), in one transaction."""

    @abc.abstractmethod
    def set(self, collection: str, key: str, value: str) -> None:
        """Store ``value`` under ``key``, durably, replacing any earlier value."""

    @abc.abstractmethod
    def set_many(self, collection: str, pairs: Mapping[str, str | None]) -> None:
        """Store all ``pairs`` in one transaction; a None value deletes its key."""

    @abc.abstractmethod
    def delete(self, collection: str, key: str) -> None:
        """Remove ``key``; removing an absent key is not an error."""

    def check(self) -> None:
        """Raise StoreUnavailableError if the store cannot be used now (a cheap probe: one read)."""
        self.get("pairio.health", "probe")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; the store may be reopened by using it again."""
