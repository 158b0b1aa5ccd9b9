"""A short readable form of an argument, for records: ``ndarray float64 (1000, 3)``, ``'abc'``, ``5``,
``function steps.smooth``, ``<lambda> at steps.py:12``. Never a memory address: it differs on every run."""

from __future__ import annotations

import functools
import os
import re
import reprlib
import types
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
    tp = type(value)
    if tp is int or tp is float or tp is bool or tp is str or value is None:
        # The commonest arguments, as reprlib writes them when short (a miss summarises each).
        text = repr(value)
        if len(text) <= _repr.maxstring:
            return text
    try:
        text = _summarize(value)
    except Exception as exc:  # a user's __repr__ may raise anything; a summary must not
        text = f"<{type(value).__name__}: repr failed ({type(exc).__name__})>"
    return text if len(text) <= MAX_LENGTH else text[: MAX_LENGTH - 3] + "..."


_ADDRESS = re.compile(r" (?:object )?at 0x[0-9a-fA-F]+")


def _callable(value: Any) -> str | None:
    """A function, method, class or partial by what it is and where it was written, or None."""
    if isinstance(value, functools.partial):
        inner = _callable(value.func) or _summarize(value.func)
        parts = [inner, *(_repr.repr(a) for a in value.args), *(f"{k}={_repr.repr(v)}" for k, v in value.keywords.items())]
        return f"partial({', '.join(parts)})"
    if isinstance(value, types.MethodType):
        inner = _callable(value.__func__)
        return f"method {inner.split(' ', 1)[-1] if inner else value.__func__!r}"
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)):
        name = getattr(value, "__qualname__", None) or getattr(value, "__name__", "?")
        code = getattr(value, "__code__", None)
        if code is not None and ("<lambda>" in name or "<locals>" in name):
            # Not importable by name: where it was written tells two of them apart.
            return f"{name.rsplit('.', 1)[-1]} at {os.path.basename(code.co_filename)}:{code.co_firstlineno}"
        module = getattr(value, "__module__", None)
        kind = "class" if isinstance(value, type) else "function"
        return f"{kind} {module}.{name}" if module and module != "builtins" else f"{kind} {name}"
    return None


def _summarize(value: Any) -> str:
    text = _callable(value)
    if text is not None:
        return text
    return _ADDRESS.sub("", _plain(value))


def _plain(value: Any) -> str:
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
