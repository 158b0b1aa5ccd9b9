"""The base of values hashed as the value they stand for (:class:`pairio.Ref`), kept apart from
:mod:`.arguments` so that defining a Ref does not load key derivation at ``import pairio``."""

from __future__ import annotations

import abc


class Digested(abc.ABC):
    """A value that stands for another whose hash by the argument rules it knows: hashed as that
    value, without it."""

    __slots__ = ()

    @abc.abstractmethod
    def argument_digest(self, types: set[type] | None) -> str:
        """The hash of the value this stands for (adding its non-builtin types to ``types``)."""
