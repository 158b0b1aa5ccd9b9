"""Whether a container of settings still holds the very objects it held: the cheap first check a
cached call makes, at every call, of each mutable global it reads.

A global list, dict or set is counted by its contents; at every call the contents are checked, so
that ``OPTIONS["scale"] = 3`` or ``LEVELS[0] = 1.0`` gives a new key. The check must be exact
(``1 == 1.0 == True``, which hash apart, so ``==`` is not enough) and it must be cheap. When every
container holds, all through, the very objects it held when it was counted (the common case: nothing
changed), nothing changed; only when some item is another object are the values compared type for
type (the caller's ``otherwise``).

Identity item by item costs a call per item (``all(map(operator.is_, a, b))``, about 10 ns each: 10
us for a list of 1,000 numbers, at every call). On CPython a tuple keeps its items' addresses in
the tuple object itself, so a copy of a list into a tuple and one read of those addresses' bytes
tell the same at C speed (about 1.4 us for 1,000 items). The layout is checked once against
``id()`` before it is trusted; elsewhere (PyPy, another layout) items are compared one by one.
The addresses stay meaningful because each check keeps the objects it compares with alive.
"""

from __future__ import annotations

import functools
import operator
import struct
import sys
from collections.abc import Callable
from typing import Any

# Up to this many items, compared one by one (cheaper than a copy and a read of its addresses).
_ONE_BY_ONE = 32
_MUTABLE = (list, dict, set)
_CONTAINERS = (list, dict, set, tuple, frozenset)
_is = operator.is_


@functools.cache
def _addresses() -> Callable[[tuple], bytes] | None:
    """A function giving the bytes of a tuple's item addresses, or None where that cannot be read."""
    if sys.implementation.name != "cpython" or tuple.__itemsize__ != struct.calcsize("P"):
        return None
    import ctypes  # only here: a few ms, paid by the first check of a large container

    string_at, offset, size = ctypes.string_at, tuple.__basicsize__, tuple.__itemsize__

    def addresses(items: tuple) -> bytes:
        return string_at(id(items) + offset, size * len(items))

    probe = (object(), "probe", 1 << 70, None)
    if addresses(probe) != struct.pack(f"{len(probe)}P", *map(id, probe)):
        return None
    return addresses


def holds_same(value: Any, otherwise: Callable[[], bool]) -> Callable[[], bool]:
    """A check that is True while ``value`` (builtin containers of scalars, functions and classes)
    holds, all through, the very objects it holds now, or else while ``otherwise()`` is True."""
    mutable: list[Any] = []
    stack = [value]
    while stack:
        container = stack.pop()
        if type(container) in _MUTABLE:
            mutable.append(container)
        items = (*container, *container.values()) if type(container) is dict else container
        stack.extend(item for item in items if type(item) in _CONTAINERS)
    if not mutable:  # a tuple or frozenset of scalars, functions and classes cannot change
        return _true
    if len(mutable) == 1:
        return _held(mutable[0], otherwise)
    checks = [_held(container, _false) for container in mutable]

    def check_all() -> bool:
        for check in checks:
            if not check():
                return otherwise()
        return True

    return check_all


def _false() -> bool:
    return False


def _true() -> bool:
    return True


def _held(container: list | dict | set, otherwise: Callable[[], bool]) -> Callable[[], bool]:
    """A check that ``container`` holds the objects it holds now, in the same order, or else that
    ``otherwise()`` is True."""
    is_dict = type(container) is dict
    keys = tuple(container)
    values = tuple(container.values()) if is_dict else ()  # type: ignore[union-attr]
    items, length = keys + values, len(container)
    addresses = _addresses() if len(items) > _ONE_BY_ONE else None
    if addresses is None:
        if is_dict:
            def check(c: Any = container, n: int = length, k: tuple = keys, v: tuple = values,
                      o: Callable[[], bool] = otherwise) -> bool:
                return (len(c) == n and all(map(_is, c, k)) and all(map(_is, c.values(), v))) or o()
        else:
            def check(c: Any = container, n: int = length, k: tuple = keys, o: Callable[[], bool] = otherwise) -> bool:
                return (len(c) == n and all(map(_is, c, k))) or o()
        return check
    expected = addresses(items)
    # ``items`` is kept by the check: while it lives, no other object can take one of its addresses.
    if is_dict:
        def check(c: Any = container, n: int = length, read: Any = addresses, b: bytes = expected,
                  kept: tuple = items, o: Callable[[], bool] = otherwise) -> bool:
            return (len(c) == n and read((*c, *c.values())) == b) or o()
    else:
        def check(c: Any = container, n: int = length, read: Any = addresses, b: bytes = expected,
                  kept: tuple = items, o: Callable[[], bool] = otherwise) -> bool:
            return (len(c) == n and read(tuple(c)) == b) or o()
    return check
