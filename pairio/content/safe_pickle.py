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

What a call would make out of nothing is bounded (``bytearray(n)``, ``bytes(n)``, a ``range`` a
list or set is made of, an array's shape): :data:`MAX_ALLOCATION_BYTES`, :data:`MAX_RANGE_LENGTH`.

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
import sys
import threading
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
    + [("numpy.ma.core", "_mareconstruct"), ("numpy.ma.core", "MaskedArray")]
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
            _check_length(base, args)
        return base.__new__(cls, *args)

    return _StandIn(f"{cls.__name__}", (), {"__new__": __new__, "__slots__": (), "_pairio_class": cls,
                                            "__module__": __name__})


def _builtin_exception(klass: type) -> bool:
    return klass.__module__ == "builtins" and issubclass(klass, BaseException)


def _real(cls: Any) -> Any:
    return type.__getattribute__(cls, "_pairio_class") if isinstance(cls, _StandIn) else cls


def _is_allowed_type(cls: Any) -> bool:
    return isinstance(cls, type) and (isinstance(cls, _StandIn) or (cls.__module__, cls.__qualname__) in _ALLOWED
                                      or issubclass(cls, enum.Enum) or _is_pandas_class(cls))


# What one call made by content loaded as data only may allocate: a pickle of a few bytes must not
# make gigabytes (``bytearray(10**10)``, ``list(range(10**10))``, an array of a huge shape). Data a
# pickle carries is not bounded (it is in the file); only what a call would make out of nothing.
MAX_ALLOCATION_BYTES = 1 << 26
MAX_RANGE_LENGTH = 1 << 20


def _too_large(what: str, size: int, limit: int, refused: str) -> UntrustedContentError:
    return UntrustedContentError(f"the content makes {what} of {size:,} (more than the limit of {limit:,} for "
                                 "content loaded as data only)", refused=refused)


def _sized(kind: type) -> Callable[..., Any]:
    """``bytes`` or ``bytearray`` whose length from an int (or a range) is bounded."""

    def make(*args: Any) -> Any:
        _check_length(kind, args)
        return kind(*args)

    make.__qualname__ = make.__name__ = kind.__name__
    return make


def _check_length(kind: type, args: tuple) -> None:
    """Refuse ``kind(*args)`` (``bytes``, ``bytearray`` or a subclass) if it would be longer than the limit."""
    first = args[0] if args else None
    length = len(first) if isinstance(first, range) else first
    if isinstance(length, int) and not isinstance(length, bool) and length > MAX_ALLOCATION_BYTES:
        raise _too_large(f"{kind.__name__} of length", length, MAX_ALLOCATION_BYTES, f"builtins.{kind.__name__}")


def _range(*args: Any) -> range:
    """``range``, at most MAX_RANGE_LENGTH long (a list, set or bytes made of it would be as long)."""
    made = range(*args)
    if len(made) > MAX_RANGE_LENGTH:
        raise _too_large("a range of length", len(made), MAX_RANGE_LENGTH, "builtins.range")
    return made


_bounded_bytes, _bounded_bytearray = _sized(bytes), _sized(bytearray)
# The bounded stand-ins for types, to the types (where a base class is named, not called).
_TYPE_OF: dict[Any, type] = {_bounded_bytes: bytes, _bounded_bytearray: bytearray, _range: range}


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """copyreg._reconstructor (protocols 0 and 1) for allowed classes and plain bases only."""
    base = _TYPE_OF.get(base, base)
    if not _is_allowed_type(cls) or base not in _PLAIN_BASES:
        raise UntrustedContentError("the content rebuilds an object of a class that is not allowed",
                                    refused="copyreg._reconstructor")
    real = _real(cls)
    if base is object:
        return object.__new__(real)
    if base in (bytes, bytearray):
        _check_length(base, (state,))
    obj = base.__new__(real, state)
    if base.__init__ is not object.__init__:  # a builtin's own __init__ (a list's items), never the class's
        base.__init__(obj, state)
    return obj


def _newobj(cls: Any, *args: Any) -> Any:
    if not _is_allowed_type(cls):
        raise UntrustedContentError("the content builds an object of a class that is not allowed",
                                    refused="copyreg.__newobj__")
    return cls.__new__(cls, *args)


def _newobj_ex(cls: Any, args: Any, kwargs: Any) -> Any:
    if not _is_allowed_type(cls):
        raise UntrustedContentError("the content builds an object of a class that is not allowed",
                                    refused="copyreg.__newobj_ex__")
    return cls.__new__(cls, *args, **kwargs)


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
    size = numpy.dtype(dtype).itemsize * int(numpy.prod(shape, dtype=object)) if shape else 0
    if size > MAX_ALLOCATION_BYTES:
        raise _too_large("an array of bytes", size, MAX_ALLOCATION_BYTES, "numpy._core.multiarray._reconstruct")
    return numpy.ndarray.__new__(subtype, shape, dtype)


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


_SAFE_REPLACEMENTS: dict[tuple[str, str], Any] = {
    ("copyreg", "_reconstructor"): _reconstructor,
    ("copyreg", "__newobj__"): _newobj,
    ("copyreg", "__newobj_ex__"): _newobj_ex,
    ("_codecs", "encode"): _encode,
    ("codecs", "encode"): _encode,
    ("builtins", "getattr"): _getattr,
    ("builtins", "bytes"): _bounded_bytes,
    ("builtins", "bytearray"): _bounded_bytearray,
    ("builtins", "range"): _range,
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
        self._pandas_helpers: dict[tuple[str, str], Callable[..., Any]] = {}

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
        if (module, name) in _PANDAS_CLASS_HELPERS:
            helper = self._pandas_helpers.get((module, name))
            if helper is None:
                loaded = _import(module)
                if loaded is None:
                    raise UntrustedContentError(f"module {module} is not available", refused=where)
                helper = self._pandas_helpers[(module, name)] = _pandas_wrapper(where, _lookup(loaded, name))
            return helper
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
            return obj
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


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds data only (see the module's docstring); ``extra`` are more
    ``(module, name)`` globals allowed."""

    def __init__(self, file: Any, *, buffers: Any = None,
                 extra: frozenset[tuple[str, str]] = frozenset()) -> None:
        super().__init__(file, buffers=buffers)
        self._extra = extra

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        return _resolver.resolve(module, name, self._extra)

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102
        raise UntrustedContentError("the content refers to a persistent object", refused="persistent_load")


def safe_loads(data: bytes | bytearray | memoryview, buffers: Any = None,
               extra: frozenset[tuple[str, str]] = frozenset()) -> Any:
    """``pickle.loads`` that builds data only; UntrustedContentError names the first global refused."""
    return SafeUnpickler(io.BytesIO(data), buffers=buffers, extra=extra).load()


def safe_load(file: Any, extra: frozenset[tuple[str, str]] = frozenset()) -> Any:
    """``pickle.load`` that builds data only."""
    return SafeUnpickler(file, extra=extra).load()

