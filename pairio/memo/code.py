"""What a function's result depends on besides its arguments: code, helpers, constants, versions.

Starting from the function, the walk follows every global name its code (and
its nested functions' code) refers to:

* a function or class of user code is a *helper*: hashed by its source, and
  walked in turn (cycles are fine: the result is a flat set);
* a user module (``helpers.smooth``) is looked into for the attribute names the
  code uses;
* a module-level constant (numbers, strings, tuples, small containers of those,
  enums, numpy arrays) counts by value;
* anything from a library counts by its distribution's version, the standard
  library by nothing (see :mod:`.dependencies`);
* closure variables count by value (functions and classes in them are walked).

Globals of other kinds (a logger, an open connection, an instance) are listed as
ignored in :meth:`CachedFunction.explain`. Lookups the walk cannot follow
(``getattr(module, name)``, ``importlib.import_module``, ``globals()[...]``,
``sys.modules[...]``, ``eval``/``exec``) are listed as ``dynamic`` (with a
warning from the decorator); ``getattr(module, "literal")`` is followed. The description is computed once per
function object (a module imported afresh gives new function objects).
"""

from __future__ import annotations

import builtins
import dataclasses
import dis
import enum
import functools
import hashlib
import importlib
import inspect
import marshal
import os
import sys
import types
import weakref
from typing import Any

from ..hashing import canonical_json
from . import dependencies
from .arguments import hash_value
from .source import TOKEN_FORMAT, source_digest

_CONSTANT_TYPES = (type(None), bool, int, float, complex, str, bytes)
_CONSTANT_CONTAINERS = (tuple, frozenset, list, set, dict)
# Module-level containers bigger than this are data, not settings: ignored (listed in explain).
_MAX_CONSTANT_ITEMS = 10_000
_MAX_CONSTANT_ARRAY_BYTES = 1 << 20
_MAX_TABLE_ITEMS = 1_000


@dataclasses.dataclass(frozen=True)
class CodeDescription:
    """The code part of a cached function's key; ``digest`` is what enters the key."""

    function: str
    source: str
    helpers: dict[str, str]
    constants: dict[str, str]
    closure: dict[str, str]
    dependencies: dict[str, str]
    stdlib: tuple[str, ...]
    ignored: dict[str, str]
    notes: tuple[str, ...]
    digest: str
    dynamic: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Everything, for ``explain``: what enters the digest and what was left out."""
        return dataclasses.asdict(self)


_descriptions: weakref.WeakKeyDictionary[Any, CodeDescription] = weakref.WeakKeyDictionary()
_source_digests: weakref.WeakKeyDictionary[Any, tuple[str, str | None]] = weakref.WeakKeyDictionary()


def qualified_name(obj: Any) -> str:
    """``module.qualname``, the module named as :func:`module_label` says."""
    module = module_label(getattr(obj, "__module__", None) or "__main__")
    return f"{module}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"


def module_label(name: str) -> str:
    """How a module is named in keys: a program's main module by the name it is imported by.

    ``python pipeline.py`` and ``import pipeline`` (a pool worker's ``__mp_main__`` too)
    give ``pipeline``; ``python -m lab.pipeline`` gives ``lab.pipeline``; an interactive
    session or a notebook, which has no such name, ``__main__``.
    """
    if name not in ("__main__", "__mp_main__"):
        return name
    main = sys.modules.get(name) or sys.modules.get("__main__")
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    if spec_name and spec_name not in ("__main__", "__mp_main__"):
        return spec_name
    file = getattr(main, "__file__", None)
    if isinstance(file, str) and file.endswith(".py"):
        return os.path.splitext(os.path.basename(file))[0]
    return "__main__"


def describe_function(func: Any) -> CodeDescription:
    """The code description of ``func`` (computed once per function object)."""
    func = _unwrap(func)
    try:
        return _descriptions[func]
    except (KeyError, TypeError):
        pass
    walker = _Walker()
    name = qualified_name(func)
    own = walker.function(func, record=False)
    walker.owner_class(func)
    parts = {
        "format": TOKEN_FORMAT,
        "function": name,
        "source": own,
        "helpers": walker.helpers,
        "constants": walker.constants,
        "closure": walker.closure,
        "dependencies": walker.dependencies,
    }
    digest = hashlib.sha1(canonical_json(parts).encode("utf-8")).hexdigest()
    description = CodeDescription(
        function=name, source=own, helpers=dict(sorted(walker.helpers.items())),
        constants=dict(sorted(walker.constants.items())), closure=dict(sorted(walker.closure.items())),
        dependencies=dict(sorted(walker.dependencies.items())), stdlib=tuple(sorted(walker.stdlib)),
        ignored=dict(sorted(walker.ignored.items())), notes=tuple(walker.notes), digest=digest,
        dynamic=tuple(walker.dynamic))
    try:
        _descriptions[func] = description
    except TypeError:
        pass  # not weak-referenceable: recomputed next time
    return description


def _unwrap(func: Any) -> Any:
    while True:
        if isinstance(func, (staticmethod, classmethod)):
            func = func.__func__
        elif isinstance(func, functools.partial):
            func = func.func
        elif hasattr(func, "__wrapped__") and not isinstance(func, type):
            func = func.__wrapped__
        else:
            return func


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def own_source_digest(obj: Any) -> tuple[str, str | None]:
    """The digest of a function's or class's own source, and a note when the source is unavailable."""
    try:
        return _source_digests[obj]
    except (KeyError, TypeError):
        pass
    note = None
    try:
        digest = source_digest(inspect.getsource(obj))
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        if code is not None:
            # No source (python -c, a script on stdin, exec'd code): key by what the code does,
            # its compiled form without file name or line numbers, which is tied to this Python
            # version, so such keys are not shared across versions.
            version = f"{sys.version_info[0]}.{sys.version_info[1]}"
            digest = hashlib.sha1(version.encode() + b"\0" + marshal.dumps(code_fingerprint(code))).hexdigest()
            note = (f"{qualified_name(obj)}: no source file to read (defined in python -c, stdin or exec?), "
                    f"so it is keyed by its compiled code: the same code gives the same key wherever it "
                    f"stands, but only on Python {version}; define it in a .py file to share keys across "
                    f"Python versions")
        elif isinstance(obj, type):
            # A class without source: by its bases and the compiled code and values of its body.
            version = f"{sys.version_info[0]}.{sys.version_info[1]}"
            digest = hashlib.sha1(version.encode() + b"\0" + marshal.dumps(_class_fingerprint(obj))).hexdigest()
            note = (f"{qualified_name(obj)}: no source file to read (defined in python -c, stdin or exec?), "
                    f"so the class is keyed by its methods' compiled code and its attributes' values, "
                    f"only on Python {version}")
        else:
            digest = hashlib.sha1(qualified_name(obj).encode()).hexdigest()
            note = f"{qualified_name(obj)}: source unavailable, hashed by name only"
    result = (digest, note)
    try:
        _source_digests[obj] = result
    except TypeError:
        pass
    return result


def code_fingerprint(code: types.CodeType) -> tuple:
    """What ``code`` does, for :mod:`marshal`: its bytecode, constants (nested code objects
    likewise), names and signature shape, without its file name, first line or line table."""
    consts = tuple(code_fingerprint(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return ("code", code.co_name, code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount,
            code.co_flags, code.co_code, consts, code.co_names, code.co_varnames, code.co_freevars,
            code.co_cellvars, getattr(code, "co_exceptiontable", b""))


def _class_fingerprint(klass: type) -> tuple:
    """What a class without source does, for :mod:`marshal`: its bases by name, and each attribute of its
    body by compiled code (functions, properties) or by typed hash (anything else)."""
    body = []
    for name, attr in sorted(vars(klass).items()):
        if name in ("__dict__", "__weakref__", "__module__", "__qualname__", "__doc__"):
            continue
        targets = [attr.fget, attr.fset, attr.fdel] if isinstance(attr, property) else [_unwrap(attr)]
        codes = [code_fingerprint(t.__code__) for t in targets if isinstance(t, types.FunctionType)]
        if codes:
            body.append((name, type(attr).__name__, tuple(codes)))
        else:
            try:
                body.append((name, hash_value(attr, name)))
            except TypeError:  # not hashable (UnhashableArgumentError is a TypeError): its type at least
                body.append((name, type(attr).__qualname__))
    return ("class", klass.__qualname__, tuple(qualified_name(b) for b in klass.__bases__), tuple(body))


# Calls that reach code by a name computed at run time: the walk cannot see what they reach.
_DYNAMIC_BUILTINS = {id(builtins.eval): "eval()", id(builtins.exec): "exec()", id(builtins.globals): "globals()",
                     id(builtins.__import__): "__import__()", id(importlib.import_module): "importlib.import_module()",
                     id(importlib.__import__): "importlib.__import__()"}
_DYNAMIC_ATTRIBUTES = {"importlib": ("import_module", "__import__"), "sys": ("modules",)}
_LOADS = ("LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF", "LOAD_CLASSDEREF")
_SKIPPED_OPS = frozenset({"CACHE", "PUSH_NULL", "PRECALL", "NOP", "EXTENDED_ARG", "KW_NAMES", "RESUME", "COPY_FREE_VARS"})


def _instructions(code: types.CodeType) -> list[tuple[dis.Instruction, int | None]]:
    """The meaningful instructions of ``code`` and nested code, each with its line number."""
    out: list[tuple[dis.Instruction, int | None]] = []
    line = None
    for ins in dis.get_instructions(code):
        starts = getattr(ins, "line_number", None) or ins.starts_line
        if isinstance(starts, int) and not isinstance(starts, bool):
            line = starts
        if ins.opname not in _SKIPPED_OPS:
            out.append((ins, line))
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            out.extend(_instructions(const))
    return out


class _Walker:
    def __init__(self) -> None:
        self.helpers: dict[str, str] = {}
        self.constants: dict[str, str] = {}
        self.closure: dict[str, str] = {}
        self.dependencies: dict[str, str] = {}
        self.stdlib: set[str] = set()
        self.ignored: dict[str, str] = {}
        self.notes: list[str] = []
        self.dynamic: list[str] = []
        self._seen: set[int] = set()
        self._seen_attributes: set[tuple[int, str]] = set()  # (id(module), name)
        self._keep: list[Any] = []  # keeps ids in _seen valid during the walk

    def _first_visit(self, obj: Any) -> bool:
        if id(obj) in self._seen:
            return False
        self._seen.add(id(obj))
        self._keep.append(obj)
        return True

    def function(self, func: Any, record: bool = True) -> str:
        """Walk a user function; returns its own source digest."""
        digest, note = own_source_digest(func)
        if not self._first_visit(func):
            return digest
        if note:
            self.notes.append(note)
        if record:
            self.helpers[qualified_name(func)] = digest
        code = getattr(func, "__code__", None)
        if code is None:
            return digest
        module_name = getattr(func, "__module__", None) or "__main__"
        names = _code_names(code)
        globals_ = getattr(func, "__globals__", {})
        for name in sorted(names):
            if name in globals_:
                self.value(globals_[name], f"{module_label(module_name)}.{name}", names)
        cells = getattr(func, "__closure__", None) or ()
        self.dynamic_lookups(func, code, globals_, dict(zip(code.co_freevars, cells, strict=True)))
        for var, cell in zip(code.co_freevars, cells, strict=True):
            try:
                content = cell.cell_contents
            except ValueError:  # an empty cell: a variable assigned after the function was made
                continue
            label = f"{qualified_name(func)}.<closure {var}>"
            if _is_code_like(content):
                self.value(content, label, names)
            else:
                try:
                    self.closure[label] = hash_value(content, label)
                except TypeError as exc:  # UnhashableArgumentError is a TypeError
                    self.ignored[label] = f"closure value not hashable: {exc}"
        return digest

    def dynamic_lookups(self, func: Any, code: types.CodeType, globals_: dict[str, Any],
                        cells: dict[str, Any]) -> None:
        """Record the lookups in ``code`` that the walk cannot follow; follow ``getattr(module, "name")``."""
        builtins_ = globals_.get("__builtins__", builtins)
        builtins_ = vars(builtins_) if isinstance(builtins_, types.ModuleType) else builtins_

        instructions = _instructions(code)
        local_modules = self.local_imports(func, instructions, _code_names(code))

        def resolve(ins: dis.Instruction) -> Any:
            if ins.opname in ("LOAD_FAST", "LOAD_FAST_CHECK") and ins.argval in local_modules:
                return local_modules[ins.argval]
            if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                name = ins.argval
                return globals_[name] if name in globals_ else builtins_.get(name, _UNRESOLVED)
            if ins.opname in ("LOAD_DEREF", "LOAD_CLASSDEREF") and ins.argval in cells:
                try:
                    return cells[ins.argval].cell_contents
                except ValueError:
                    return _UNRESOLVED
            return _UNRESOLVED

        found: list[str] = []
        for i, (ins, line) in enumerate(instructions):
            if ins.opname not in _LOADS and not (ins.opname.startswith("LOAD_FAST") and ins.argval in local_modules):
                continue
            obj = resolve(ins)
            if obj is _UNRESOLVED:
                continue
            following = [other for other, _ in instructions[i + 1:i + 3]]
            what = None
            if id(obj) in _DYNAMIC_BUILTINS:
                what = _DYNAMIC_BUILTINS[id(obj)]
            elif isinstance(obj, types.ModuleType):
                attrs = _DYNAMIC_ATTRIBUTES.get(obj.__name__, ())
                attribute = following[0].argval if following and following[0].opname in (
                    "LOAD_ATTR", "LOAD_METHOD") else None
                if attribute in attrs:
                    what = f"{obj.__name__}.{attribute}"
                elif attribute == "__dict__" and dependencies.classify_module(obj.__name__) == "user":
                    what = f"{ins.argval}.__dict__[...]"
            elif obj is builtins.getattr or obj is builtins.vars:
                target = resolve(following[0]) if following else _UNRESOLVED
                if isinstance(target, types.ModuleType) and dependencies.classify_module(target.__name__) == "user":
                    attr = following[1] if len(following) > 1 else None
                    if (obj is builtins.getattr and attr is not None and attr.opname == "LOAD_CONST"
                            and isinstance(attr.argval, str)):
                        # getattr(helpers, "smooth") names its target: follow it like helpers.smooth.
                        self.module(target, {attr.argval})
                    else:
                        what = f"{ins.argval}({following[0].argval}, ...)"
            if what is not None:
                where = f" line {line}" if line is not None else ""
                found.append(f"{qualified_name(func)}{where}: {what}")
        self.dynamic.extend(dict.fromkeys(found))

    def local_imports(self, func: Any, instructions: list[tuple[dis.Instruction, int | None]],
                      names: set[str]) -> dict[str, types.ModuleType]:
        """Walk the modules ``func`` imports in its body (``import helpers`` inside the function), as
        globals are walked: a library by its version, a user module for the names the code uses.
        Returns the local variables bound to modules (for :meth:`dynamic_lookups`)."""
        bound: dict[str, types.ModuleType] = {}
        for i, (ins, _) in enumerate(instructions):
            if ins.opname != "IMPORT_NAME" or not isinstance(ins.argval, str):
                continue
            level = instructions[i - 2][0].argval if i >= 2 else 0
            if level:  # a relative import: resolved against the function's package
                package = getattr(func, "__module__", "") or ""
                base = package.rsplit(".", level)[0] if "." in package else package
                name = f"{base}.{ins.argval}" if ins.argval else base
            else:
                name = ins.argval
            try:
                module = sys.modules.get(name) or importlib.import_module(name)
            except Exception as exc:  # importing runs the module's code: any error means "cannot"
                self.ignored[f"{qualified_name(func)}.<import {name}>"] = f"cannot be imported to be counted: {exc}"
                continue
            self.module(module, names)
            top = sys.modules.get(name.partition(".")[0])
            following = instructions[i + 1][0] if i + 1 < len(instructions) else None
            if following is not None and following.opname in ("STORE_FAST", "STORE_DEREF"):
                # "import a.b" binds a; "import a.b as c" (3.10) binds a.b through IMPORT_FROM instead.
                bound[following.argval] = top if top is not None and "." in name else module
            elif following is not None and following.opname == "IMPORT_FROM":
                target = instructions[i + 2][0] if i + 2 < len(instructions) else None
                value = getattr(module, following.argval, None)
                if isinstance(value, types.ModuleType) and target is not None and target.opname.startswith("STORE"):
                    bound[target.argval] = value
        return bound

    def owner_class(self, func: Any) -> None:
        """For a method, walk the class it is defined in (``self.helper()`` calls reach it)."""
        qualname = getattr(func, "__qualname__", "")
        if "." not in qualname or "<locals>" in qualname:
            return
        obj: Any = sys.modules.get(getattr(func, "__module__", "") or "")
        for part in qualname.split(".")[:-1]:
            obj = getattr(obj, part, None)
        if isinstance(obj, type):
            self.value(obj, qualified_name(obj), set())

    def cls(self, klass: type) -> None:
        """Walk a user class: its source counts, and the globals of its methods are walked."""
        if not self._first_visit(klass):
            return
        digest, note = own_source_digest(klass)
        if note:
            self.notes.append(note)
        self.helpers[qualified_name(klass)] = digest
        for base in klass.__bases__:
            self.value(base, qualified_name(base), set())
        for attr in vars(klass).values():
            targets = [attr.fget, attr.fset, attr.fdel] if isinstance(attr, property) else [_unwrap(attr)]
            for target in targets:
                if isinstance(target, types.FunctionType):
                    # The method's source is inside the class's: walk only what it reaches.
                    self._seen.discard(id(target))
                    self.function(target, record=False)

    def value(self, value: Any, label: str, names: set[str]) -> None:
        """Count one global (or closure) value by its kind."""
        if isinstance(value, functools.partial):
            # partial(scale, factor=3): the function by its code, the bound arguments by value.
            self.value(value.func, label, names)
            self.data(f"{label}.<partial arguments>", (value.args, value.keywords))
            return
        value = _unwrap(value) if callable(value) and not isinstance(value, type) else value
        if isinstance(value, types.ModuleType):
            self.module(value, names)
            return
        if _is_constant(value):
            self.data(label, value)
            return
        if type(value) in _CONSTANT_CONTAINERS and _is_table(value):
            # A dispatch table ({"fast": fast_path, ...}): each function or class is walked, and
            # which name maps to which, with the constants beside them, counts by value.
            self.data(f"{label}.<table>", _table_shape(value))
            for item in _table_items(value):
                if not _is_constant(item):
                    self.value(item, label, names)
            return
        module = dependencies.module_of(value)
        if module is None:
            self.ignored[label] = type(value).__qualname__
            return
        kind = dependencies.classify_module(_real_module(module))
        if kind != "user":
            self.library(module)
        elif isinstance(value, type):
            self.cls(value)
        elif isinstance(value, types.FunctionType):
            self.function(value)
        else:
            # An instance of a user class: its class's code counts; its state counts by value
            # for a dataclass or namedtuple (a settings record), and not otherwise.
            tp = type(value)
            if dataclasses.is_dataclass(tp) or (issubclass(tp, tuple) and hasattr(tp, "_fields")):
                self.data(label, value, strict=True)
            else:
                self.ignored[label] = f"instance of {qualified_name(tp)} (state not hashed)"
            if isinstance(tp, type) and not isinstance(value, types.BuiltinFunctionType):
                self.value(tp, qualified_name(tp), names)

    def data(self, label: str, value: Any, strict: bool = False) -> None:
        """Count ``value`` by its typed hash, under ``label`` (listed as ignored if it cannot be hashed)."""
        try:
            self.constants[label] = hash_value(value, label, strict=strict)
        except TypeError as exc:  # UnhashableArgumentError is a TypeError
            self.ignored[label] = f"not hashable: {exc}"

    def module(self, module: types.ModuleType, names: set[str]) -> None:
        if dependencies.classify_module(module.__name__) != "user":
            self.library(module.__name__)
            return
        self._keep.append(module)
        attrs = vars(module)
        for name in sorted(names):
            # Once per attribute, not per module: two functions may use different attributes of it.
            if name in attrs and (id(module), name) not in self._seen_attributes:
                self._seen_attributes.add((id(module), name))
                self.value(attrs[name], f"{module_label(module.__name__)}.{name}", names)

    def library(self, module: str) -> None:
        module = _real_module(module)
        if dependencies.classify_module(module) == "stdlib":
            self.stdlib.add(module.partition(".")[0])
            return
        for dist, version in dependencies.module_versions(module):
            self.dependencies[dist] = version


_UNRESOLVED = object()


def _real_module(name: str) -> str:
    return "__main__" if name == "__mp_main__" and "__mp_main__" not in sys.modules else name


def _is_code_like(value: Any) -> bool:
    return isinstance(value, (types.FunctionType, types.ModuleType, type)) or hasattr(value, "__wrapped__")


def _table_items(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [v for item in value.items() for v in item]
    return list(value)


def _is_table(value: Any) -> bool:
    """A small container of constants, functions and classes, holding at least one function or class."""
    items = _table_items(value)
    return (len(items) <= _MAX_TABLE_ITEMS and any(callable(v) for v in items)
            and all(callable(v) or _is_constant(v) for v in items))


def _table_shape(value: Any) -> Any:
    """``value`` with each function or class replaced by its qualified name: what a table maps to what."""
    if isinstance(value, dict):
        return {_table_shape(k): _table_shape(v) for k, v in value.items()}
    if type(value) in (list, tuple, set, frozenset):
        return type(value)(_table_shape(v) for v in value)
    if callable(value):
        return ("<code>", qualified_name(_unwrap(value)))
    return value


def _is_constant(value: Any, budget: list[int] | None = None) -> bool:
    """True for literal-like values: scalars, enums, small containers of those, small arrays."""
    if budget is None:
        budget = [_MAX_CONSTANT_ITEMS]
    budget[0] -= 1
    if budget[0] < 0:
        return False
    if type(value) in _CONSTANT_TYPES or isinstance(value, enum.Enum):
        return True
    if type(value) in _CONSTANT_CONTAINERS:
        items = list(value.items()) if isinstance(value, dict) else value
        return all(_is_constant(v, budget) for item in items
                   for v in (item if isinstance(value, dict) else (item,)))
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, (numpy.ndarray, numpy.generic)):
        return not value.dtype.hasobject and value.nbytes <= _MAX_CONSTANT_ARRAY_BYTES
    return False
