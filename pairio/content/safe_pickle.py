"""Loading a pickle as data only: a restricted unpickler for content no trusted writer vouches for.

A pickle is a program: every global it names can be called with arguments it chooses. This
unpickler (the C ``pickle.Unpickler`` with :meth:`SafeUnpickler.find_class` overridden, so the
opcodes run at C speed) hands out only:

* plain data types: containers, numbers, strings, bytes, ``range``, ``slice``, ``complex``,
  ``collections`` types, ``datetime``, ``decimal``, ``fractions``, ``uuid``, ``pathlib`` paths,
  ``zoneinfo`` zones;
* enum classes (calling one looks a member up) and their members;
* numpy arrays, dtypes and scalars (an object array's elements are held to the same rule);
* the pandas classes and rebuild helpers a DataFrame, Series, Index or extension array needs;
* classes "restored by state": any other class of an imported module that is not part of
  Python's runtime, the standard library or pairio, whose bases are plain, and that defines no
  ``__del__`` nor any method loading could call (``__setstate__``, ``__getattr__``, ``__setattr__``,
  ``__hash__``, ``append``...: code of the class run on the content's say). For such a class the
  unpickler gets a stand-in: it makes a bare instance (``base.__new__(cls)``, no ``__init__``, no
  custom ``__new__``) that ``BUILD`` then fills with the pickled state. A pickle that would
  *call* the class with arguments (``__reduce__`` returning ``(cls, args)``) is refused;
* what :func:`add_safe_globals` or the ``safe_globals`` config field adds.

What calls make is budgeted (``bytearray(n)``, ``bytes(x)``, ``list``/``set``/``dict`` of an
iterable, ``str``, ``Decimal``, a path, ``numpy.ndarray(shape)``, an array rebuilt by shape, a pandas helper
given a ``range``): each call at most :data:`MAX_ALLOCATION_BYTES`, all the calls of one load at most
:data:`MAX_LOAD_ALLOCATION_BYTES`; data the pickle carries (an array's buffer) is not counted. A
``range`` is lazy and costs nothing. The classes so charged still load as themselves (``{"kind": bytes}``).

Opcodes that copy are held to the same rule. ``SETITEM``/``SETITEMS`` with a slice key on a list or
bytearray (``L[0:0] = L`` doubles ``L``), and ``SETITEM``/``APPENDS`` on numpy or pandas objects (a
column copied) are refused, naming the opcode; ``BUILD`` of an array from a raw buffer or list that
another array already copied, and pandas rebuilds that copy their data (a dtype conversion,
``copy=True``, a list made an array), are charged. The C unpickler cannot see opcodes, so content
naming ``slice``, numpy or pandas is loaded by :class:`_TypedUnpickler` (Python's, with the checks).

Anything else (``os.system``, ``subprocess.Popen``, ``builtins.eval``, ``getattr``,
``importlib.import_module``, a function pickled by value) raises :class:`UntrustedContentError`
naming the first global refused, before anything is called. Modules are never imported on a
pickle's say: a class of a module not imported yet is refused (except the allow-listed numpy,
pandas and standard-library modules).
"""

from __future__ import annotations

import _compat_pickle
import abc
import enum
import functools
import importlib
import io
import pickle
import struct
import sys
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import UntrustedContentError

# (module, name) of plain data types and functions that only build data.
_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    [("builtins", n) for n in ("bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int",
                                "list", "object", "range", "set", "slice", "str", "tuple")]
    + [("collections", n) for n in ("OrderedDict", "defaultdict", "deque", "Counter", "ChainMap")]
    + [("datetime", n) for n in ("date", "datetime", "time", "timedelta", "timezone")]
    + [("decimal", "Decimal"), ("fractions", "Fraction"), ("uuid", "UUID"), ("uuid", "SafeUUID"),
       ("zoneinfo", "ZoneInfo")]
    + [(m, n) for m in ("pathlib", "pathlib._local") for n in ("Path", "PosixPath", "WindowsPath", "PurePath",
                                                              "PurePosixPath", "PureWindowsPath")]
    + [(m, n) for m in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray") for n in ("ndarray", "dtype")]
    + [(m, "scalar") for m in ("numpy.core.multiarray", "numpy._core.multiarray")]
    + [(m, "_frombuffer") for m in ("numpy.core.numeric", "numpy._core.numeric")]
    + [("numpy.ma.core", "MaskedArray"), ("numpy.ma", "MaskedArray")]
    + [("pandas._libs.internals", "_unpickle_block"),
       ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"),
       ("pandas._libs.tslibs.timedeltas", "_timedelta_unpickle"),
       ("pandas._libs.tslibs.nattype", "_nat_unpickle"),
       ("pandas._libs.tslibs.nattype", "NaT"), ("pandas", "NaT"),
       ("pandas._libs.missing", "NA"), ("pandas", "NA"),
       ("pytz", "_p"), ("pytz", "_UTC"), ("pytz", "utc"), ("dateutil.tz.tz", "tzutc"),
       ("dateutil.tz.tz", "tzoffset")]
)
# The modules of _ALLOWED (and of pandas classes) may be imported by a load; no other module is.
_IMPORTABLE_ROOTS = frozenset({"builtins", "collections", "datetime", "decimal", "fractions", "uuid", "zoneinfo",
                               "pathlib", "numpy", "pandas", "pytz", "dateutil", "enum", "copyreg", "_codecs",
                               "codecs"})
# Bases a class restored by state may have besides ``object`` (a bare instance of one is data).
_PLAIN_BASES: tuple[type, ...] = (object, dict, list, set, frozenset, tuple, int, float, complex, str, bytes,
                                  bytearray, BaseException)
# Top-level modules whose classes are never restored by state: the runtime, the standard library, pairio
# and what it runs on. (Their data types that are safe are in _ALLOWED.)
_NEVER = frozenset(sys.stdlib_module_names) | {"pairio", "cloudpickle", "requests", "urllib3", "filelock",
                                               "numpy", "pandas", "pip", "setuptools", "_pytest", "pytest",
                                               "IPython", "ipykernel", "dill", "joblib", "torch"}
# Standard-library modules whose classes may be bases of a class restored by state (abstract bases).
_BASE_MODULES = frozenset({"abc", "typing", "collections.abc", "_collections_abc"})


class _Registry:
    """The globals :func:`add_safe_globals` added, as ``(module, qualified name)``; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: frozenset[tuple[str, str]] = frozenset()

    def add(self, items: Iterable[tuple[str, str]]) -> None:
        with self._lock:
            self._items = self._items | frozenset(items)

    def get(self) -> frozenset[tuple[str, str]]:
        return self._items

    def clear(self) -> None:
        with self._lock:
            self._items = frozenset()


_added = _Registry()


def _global_name(obj: Any) -> tuple[str, str]:
    if isinstance(obj, str):
        module, sep, name = obj.rpartition(".")
        if not sep or not module or not name:
            raise TypeError(f"add_safe_globals: {obj!r} is not of the form 'module.name'")
        return module, name
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if not isinstance(module, str) or not isinstance(name, str):
        raise TypeError(f"add_safe_globals: {obj!r} has no module and name (give a class, a function, or "
                        "'module.name')")
    return module, name


def add_safe_globals(globals_: Iterable[Any]) -> None:
    """Allow the classes or functions ``globals_`` (objects or ``"module.name"`` strings) in content
    loaded as data only, for this process: they may be called with the pickle's arguments."""
    if isinstance(globals_, (str, bytes)) or not isinstance(globals_, Iterable):
        raise TypeError(f"add_safe_globals takes a list of classes, functions or 'module.name' strings, "
                        f"got {type(globals_).__name__}")
    _added.add([_global_name(g) for g in globals_])


def safe_globals_of(names: Iterable[str]) -> frozenset[tuple[str, str]]:
    """``"module.name"`` strings (the ``safe_globals`` config field) as ``(module, name)`` pairs."""
    return frozenset(_global_name(n) for n in names)


class _StandIn(type):
    """The metaclass of stand-ins: they cannot be changed by a pickle's ``BUILD``."""

    def __setattr__(cls, name: str, value: Any) -> None:
        raise UntrustedContentError(f"the content sets attribute {name!r} of a class", refused=name)


def _stand_in(cls: type, name: str) -> type:
    """A type whose construction (``NEWOBJ`` or ``REDUCE`` without arguments) gives a bare ``cls``."""
    base = next(b for b in cls.__mro__ if b in _PLAIN_BASES or _builtin_exception(b))

    def __new__(stand_in: type, *args: Any, **kwargs: Any) -> Any:  # noqa: N807
        if kwargs or (args and base is object):
            raise UntrustedContentError(f"the content calls {name} with arguments", refused=name)
        if issubclass(base, BaseException):
            return BaseException.__new__(cls, *args)  # the arguments become .args: data
        if base is tuple:  # a named tuple's fields (its __getnewargs__)
            return tuple.__new__(cls, args)
        if base in (bytes, bytearray):
            size, what = _bytes_cost(args)
            _spend(size, what, name)
        elif base is str:  # a copy of the text
            size, what = _text_cost(args[:1])
            _spend(size, what, name)
        elif base is frozenset:  # a copy of the items
            size, what = _items_cost(0)(args)
            _spend(size, what, name)
        return base.__new__(cls, *args)

    return _StandIn(f"{cls.__name__}", (), {"__new__": __new__, "__slots__": (), "_pairio_class": cls,
                                            "__module__": __name__})


def _builtin_exception(klass: type) -> bool:
    return klass.__module__ == "builtins" and issubclass(klass, BaseException)


def _real(cls: Any) -> Any:
    if type(cls) is _BoundedCall:
        return cls.kind
    return type.__getattribute__(cls, "_pairio_class") if isinstance(cls, _StandIn) else cls


def _is_allowed_type(cls: Any) -> bool:
    return isinstance(cls, type) and (isinstance(cls, _StandIn) or (cls.__module__, cls.__qualname__) in _ALLOWED
                                      or issubclass(cls, enum.Enum) or _is_pandas_class(cls))


# What the calls of content loaded as data only may allocate: a pickle of a few bytes must not make
# gigabytes (``bytearray(10**10)``, ``list(range(10**10))``, an array of a huge shape), nor call
# ``bytearray(x)`` on one memoized ``x`` thousands of times. Data a pickle carries is not bounded
# (it is in the file: a stored array's buffer, in band or out of band, costs nothing here); only what
# calls make out of it or out of nothing: each call at most MAX_ALLOCATION_BYTES, all the calls of
# one load at most MAX_LOAD_ALLOCATION_BYTES. An item of a list, tuple, set or dict made by a call
# from an iterable counts as ITEM_BYTES. A ``range`` costs nothing (it is lazy); making items of it does.
MAX_ALLOCATION_BYTES = 1 << 26
MAX_LOAD_ALLOCATION_BYTES = 4 * MAX_ALLOCATION_BYTES
ITEM_BYTES = 64


class _Budget:
    """What the calls (and copying opcodes) of one load have allocated so far; ``copied`` holds the
    objects a copying opcode already copied (by id; each held, so ids stay theirs)."""

    __slots__ = ("spent", "copied")

    def __init__(self) -> None:
        self.spent = 0
        self.copied: dict[int, Any] | None = None

    def copy(self, source: Any, size: int, what: str, refused: str) -> None:
        """Charge an opcode's copy of ``source`` (``size`` bytes): the first copy of an object is free
        (the pickle carries it, or a charged call made it), every further one is charged."""
        copied = self.copied if self.copied is not None else {}
        self.copied = copied
        if id(source) in copied:
            self.spend(size, what, refused)
        else:
            copied[id(source)] = source

    def spend(self, size: int, what: str, refused: str) -> None:
        if size > MAX_ALLOCATION_BYTES:
            raise _too_large(what, size, MAX_ALLOCATION_BYTES, refused)
        self.spent += size
        if self.spent > MAX_LOAD_ALLOCATION_BYTES:
            raise UntrustedContentError(
                f"the content's calls allocate {self.spent:,} bytes in all (more than the limit of "
                f"{MAX_LOAD_ALLOCATION_BYTES:,} per load for content loaded as data only)", refused=refused)


_loading = threading.local()  # .budget, .extra: the budget and extra globals of the load running in this thread


def _spend(size: int, what: str, refused: str) -> None:
    budget = getattr(_loading, "budget", None) or _Budget()
    budget.spend(size, what, refused)


def _too_large(what: str, size: int, limit: int, refused: str) -> UntrustedContentError:
    return UntrustedContentError(f"the content makes {what} of {size:,} (more than the limit of {limit:,} for "
                                 "content loaded as data only)", refused=refused)


def _length(obj: Any) -> int:
    try:
        return len(obj)
    except OverflowError:  # a range longer than sys.maxsize
        return sys.maxsize
    except TypeError:
        return 0


def _bytes_cost(args: tuple) -> tuple[int, str]:
    """What ``bytes(*args)`` or ``bytearray(*args)`` allocates."""
    first = args[0] if args else None
    if isinstance(first, int):
        return first, "bytes of length"
    if isinstance(first, str):
        return 4 * len(first), "bytes from text of length x4"
    try:
        return memoryview(first).nbytes, "a copy of bytes"
    except TypeError:
        return _length(first), "bytes from items"


def _items_cost(position: int) -> Callable[[tuple], tuple[int, str]]:
    """What a container made from the iterable ``args[position]`` allocates."""

    def cost(args: tuple) -> tuple[int, str]:
        return (ITEM_BYTES * _length(args[position]) if len(args) > position else 0), "items counted as bytes"

    return cost


def _text_cost(args: tuple) -> tuple[int, str]:
    """What a class made from text (``str``, ``Decimal``, a path) allocates: about its arguments."""
    size = 0
    for arg in args:
        if isinstance(arg, (str, bytes, bytearray)):
            size += 4 * len(arg)
        elif not isinstance(arg, (int, float, complex, type(None))):
            raise UntrustedContentError(f"the content makes text of a {type(arg).__name__}",
                                        refused="builtins.str")
    return size, "text of bytes"


def _paths_cost(args: tuple) -> tuple[int, str]:
    """A path made of text: about its parts (other arguments are paths, already bounded)."""
    return sum(4 * len(a) for a in args if isinstance(a, (str, bytes))), "a path of bytes"


def _data_size(data: Any) -> int:
    """What a copy of ``data`` (an array, a pandas object, a list or tuple of items) allocates."""
    if isinstance(data, (list, tuple)):
        return 8 * len(data)
    if _root(data) in ("numpy", "pandas"):
        try:
            return int(data.nbytes)
        except (AttributeError, TypeError, ValueError):
            return 0
    return 0


def _pandas_copy_cost(args: tuple) -> tuple[int, str]:
    """A pandas index rebuilder ``(cls, d)`` (``_new_Index``...): the range cost, plus the size of
    the data it copies: converted to another ``dtype``, asked to ``copy``, or made of a list."""
    size = _ranges_cost(args)[0]
    d = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
    copies = bool(d.get("copy"))
    for field in ("data", "levels", "codes"):
        value = d.get(field)
        if field == "data" and "dtype" in d and not copies:
            try:
                copies = not bool(d["dtype"] == value.dtype)
            except (AttributeError, TypeError, ValueError):  # a dtype that does not compare: a conversion
                copies = True
        if isinstance(value, (list, tuple)):
            size += _data_size(value) + sum(_data_size(v) for v in value if copies or isinstance(v, (list, tuple)))
        elif copies:
            size += _data_size(value)
    return size, "copies of pandas data of bytes"


def _pandas_call_cost(args: tuple, kwargs: Any = None) -> tuple[int, str]:
    """A call of a pandas class with data (``Index(x, copy=True)``...) may copy each: their sizes."""
    values = [*args, *(kwargs or {}).values()]
    return (_ranges_cost(tuple(values))[0] + sum(_data_size(v) for v in values),
            "pandas data from arguments of bytes")


def _array_bytes(shape: Any, dtype: Any) -> int:
    import numpy

    count = int(numpy.prod(shape, dtype=object)) if shape is not None else 0
    return numpy.dtype(dtype).itemsize * max(count, 0)


def _ndarray_cost(args: tuple) -> tuple[int, str]:
    """``numpy.ndarray(shape, dtype, buffer, ...)``: a new array unless it is a view of a buffer."""
    if len(args) > 2 and args[2] is not None:
        return 0, "an array of bytes"
    return _array_bytes(args[0] if args else (), args[1] if len(args) > 1 else float), "an array of bytes"


def _no_call(args: tuple) -> tuple[int, str]:
    if args:
        raise UntrustedContentError("the content calls numpy.ma.MaskedArray", refused="numpy.ma.core.MaskedArray")
    return 0, ""


def _ranges_cost(args: tuple) -> tuple[int, str]:
    """A pandas helper may make an array of a range it is given (an argument, or a value of one)."""
    values = [*args, *(v for a in args if isinstance(a, dict) for v in a.values())]
    return sum(8 * _length(v) for v in values if isinstance(v, range)), "an array of a range of bytes"


class _Bounded:
    """An allowed class or function whose calls are charged to the load's allocation budget."""

    __slots__ = ("kind", "cost", "refused")

    def __init__(self, kind: Any, cost: Callable[[tuple], tuple[int, str]], refused: str) -> None:
        self.kind, self.cost, self.refused = kind, cost, refused

    def call(self, args: tuple) -> Any:
        size, what = _cost_of(self.cost, args, self.refused)
        _spend(size, what, self.refused)
        return self.kind(*args)


class _BoundedCall:
    """What find_class hands out for a :class:`_Bounded`, one per lookup: calling it charges the call
    to the load's budget; one still alive after the load means the result holds the class itself
    (see :func:`_load`)."""

    __slots__ = ("kind", "cost", "refused", "budget", "called", "__weakref__")

    def __init__(self, bounded: _Bounded, budget: _Budget) -> None:
        self.kind, self.cost, self.refused, self.budget = bounded.kind, bounded.cost, bounded.refused, budget
        self.called = False

    def __call__(self, *args: Any) -> Any:
        self.called = True
        size, what = self.cost(args)
        self.budget.spend(size, what, self.refused)
        return self.kind(*args)


@functools.cache
def _bounded_types() -> dict[tuple[str, str], _Bounded]:
    """The types data-only loading builds within a budget, by (module, name): made at first use
    (``decimal`` loads then, not with ``import pairio``)."""
    import collections
    import decimal

    items = _items_cost(0)
    table: dict[tuple[str, str], _Bounded] = {}
    for kind, cost in [(bytes, _bytes_cost), (bytearray, _bytes_cost), (str, _text_cost), (list, items),
                       (tuple, items), (set, items), (frozenset, items), (dict, items)]:
        table[("builtins", kind.__name__)] = _Bounded(kind, cost, f"builtins.{kind.__name__}")
    for kind, cost in [(collections.OrderedDict, items), (collections.deque, items),
                       (collections.Counter, items), (collections.defaultdict, _items_cost(1))]:
        table[("collections", kind.__name__)] = _Bounded(kind, cost, f"collections.{kind.__name__}")
    table[("decimal", "Decimal")] = _Bounded(decimal.Decimal, _text_cost, "decimal.Decimal")
    return table




def _added_type(cls: Any) -> bool:
    """Whether ``cls`` is a class :func:`add_safe_globals` or the load's ``extra`` allowed."""
    if not isinstance(cls, type):
        return False
    key = (cls.__module__, cls.__qualname__)
    return key in _added.get() or key in getattr(_loading, "extra", frozenset())


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """copyreg._reconstructor (protocols 0 and 1) for allowed classes and plain bases only: a class
    allowed by :func:`add_safe_globals` loads as in protocol 2 and later, its own methods and all."""
    base = _real(base)
    added = _added_type(cls)
    if not (added or _is_allowed_type(cls)) or not (base in _PLAIN_BASES or (added and _is_allowed_type(base))):
        raise UntrustedContentError("the content rebuilds an object of a class that is not allowed",
                                    refused="copyreg._reconstructor")
    real = _real(cls)
    if base is object:
        return object.__new__(real)
    bounded = _bounded_types().get(("builtins", base.__name__))
    if bounded is not None:
        size, what = bounded.cost((state,))
        _spend(size, what, "copyreg._reconstructor")
    obj = base.__new__(real, state)
    if base.__init__ is not object.__init__:  # a builtin's own __init__ (a list's items), never the class's
        base.__init__(obj, state)
    return obj


def _newobj(cls: Any, *args: Any) -> Any:
    if not _is_allowed_type(cls):
        raise UntrustedContentError("the content builds an object of a class that is not allowed",
                                    refused="copyreg.__newobj__")
    _charge_new(cls, args)
    return cls.__new__(cls, *args)


def _newobj_ex(cls: Any, args: Any, kwargs: Any) -> Any:
    if not _is_allowed_type(cls):
        raise UntrustedContentError("the content builds an object of a class that is not allowed",
                                    refused="copyreg.__newobj_ex__")
    _charge_new(cls, args, kwargs)
    return cls.__new__(cls, *args, **kwargs)


def _charge_new(cls: Any, args: tuple, kwargs: Any = None) -> None:
    """Charge ``cls.__new__(cls, *args)`` as a call of ``cls`` if its calls are charged."""
    if isinstance(cls, type) and _is_pandas_class(cls):
        size, what = _cost_of(lambda a: _pandas_call_cost(a, kwargs), args, f"{cls.__module__}.{cls.__qualname__}")
        _spend(size, what, f"{cls.__module__}.{cls.__qualname__}")
        return
    bounded = _resolver.bounded_of(cls)
    if bounded is not None:
        if kwargs:
            raise UntrustedContentError(f"the content makes a {cls.__name__} with keywords", refused=bounded.refused)
        size, what = _cost_of(bounded.cost, args, bounded.refused)
        _spend(size, what, bounded.refused)


def _cost_of(cost: Callable[[tuple], tuple[int, str]], args: tuple, refused: str) -> tuple[int, str]:
    """``cost(args)``; arguments it cannot size (a shape that is not one) are refused."""
    try:
        return cost(args)
    except (TypeError, ValueError, OverflowError) as error:
        raise UntrustedContentError(f"the content calls {refused} with arguments that do not size it ({error})",
                                    refused=refused) from None


def _encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """_codecs.encode as protocols 0 to 2 use it for bytes: text codecs only."""
    if encoding.replace("_", "-").lower() not in ("latin1", "latin-1", "iso-8859-1", "utf-8", "utf8", "ascii"):
        raise UntrustedContentError(f"the content encodes with codec {encoding!r}", refused="_codecs.encode")
    return text.encode(encoding, errors)


def _getattr(obj: Any, name: str, *default: Any) -> Any:
    """getattr as pickles of enum members and zoneinfo zones use it, for those only."""
    obj = _real(obj)
    if isinstance(obj, type) and issubclass(obj, enum.Enum) and name in obj.__members__:
        return obj.__members__[name]
    zoneinfo = sys.modules.get("zoneinfo")
    if zoneinfo is not None and obj is zoneinfo.ZoneInfo and name == "_unpickle":
        return obj._unpickle
    raise UntrustedContentError(f"the content looks up attribute {name!r} of a {type(obj).__name__}",
                                refused="builtins.getattr")


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
    """numpy's array rebuilder, for numpy's own array types."""
    import numpy

    subtype = _real(subtype)
    if not (isinstance(subtype, type) and issubclass(subtype, numpy.ndarray)
            and subtype.__module__.split(".")[0] == "numpy"):
        raise UntrustedContentError(f"the content rebuilds an array of type {subtype!r}",
                                    refused="numpy._core.multiarray._reconstruct")
    _spend(_array_bytes(shape, dtype), "an array of bytes", "numpy._core.multiarray._reconstruct")
    return numpy.ndarray.__new__(subtype, shape, dtype)


def _mareconstruct(subtype: Any, baseclass: Any, baseshape: Any, basetype: Any) -> Any:
    """numpy.ma's masked array rebuilder, for numpy's own array types."""
    import numpy.ma.core

    subtype, baseclass = _real(subtype), _real(baseclass)
    for klass in (subtype, baseclass):
        if not (isinstance(klass, type) and issubclass(klass, numpy.ndarray)
                and klass.__module__.split(".")[0] == "numpy"):
            raise UntrustedContentError(f"the content rebuilds a masked array of type {klass!r}",
                                        refused="numpy.ma.core._mareconstruct")
    _spend(2 * _array_bytes(baseshape, basetype), "a masked array of bytes", "numpy.ma.core._mareconstruct")
    return numpy.ma.core._mareconstruct(subtype, baseclass, baseshape, basetype)


def _pandas_wrapper(function_name: str, real: Callable[..., Any]) -> Callable[..., Any]:
    """A pandas rebuild helper whose first argument is a class: pandas' own classes only."""

    def rebuild(cls: Any, *args: Any) -> Any:
        cls = _real(cls)
        if not _is_pandas_class(cls):
            raise UntrustedContentError(f"the content rebuilds a pandas object of class {cls!r}",
                                        refused=function_name)
        return real(cls, *args)

    return rebuild


_PANDAS_CLASS_HELPERS = {("pandas.core.indexes.base", "_new_Index"),
                         ("pandas.core.indexes.datetimes", "_new_DatetimeIndex"),
                         ("pandas.core.indexes.period", "_new_PeriodIndex"),
                         ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked")}


@functools.lru_cache(maxsize=1)
def _pandas_bases() -> tuple[type, ...]:
    import pandas
    from pandas._libs.internals import BlockManager
    from pandas._libs.tslibs import BaseOffset
    from pandas.api.extensions import ExtensionArray, ExtensionDtype

    bases: list[type] = [pandas.Index, pandas.Series, pandas.DataFrame, ExtensionArray, ExtensionDtype, BaseOffset,
                         BlockManager, pandas.Period, pandas.Interval, pandas.Timestamp, pandas.Timedelta,
                         type(pandas.NaT), type(pandas.NA)]
    try:
        from pandas.core.internals.managers import BaseBlockManager

        bases.append(BaseBlockManager)
    except ImportError:
        pass
    return tuple(bases)


def _is_pandas_class(cls: Any) -> bool:
    if not isinstance(cls, type) or not (cls.__module__ or "").startswith("pandas"):
        return False
    return issubclass(cls, _pandas_bases())


def _import(module: str) -> Any:
    loaded = sys.modules.get(module)
    if loaded is not None:
        return loaded
    if module.split(".")[0] not in _IMPORTABLE_ROOTS:
        return None
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _lookup(module: Any, name: str) -> Any:
    obj = module
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


# numpy and pandas globals whose calls are charged (made when first named: numpy is imported on use).
_LAZY_COSTS: dict[tuple[str, str], Callable[[tuple], tuple[int, str]]] = {
    **{(m, "ndarray"): _ndarray_cost for m in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray")},
    ("numpy.ma.core", "MaskedArray"): _no_call, ("numpy.ma", "MaskedArray"): _no_call,
    **{(m, n): _paths_cost for m in ("pathlib", "pathlib._local")
       for n in ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath")},
    **{key: _pandas_copy_cost for key in [("pandas.core.indexes.base", "_new_Index"),
                                          ("pandas.core.indexes.datetimes", "_new_DatetimeIndex"),
                                          ("pandas.core.indexes.period", "_new_PeriodIndex")]},
    **{key: _ranges_cost for key in [("pandas._libs.internals", "_unpickle_block"),
                                     ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"),
                                     ("pandas._libs.tslibs.timedeltas", "_timedelta_unpickle"),
                                     ("pandas._libs.tslibs.nattype", "_nat_unpickle")]},
}

_SAFE_REPLACEMENTS: dict[tuple[str, str], Any] = {
    ("copyreg", "_reconstructor"): _reconstructor,
    ("copyreg", "__newobj__"): _newobj,
    ("copyreg", "__newobj_ex__"): _newobj_ex,
    ("_codecs", "encode"): _encode,
    ("codecs", "encode"): _encode,
    ("builtins", "getattr"): _getattr,
    ("numpy.ma.core", "_mareconstruct"): _mareconstruct,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
}


def replace_global(module: str, name: str, replacement: Callable[..., Any]) -> None:
    """Hand out ``replacement`` for the global ``module.name`` in content loaded as data only: how a
    layer above allows its own rebuild helper, in a form that only builds data."""
    _SAFE_REPLACEMENTS[(module, name)] = replacement


# Methods the unpickler (or the C code it calls) runs on a restored instance: a class that defines one
# would run its own code on content no trusted writer vouches for, so it is not restored by state.
_LOAD_METHODS = frozenset({"__setstate__", "__getattr__", "__getattribute__", "__setattr__",
                           "append", "extend", "add", "__setitem__", "__hash__", "__eq__",
                           "__index__", "__iter__", "__len__", "__int__", "__float__", "__bytes__", "keys"})


def _runs_on_load(klass: type) -> bool:
    """Whether ``klass`` defines a method of its own that loading an instance could call (those
    ``dataclasses`` generates only compare, hash or freeze the fields: they are allowed)."""
    for name in _LOAD_METHODS & vars(klass).keys():
        method = vars(klass)[name]
        if method is None or getattr(method, "__module__", None) == "dataclasses":
            continue  # ``__hash__ = None``, or generated by @dataclass
        if name in ("__eq__", "__hash__", "__setattr__") and _generated_by_dataclass(klass):
            continue
        return True
    return False


def _generated_by_dataclass(klass: type) -> bool:
    return "__dataclass_fields__" in vars(klass) and "__dataclass_params__" in vars(klass)


class _Resolver:
    """find_class's decisions, with stand-ins made once per class for the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stand_ins: dict[type, type] = {}
        self._bounded: dict[tuple[str, str], _Bounded] = {}

    def _bound(self, module: str, name: str, obj: Any) -> _Bounded:
        """``obj`` (``module.name``, of numpy or pandas) with its calls charged; made once."""
        made = self._bounded.get((module, name))
        if made is None:
            cost = _LAZY_COSTS.get((module, name), _ranges_cost)
            with self._lock:
                made = self._bounded.setdefault((module, name), _Bounded(obj, cost, f"{module}.{name}"))
        return made

    def bounded_of(self, cls: Any) -> _Bounded | None:
        """The bounded form of the class ``cls``, if its calls are charged."""
        if not isinstance(cls, type):
            return None
        key = (cls.__module__, cls.__qualname__)
        return _bounded_types().get(key) or self._bounded.get(key) or (
            self._bound(*key, cls) if key in _LAZY_COSTS else None)

    def resolve(self, module: str, name: str, extra: frozenset[tuple[str, str]]) -> Any:
        # Python 2 names (protocols 0 to 2: ``__builtin__.set``), as pickle's own find_class maps them.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        where = f"{module}.{name}"
        replacement = _SAFE_REPLACEMENTS.get((module, name))
        if replacement is not None:
            return replacement
        bounded = _bounded_types().get((module, name)) or self._bounded.get((module, name))
        if bounded is not None:
            return bounded
        if (module, name) in _PANDAS_CLASS_HELPERS:
            loaded = _import(module)
            if loaded is None:
                raise UntrustedContentError(f"module {module} is not available", refused=where)
            return self._bound(module, name, _pandas_wrapper(where, _lookup(loaded, name)))
        listed = (module, name) in _ALLOWED or (module, name) in extra or (module, name) in _added.get()
        if not listed and "." in name:  # attribute chains (``os.path.join``, ``X.__init__``) only when listed
            raise UntrustedContentError(f"the content names {where}", refused=where)
        loaded = _import(module) if listed or module.split(".")[0] in _IMPORTABLE_ROOTS else sys.modules.get(module)
        if loaded is None:
            raise UntrustedContentError(f"the content names {where}, of a module not imported here", refused=where)
        try:
            obj = _lookup(loaded, name)
        except AttributeError:
            raise UntrustedContentError(f"the content names {where}, which does not exist", refused=where) from None
        if listed:
            return self._bound(module, name, obj) if (module, name) in _LAZY_COSTS else obj
        if isinstance(obj, type):
            if issubclass(obj, enum.Enum) or _is_pandas_class(obj):
                return obj
            if self._restorable(obj, module):
                return self._stand_in(obj, where)
        raise UntrustedContentError(f"the content calls {where}", refused=where)

    @staticmethod
    def _restorable(cls: type, module: str) -> bool:
        if module.split(".")[0] in _NEVER or (cls.__module__ or "").split(".")[0] in _NEVER:
            return False
        if isinstance(cls, _StandIn) or type(cls) not in (type, abc.ABCMeta):
            # A metaclass of its own may do anything when an instance is made: not plain.
            return False
        for klass in cls.__mro__:
            if klass in _PLAIN_BASES or _builtin_exception(klass):
                continue
            if klass.__module__.split(".")[0] in _NEVER and klass.__module__ not in _BASE_MODULES:
                return False  # a standard-library base (a thread, a file, a socket) is not data
            if "__del__" in vars(klass) or _runs_on_load(klass):
                return False
        return True

    def _stand_in(self, cls: type, where: str) -> type:
        made = self._stand_ins.get(cls)
        if made is None:
            with self._lock:
                made = self._stand_ins.setdefault(cls, _stand_in(cls, where))
        return made


_resolver = _Resolver()


class _NeedsChecks(UntrustedContentError):
    """The C unpickler met a global whose objects opcodes could grow by copying (a slice as a key of
    ``SETITEM``, numpy arrays rebuilt by ``BUILD``, pandas objects given items): :func:`safe_loads`
    then loads with :class:`_TypedUnpickler`, which checks those opcodes."""


_CHECKED_REPLACEMENTS = frozenset({_reconstruct, _mareconstruct})
_CHECKED_ROOTS = frozenset({"numpy", "pandas"})


def _needs_checks(found: Any) -> bool:
    """Whether the global ``found`` makes objects whose opcodes only :class:`_TypedUnpickler` checks."""
    if found is slice or found in _CHECKED_REPLACEMENTS:
        return True
    if type(found) is _Bounded:
        return found.refused.split(".")[0] in _CHECKED_ROOTS
    module = getattr(found, "__module__", None)
    return isinstance(module, str) and module.split(".")[0] in _CHECKED_ROOTS


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds data only (see the module's docstring); ``extra`` are more
    ``(module, name)`` globals allowed. Load with :func:`safe_loads` or :func:`safe_load`: they budget
    the calls of one load and give classes whose calls are charged back as themselves."""

    def __init__(self, file: Any, *, buffers: Any = None, extra: frozenset[tuple[str, str]] = frozenset(),
                 as_themselves: frozenset[int] = frozenset()) -> None:
        super().__init__(file, buffers=buffers)
        self._extra = extra
        self._as_themselves = as_themselves  # which lookups (by their order) get the class itself
        self._lookups = 0
        self.handed_out: list[tuple[int, weakref.ref]] = []

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        found = _resolver.resolve(module, name, self._extra)
        if _needs_checks(found):
            raise _NeedsChecks(f"the content names {module}.{name}, whose objects only safe_loads' checking "
                               "unpickler loads", refused=f"{module}.{name}")
        self._lookups += 1
        if type(found) is _Bounded:
            if self._lookups in self._as_themselves:
                return found.kind
            call = _BoundedCall(found, getattr(_loading, "budget", None) or _Budget())
            self.handed_out.append((self._lookups, weakref.ref(call)))
            return call
        return found

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102
        raise UntrustedContentError("the content refers to a persistent object", refused="persistent_load")


class _TypedUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """The same decisions in Python's own unpickler, handing out classes whose calls are charged as
    themselves and charging the calls where they are made (REDUCE, NEWOBJ, OBJ, INST), and checking
    the opcodes that could copy (SETITEM, SETITEMS, APPEND, APPENDS, BUILD): slower, used for content
    whose result holds such a class or that names slices, numpy or pandas."""

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, file: Any, *, buffers: Any = None, extra: frozenset[tuple[str, str]] = frozenset(),
                 data: memoryview | None = None) -> None:
        super().__init__(file, buffers=buffers)
        self._extra = extra
        self._bounded: dict[int, _Bounded] = {}
        self._file, self._data = file, data  # (``data``: what ``file`` reads, if known: copied from once)

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        found = _resolver.resolve(module, name, self._extra)
        if type(found) is _Bounded:
            self._bounded[id(found.kind)] = found
            return found.kind
        return found

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102
        raise UntrustedContentError("the content refers to a persistent object", refused="persistent_load")

    def load(self) -> Any:  # noqa: D102
        try:
            return super().load()
        except IndexError as error:  # the stack or a mark ran out: as the C unpickler says it
            raise pickle.UnpicklingError(f"the pickle is malformed ({error})") from None

    def _load_bytearray8(self) -> None:
        """BYTEARRAY8 (an array's in-band buffer) copied once from the file's buffer, as the C
        unpickler does (pickle's own makes a zeroed bytearray then reads into it)."""
        (size,) = struct.unpack("<Q", self.read(8))
        if size > sys.maxsize:
            raise pickle.UnpicklingError(f"BYTEARRAY8 exceeds system's maximum size of {sys.maxsize} bytes")
        if self._data is None or self._unframer.current_frame is not None:
            data = bytearray(size)
            self.readinto(data)
        else:
            start = self._file.tell()
            data = bytearray(self._data[start:start + size])
            if len(data) < size:
                raise pickle.UnpicklingError("pickle data was truncated")
            self._file.seek(start + size)
        self.append(data)

    def _call(self, func: Any, args: tuple) -> Any:
        if isinstance(func, type) and _is_pandas_class(func):
            _charge_new(func, args)  # (a pandas class's call copies its data as its __new__ does)
            return func(*args)
        bounded = self._bounded.get(id(func))
        return func(*args) if bounded is None or bounded.kind is not func else bounded.call(args)

    def _load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def _load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        _charge_new(cls, args)
        self.append(cls.__new__(cls, *args))

    def _load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        _charge_new(cls, args, kwargs)
        self.append(cls.__new__(cls, *args, **kwargs))

    def _load_setitem(self) -> None:
        stack = self.stack
        value, key = stack.pop(), stack.pop()
        target = stack[-1]
        if type(target) is not dict:
            _check_setitems(target, (key,))
        target[key] = value

    def _load_setitems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) is not dict:
            _check_setitems(target, items[::2])
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    def _load_append(self) -> None:
        _check_appends(self.stack[-2])
        pickle._Unpickler.load_append(self)  # type: ignore[attr-defined]

    def _load_appends(self) -> None:
        _check_appends(self.metastack[-1][-1])  # (the target, below the mark)
        pickle._Unpickler.load_appends(self)  # type: ignore[attr-defined]

    def _load_build(self) -> None:
        _charge_build(self.stack[-2], self.stack[-1])
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]

    def _instantiate(self, klass: Any, args: tuple) -> None:
        if args or not isinstance(klass, type) or hasattr(klass, "__getinitargs__"):
            self.append(self._call(klass, tuple(args)))
        else:
            self.append(klass.__new__(klass))

    dispatch[pickle.REDUCE[0]] = _load_reduce
    dispatch[pickle.NEWOBJ[0]] = _load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = _load_newobj_ex
    dispatch[pickle.SETITEM[0]] = _load_setitem
    dispatch[pickle.SETITEMS[0]] = _load_setitems
    dispatch[pickle.APPEND[0]] = _load_append
    dispatch[pickle.APPENDS[0]] = _load_appends
    dispatch[pickle.BUILD[0]] = _load_build
    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8


def _root(obj: Any) -> str:
    return (type(obj).__module__ or "").split(".")[0]


def _check_setitems(target: Any, keys: Iterable[Any]) -> None:
    """``SETITEM``/``SETITEMS`` on ``target``, not a dict: a slice key would copy the value into it
    (``L[0:0] = L`` doubles ``L``), a numpy or pandas object's ``__setitem__`` copies (a column)."""
    if isinstance(target, dict) and _root(target) not in _CHECKED_ROOTS:
        return  # a dict's own __setitem__ (a class defining its own is never restored by state)
    if _root(target) in _CHECKED_ROOTS:
        raise UntrustedContentError(f"the content sets items of a {type(target).__name__} (SETITEM)",
                                    refused="SETITEM")
    if any(type(key) is slice for key in keys):
        raise UntrustedContentError(f"the content assigns to a slice of a {type(target).__name__} (SETITEM), "
                                    "which copies the value into it", refused="SETITEM")


def _check_appends(target: Any) -> None:
    """``APPEND``/``APPENDS`` on a numpy or pandas object would run its ``append`` (a copy)."""
    if _root(target) in _CHECKED_ROOTS:
        raise UntrustedContentError(f"the content appends to a {type(target).__name__} (APPENDS)",
                                    refused="APPENDS")


def _charge_build(target: Any, state: Any) -> None:
    """``BUILD`` of a numpy array (``ndarray.__setstate__``) copies its raw data, bytes or a list of
    items: the first copy of a given raw object is free (the pickle carries it), further ones are
    charged (one memoized raw object rebuilding many arrays)."""
    if _root(target) != "numpy" or type(state) is not tuple:
        return
    budget = getattr(_loading, "budget", None) or _Budget()
    for raw in state:
        if isinstance(raw, (bytes, bytearray)):
            budget.copy(raw, len(raw), "array copies of bytes", "BUILD")
        elif isinstance(raw, list):
            budget.copy(raw, 8 * len(raw), "array copies of bytes", "BUILD")


def _load(file: Any, buffers: Any, extra: frozenset[tuple[str, str]], data: memoryview | None = None) -> Any:
    """Load from ``file`` with a fresh budget. A class whose calls are charged is handed out as a
    :class:`_BoundedCall`; if one is still alive once the unpickler is gone, the result holds it:
    then load again handing out the class itself at those lookups if they were never called (the
    opcodes run alike), else with :class:`_TypedUnpickler`. Content naming a global whose objects
    copying opcodes could grow (:class:`_NeedsChecks`) is loaded with :class:`_TypedUnpickler` too."""
    start = file.tell()
    buffers = None if buffers is None else list(buffers)
    outer, outer_extra = getattr(_loading, "budget", None), getattr(_loading, "extra", frozenset())
    _loading.extra = extra
    try:
        as_themselves: frozenset[int] = frozenset()
        for _ in range(2):
            _loading.budget = _Budget()
            unpickler = SafeUnpickler(file, buffers=buffers, extra=extra, as_themselves=as_themselves)
            try:
                value = unpickler.load()
            except _NeedsChecks:
                del unpickler
                file.seek(start)
                break
            handed_out = unpickler.handed_out
            del unpickler  # (and its memo)
            alive = [(lookup, ref()) for lookup, ref in handed_out if ref() is not None]
            if not alive:
                return value
            del value
            file.seek(start)
            if as_themselves or any(call is None or call.called for _, call in alive):
                break
            as_themselves = frozenset(lookup for lookup, _ in alive)
            del alive
        _loading.budget = _Budget()
        return _TypedUnpickler(file, buffers=buffers, extra=extra, data=data).load()
    finally:
        _loading.budget, _loading.extra = outer, outer_extra


def safe_loads(data: bytes | bytearray | memoryview, buffers: Any = None,
               extra: frozenset[tuple[str, str]] = frozenset()) -> Any:
    """``pickle.loads`` that builds data only; UntrustedContentError names the first global refused."""
    view = memoryview(data)
    return _load(io.BytesIO(data), buffers, extra, view.cast("B") if view.contiguous else None)


def safe_load(file: Any, extra: frozenset[tuple[str, str]] = frozenset()) -> Any:
    """``pickle.load`` that builds data only."""
    if not file.seekable():
        file = io.BytesIO(file.read())
    return _load(file, None, extra)
