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

A caller checking many containers at once (a :class:`.code.Watch`) reads each check's ``parts``,
gathers all their items into one list of its own, and reads that list's addresses from the list's
own array in one go (:func:`list_addresses`): no copy into a tuple, one read for all.
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


class Held:
    """The check :func:`holds_same` makes: called, True while the value holds the very objects it
    held, or else while ``otherwise()`` is; ``parts`` are its mutable containers, each with the objects
    it held then (a dict's keys, then its values), for a caller that checks many at once."""

    __slots__ = ("check", "parts")

    def __init__(self, check: Callable[[], bool], parts: tuple[tuple[Any, tuple], ...]) -> None:
        self.check = check
        self.parts = parts

    def __call__(self) -> bool:
        return self.check()


def holds_same(value: Any, otherwise: Callable[[], bool]) -> Held:
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
        return Held(_true, ())
    parts = tuple((container, (*container, *container.values()) if type(container) is dict else tuple(container))
                  for container in mutable)
    if len(mutable) == 1:
        return Held(_held(parts[0], otherwise), parts)
    checks = [_held(part, _false) for part in parts]

    def check_all() -> bool:
        for check in checks:
            if not check():
                return otherwise()
        return True

    return Held(check_all, parts)


def _false() -> bool:
    return False


def _true() -> bool:
    return True


def _held(part: tuple[Any, tuple], otherwise: Callable[[], bool]) -> Callable[[], bool]:
    """A check that a container holds ``objects`` (``part``: the two), in the same order, or else that
    ``otherwise()`` is True."""
    container, items = part
    is_dict = type(container) is dict
    length = len(items) // 2 if is_dict else len(items)
    keys, values = (items[:length], items[length:]) if is_dict else (items, ())
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


@functools.cache
def _list_header() -> int | None:
    """Where a list keeps the address of its array of items, from the list's own address (CPython;
    checked once against ``id()``), or None where that cannot be read."""
    pointer = struct.calcsize("P")
    header = object.__basicsize__ + struct.calcsize("n")  # the object's head and its item count
    if (sys.implementation.name != "cpython" or tuple.__itemsize__ != pointer
            or list.__basicsize__ != header + 2 * pointer):  # the array's address and its capacity
        return None
    import ctypes  # only here: a few ms, paid by the first check of a large container

    probe = [object(), "probe", 1 << 70, None]
    array = ctypes.c_void_p.from_address(id(probe) + header).value
    if not array or ctypes.string_at(array, pointer * len(probe)) != struct.pack(f"{len(probe)}P", *map(id, probe)):
        return None
    return header


def list_addresses(length: int) -> Callable[[list], bytes] | None:
    """For lists of ``length`` items: a function giving the bytes of their items' addresses, read
    from the list's own array (no copy); None for a few items (compared one by one, which is
    cheaper) or where a list cannot be read so. Only for a list of the caller's own, which nothing
    else can change, nor move its array, while it is read."""
    header = _list_header()
    if header is None or length <= _ONE_BY_ONE:
        return None
    import ctypes

    array_at = (ctypes.c_char * (length * tuple.__itemsize__)).from_address
    address_at = ctypes.c_void_p.from_address

    def addresses(items: list) -> bytes:
        if len(items) != length:  # (never read past the array)
            return b""
        return array_at(address_at(id(items) + header).value).raw

    return addresses
