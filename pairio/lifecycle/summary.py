"""A short readable form of an argument, for records: ``ndarray float64 (1000, 3)``, ``'abc'``, ``5``."""

from __future__ import annotations

import os
import reprlib
from pathlib import PurePath
from typing import Any

MAX_LENGTH = 60

_repr = reprlib.Repr()
_repr.maxstring = 40
_repr.maxother = 40
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 4
_repr.maxlevel = 2


def summarize(value: Any) -> str:
    """At most ``MAX_LENGTH`` characters saying what ``value`` is."""
    try:
        text = _summarize(value)
    except Exception as exc:  # a user's __repr__ may raise anything; a summary must not
        text = f"<{type(value).__name__}: repr failed ({type(exc).__name__})>"
    return text if len(text) <= MAX_LENGTH else text[: MAX_LENGTH - 3] + "..."


def _summarize(value: Any) -> str:
    if isinstance(value, PurePath):
        return os.fspath(value)
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple) and not isinstance(value, type):
        dtype = getattr(value, "dtype", None)
        kind = type(value).__name__
        return f"{kind} {dtype} {shape}" if dtype is not None and kind != "DataFrame" else f"{kind} {shape}"
    if isinstance(value, (list, tuple, dict, set, frozenset)) and len(value) > 4:
        return f"{type(value).__name__}[{len(value)}] {_repr.repr(value)}"
    return _repr.repr(value)
