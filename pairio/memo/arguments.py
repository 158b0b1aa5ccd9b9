"""Typed, canonical hashing of argument values: a registry ``type -> rule``, one rule per family.

A rule feeds an unambiguous byte encoding of a value into a SHA-1: every
encoding starts with a tag naming its type family, and every variable-length
part is length-prefixed, so ``1``, ``1.0`` and ``True`` differ, a list differs
from a tuple, and no two values of different structure share an encoding.
Containers whose order carries no meaning (dict, set, frozenset) are encoded as
the sorted digests of their items. Large buffers (numpy arrays, bytes) are fed
to the hash directly, never copied when contiguous.

This encoding is part of the key format (``KEY_FORMAT`` in :mod:`.key`): a
change to it changes keys and must bump that version.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import io
import math
import os
import struct
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any

from ..errors import UnhashableArgumentError
from .digested import Digested

Update = Callable[[bytes], None]


class Context:
    """What a rule may need besides the value: the argument's name (for errors), strictness, file hashing."""

    __slots__ = ("name", "strict", "file_hash", "top_type", "types")

    def __init__(self, name: str, strict: bool, file_hash: Callable[[PurePath], str] | None,
                 types: set[type] | None = None) -> None:
        self.name = name
        self.strict = strict
        self.file_hash = file_hash
        self.top_type: type | None = None
        # The types met that are not builtins (numpy arrays, frames, dataclasses...), when asked
        # for: the key counts the versions of the libraries that define them.
        self.types = types

    def note_type(self, tp: type) -> None:
        """Record ``tp`` as a type met in the value (if types are being collected)."""
        if self.types is not None:
            self.types.add(tp)

    def unhashable(self, obj: object, why: str) -> UnhashableArgumentError:
        inner = type(obj)
        where = f"argument {self.name!r} (of type {_type_name(self.top_type or inner)})"
        if self.top_type is not None and self.top_type is not inner:
            where += f" contains a value of type {_type_name(inner)} that"
        return UnhashableArgumentError(f"{where} cannot be hashed into a cache key: {why}")


Rule = Callable[[Any, Update, Context], None]
_RULES: dict[type, Rule] = {}


def register(*types_: type) -> Callable[[Rule], Rule]:
    """Make the decorated function the rule for values of exactly these types."""

    def decorate(rule: Rule) -> Rule:
        for tp in types_:
            _RULES[tp] = rule
        return rule

    return decorate


def hash_value(value: Any, name: str = "value", *, strict: bool = False,
               file_hash: Callable[[PurePath], str] | None = None, types: set[type] | None = None) -> str:
    """The SHA-1 hex of the canonical typed encoding of ``value``.

    ``name`` names the value in errors. ``strict`` refuses the cloudpickle
    fallback. ``file_hash`` hashes an existing file's content (default: ``pairio.get_file_hash``,
    which remembers the hashes of unchanged files). ``types``, if given, receives every
    type met in ``value`` that is not a builtin (the value's own and those inside it).
    """
    tp = type(value)
    # The commonest arguments, encoded here as their rules below encode them (the same bytes,
    # so the same keys) without a Context and a dispatch: a hit hashes every argument.
    if tp is int:
        return hashlib.sha1(b"i%d;" % value).hexdigest()  # as hash_int
    if tp is str:
        return hashlib.sha1(b"s" + _text(value)).hexdigest()
    if tp is float:
        return hashlib.sha1(b"f" + _float_bytes(value)).hexdigest()
    if isinstance(value, Digested):  # a Ref: its value's hash, known without its bytes
        return value.argument_digest(types)
    frozen = tp.__name__ == "ndarray" and tp.__module__ == "numpy"
    if frozen:
        from .numeric import frozen_digest

        known = frozen_digest(value)
        if known is not None:  # an array that cannot change, hashed before
            if types is not None:
                types.add(tp)
            return known
    h = hashlib.sha1()
    ctx = Context(name, strict, file_hash, types)
    ctx.top_type = tp
    try:
        encode(value, h.update, ctx)
    except RecursionError:
        raise ctx.unhashable(value, "it is nested too deeply or contains itself") from None
    out = h.hexdigest()
    if frozen:
        from .numeric import remember_if_frozen

        remember_if_frozen(value, out)
    return out


def hash_int(value: int) -> str:
    """:func:`hash_value` of an int (of type int exactly, not a bool or a subclass)."""
    return hashlib.sha1(b"i%d;" % value).hexdigest()


def encode(obj: Any, update: Update, ctx: Context) -> None:
    """Feed the encoding of ``obj`` to ``update``."""
    rule = _RULES.get(type(obj))
    if rule is None:
        rule = _find_rule(type(obj))
    rule(obj, update, ctx)


def digest(obj: Any, ctx: Context) -> bytes:
    """The 20-byte SHA-1 of the encoding of ``obj``: how unordered containers see their items."""
    if isinstance(obj, Digested):  # a dict's Ref is seen as its value is: by the value's hash
        return bytes.fromhex(obj.argument_digest(ctx.types))
    h = hashlib.sha1()
    encode(obj, h.update, ctx)
    return h.digest()


def _type_name(tp: type) -> str:
    module = tp.__module__
    return tp.__qualname__ if module == "builtins" else f"{module}.{tp.__qualname__}"


def _text(s: str) -> bytes:
    data = s.encode("utf-8", "surrogatepass")
    return b"%d:" % len(data) + data


# --- scalars ---------------------------------------------------------------------------


@register(type(None))
def _none(obj: None, update: Update, ctx: Context) -> None:
    update(b"N")


@register(bool)
def _bool(obj: bool, update: Update, ctx: Context) -> None:
    update(b"T" if obj else b"F")


@register(int)
def _int(obj: int, update: Update, ctx: Context) -> None:
    update(b"i%d;" % obj)


def _float_bytes(x: float) -> bytes:
    # Every NaN is one value: payload and sign bits of a NaN vary between platforms and operations.
    return b"nan" if math.isnan(x) else struct.pack("<d", x)


@register(float)
def _float(obj: float, update: Update, ctx: Context) -> None:
    update(b"f" + _float_bytes(obj))


@register(complex)
def _complex(obj: complex, update: Update, ctx: Context) -> None:
    update(b"c" + _float_bytes(obj.real) + b"," + _float_bytes(obj.imag))


@register(str)
def _str(obj: str, update: Update, ctx: Context) -> None:
    update(b"s" + _text(obj))


@register(bytes, bytearray, memoryview)
def _bytes(obj: bytes | bytearray | memoryview, update: Update, ctx: Context) -> None:
    tag = {bytes: b"b", bytearray: b"y", memoryview: b"m"}[type(obj)]
    if type(obj) is memoryview and not obj.c_contiguous:
        obj = obj.tobytes()
    n = obj.nbytes if isinstance(obj, memoryview) else len(obj)
    update(tag + b"%d:" % n)
    update(obj)


# --- containers ------------------------------------------------------------------------


@register(list)
def _list(obj: list, update: Update, ctx: Context) -> None:
    update(b"l%d:" % len(obj))
    for item in obj:
        encode(item, update, ctx)


@register(tuple)
def _tuple(obj: tuple, update: Update, ctx: Context) -> None:
    update(b"t%d:" % len(obj))
    for item in obj:
        encode(item, update, ctx)


@register(dict)
def _dict(obj: dict, update: Update, ctx: Context) -> None:
    items = sorted(digest(k, ctx) + digest(v, ctx) for k, v in obj.items())
    update(b"d%d:" % len(items) + b"".join(items))


@register(set, frozenset)
def _set(obj: set | frozenset, update: Update, ctx: Context) -> None:
    items = sorted(digest(item, ctx) for item in obj)
    update((b"S" if type(obj) is set else b"Z") + b"%d:" % len(items) + b"".join(items))


# --- rules chosen by looking at the type ------------------------------------------------


def _custom(obj: Any, update: Update, ctx: Context) -> None:
    update(b"h" + _text(_type_name(type(obj))))
    encode(obj.__pairio_hash__(), update, ctx)


def _enum(obj: enum.Enum, update: Update, ctx: Context) -> None:
    update(b"e" + _text(_type_name(type(obj))) + _text(obj.name))
    encode(obj.value, update, ctx)


def _dataclass(obj: Any, update: Update, ctx: Context) -> None:
    fields = dataclasses.fields(obj)
    update(b"D" + _text(_type_name(type(obj))) + b"%d:" % len(fields))
    for f in fields:
        update(_text(f.name))
        encode(getattr(obj, f.name), update, ctx)


def _namedtuple(obj: tuple, update: Update, ctx: Context) -> None:
    fields = type(obj)._fields  # type: ignore[attr-defined]
    update(b"n" + _text(_type_name(type(obj))) + b"%d:" % len(fields))
    for name, value in zip(fields, obj, strict=True):
        update(_text(name))
        encode(value, update, ctx)


def _path(obj: PurePath, update: Update, ctx: Context) -> None:
    # An existing file counts by its content (where it lives does not matter);
    # anything else (a directory, a path yet to be written) by its text.
    if isinstance(obj, Path) and _is_file(obj):
        sha1 = ctx.file_hash(obj) if ctx.file_hash is not None else _plain_file_hash(obj)
        update(b"P" + sha1.encode("ascii"))
    else:
        update(b"p" + _text(obj.as_posix()))


def _is_file(obj: PurePath) -> bool:
    try:
        return os.path.isfile(obj)
    except (OSError, ValueError):
        return False


def _plain_file_hash(path: PurePath) -> str:
    from ..content import get_file_hash  # the hash cache: an unchanged file is not read again

    return get_file_hash(path)


def _subclass(base: type) -> Rule:
    base_rule = _RULES[base]

    def rule(obj: Any, update: Update, ctx: Context) -> None:
        update(b"u" + _text(_type_name(type(obj))))
        base_rule(obj, update, ctx)

    return rule


def _function(obj: types.FunctionType, update: Update, ctx: Context) -> None:
    from .code import describe_function  # code hashing itself hashes values with this module

    update(b"g" + describe_function(obj).digest.encode("ascii"))


def _type(obj: type, update: Update, ctx: Context) -> None:
    update(b"k" + _text(_type_name(obj)))
    if _is_user_type(obj):  # a class of user code (a classmethod's cls) counts by its code too
        from .code import class_digest

        update(b"K" + class_digest(obj).encode("ascii"))


def _is_user_type(tp: type) -> bool:
    from .dependencies import classify_module

    module = getattr(tp, "__module__", None)
    return isinstance(module, str) and classify_module(module) == "user"


def _defines_methods(tp: type) -> bool:
    """True if a class of user code defines functions of its own (not those dataclasses generate)."""
    if not _is_user_type(tp):
        return False
    for attr in vars(tp).values():
        targets = [attr.fget, attr.fset, attr.fdel] if isinstance(attr, property) else [
            getattr(attr, "__func__", attr)]
        # Those dataclasses and namedtuple generate are compiled from text ("<string>") or are
        # defined in the standard library (dataclasses' __repr__, collections').
        if any(isinstance(t, types.FunctionType) and t.__module__ == tp.__module__
               and t.__code__.co_filename != "<string>" and not t.__code__.co_filename.startswith(_STDLIB_DIR)
               for t in targets):
            return True
    return False


_STDLIB_DIR = os.path.dirname(os.__file__) + os.sep


def _with_class_code(rule: Rule) -> Rule:
    """``rule``, after the code of the value's class (for records and enums that define methods)."""

    def coded(obj: Any, update: Update, ctx: Context) -> None:
        from .code import class_digest

        update(b"C" + class_digest(type(obj)).encode("ascii"))
        rule(obj, update, ctx)

    return coded


def _instance(obj: Any, update: Update, ctx: Context) -> None:
    """An instance of a user class: by its class's code and its state (its attributes, or what
    ``__getstate__`` returns), each hashed by these rules."""
    from .code import class_digest

    tp = type(obj)
    getstate = getattr(tp, "__getstate__", None)
    if getstate is not None and getstate is not getattr(object, "__getstate__", None):
        state = obj.__getstate__()
    else:
        state = dict(getattr(obj, "__dict__", None) or {})
        for klass in tp.__mro__:
            slots = vars(klass).get("__slots__", ())
            for slot in (slots,) if isinstance(slots, str) else slots:
                if slot not in ("__dict__", "__weakref__") and hasattr(obj, slot):
                    state[slot] = getattr(obj, slot)
    update(b"o" + _text(_type_name(tp)) + class_digest(tp).encode("ascii"))
    encode(state, update, ctx)


def _pickled(obj: Any, update: Update, ctx: Context) -> None:
    if ctx.strict:
        raise ctx.unhashable(obj, "no hashing rule for this type (strict=True refuses the cloudpickle "
                                  "fallback; define __pairio_hash__() on it or list the argument in ignore=)")
    try:
        data = _canonical_pickle(obj, ctx)
    except UnhashableArgumentError:
        raise
    except Exception as exc:  # pickling runs arbitrary __reduce__ code: any error means "cannot"
        raise ctx.unhashable(obj, f"it has no hashing rule and cannot be pickled ({exc})") from None
    update(b"x" + _text(_type_name(type(obj))) + b"%d:" % len(data))
    update(data)


def _canonical_pickle(obj: Any, ctx: Context) -> bytes:
    """``cloudpickle.dumps(obj, protocol=5)``, except that a set or frozenset inside is written as
    its items' sorted digests: a set of str iterates in an order ``PYTHONHASHSEED`` decides, so its
    pickle (a scikit-learn estimator's ``stop_words={...}``) differed from one process to the next.
    A value holding no set pickles to the very bytes it did."""
    buffer = io.BytesIO()
    pickler = _set_sorting_pickler()(buffer, protocol=5)
    pickler.ctx = ctx
    pickler.dump(obj)
    return buffer.getvalue()


@functools.cache
def _set_sorting_pickler() -> type:
    """The pickler class, made at first use: cloudpickle loads only when a value needs it."""
    import cloudpickle  # only values without a hashing rule need it

    class SetSortingPickler(cloudpickle.Pickler):
        # persistent_id is the one hook the C pickler calls for every object, sets included
        # (reducer_override is skipped for exact builtins).
        ctx: Context

        def persistent_id(self, obj: Any) -> Any:
            tp = type(obj)
            if tp is not set and tp is not frozenset:
                return None
            items = sorted(digest(item, self.ctx) for item in obj)
            return ("pairio.set" if tp is set else "pairio.frozenset", b"".join(items))

    return SetSortingPickler


def _forbidden(obj: Any, update: Update, ctx: Context) -> None:
    raise ctx.unhashable(obj, "generators, coroutines, open files, locks and sockets have no stable "
                              "value (pass the data, or list the argument in ignore=)")


_FORBIDDEN_BASES: tuple[type, ...] = (
    types.GeneratorType, types.AsyncGeneratorType, types.CoroutineType, io.IOBase,
    type(threading.Lock()), type(threading.RLock()), threading.Condition, threading.Semaphore,
    threading.Event, threading.Barrier,
)
_FORBIDDEN_MODULES = ("multiprocessing.synchronize", "asyncio.locks", "_io", "_thread")


def _is_socket(tp: type) -> bool:
    # Looked up, not imported: a socket exists only once its module is loaded.
    sockets = sys.modules.get("_socket")
    return sockets is not None and issubclass(tp, sockets.socket)


def _find_rule(tp: type) -> Rule:
    rule = _rule_for(tp)
    if tp.__module__ != "builtins" and not issubclass(tp, Digested):  # (a Ref adds its value's types)
        rule = _noting(tp, rule)
    _RULES[tp] = rule  # a type's rule never changes: look it up once
    return rule


def _noting(tp: type, rule: Rule) -> Rule:
    """``rule``, recording ``tp`` first: builtins (registered above) need no such step."""

    def noted(obj: Any, update: Update, ctx: Context) -> None:
        if ctx.types is not None:
            ctx.types.add(tp)
        rule(obj, update, ctx)

    return noted


def _digested(obj: Digested, update: Update, ctx: Context) -> None:
    # In a list or tuple, whose items are encoded in line (not by their hashes), a Ref is its
    # value's hash under a tag of its own: stable without the bytes, but not the value's encoding.
    update(b"@" + bytes.fromhex(obj.argument_digest(ctx.types)))


def _rule_for(tp: type) -> Rule:
    if issubclass(tp, Digested):
        return _digested
    if hasattr(tp, "__pairio_hash__"):
        # What __pairio_hash__ says stands for the state; the code that uses it is the class's.
        return _with_class_code(_custom) if _is_user_type(tp) else _custom
    if issubclass(tp, _FORBIDDEN_BASES) or tp.__module__ in _FORBIDDEN_MODULES or _is_socket(tp):
        return _forbidden
    if issubclass(tp, enum.Enum):
        return _with_class_code(_enum) if _defines_methods(tp) else _enum
    if dataclasses.is_dataclass(tp):
        return _with_class_code(_dataclass) if _defines_methods(tp) else _dataclass
    if issubclass(tp, tuple) and hasattr(tp, "_fields"):
        return _with_class_code(_namedtuple) if _defines_methods(tp) else _namedtuple
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        from . import numeric

        if issubclass(tp, numpy.ndarray):
            return numeric.ndarray_rule
        if issubclass(tp, numpy.generic):
            return numeric.scalar_rule
    pandas = sys.modules.get("pandas")
    if pandas is not None:
        from . import numeric

        rule = numeric.pandas_rule(tp)
        if rule is not None:
            return rule
    if issubclass(tp, PurePath):
        return _path
    for base in (bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset):
        if issubclass(tp, base):
            return _subclass(base)
    if issubclass(tp, types.FunctionType):
        return _function
    if isinstance(tp, type) and issubclass(tp, type):
        return _type
    if _is_user_type(tp):
        # A class that says how it pickles (__reduce__) is taken at its word: its pickle, by its code.
        reduces = tp.__reduce__ is not object.__reduce__ or tp.__reduce_ex__ is not object.__reduce_ex__
        return _with_class_code(_pickled) if reduces else _instance
    return _pickled
