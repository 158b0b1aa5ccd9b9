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

Data of common types (frames, dates, paths to files, instances of user classes by
state and class code) counts by value; a value that cannot be hashed is listed as
ignored in :meth:`CachedFunction.explain`. Lookups the walk cannot follow
(``getattr(module, name)``, ``importlib.import_module``, ``globals()[...]``,
``sys.modules[...]``, ``eval``/``exec``) are listed as ``dynamic`` (with a
warning from the decorator); ``getattr(module, "literal")`` is followed.

A description holds a :class:`Watch` of what the walk read: each global (and
class attribute, closure cell) by identity, each function by its ``__code__``,
each mutable value (a dict, list, set, array, frame, a Path's file, an instance)
by its contents. A cached function checks it at every call and walks again when
any of it changed: a helper redefined in a notebook cell, replaced, reloaded or
patched by ``%autoreload``, a constant rebound, a dict of options mutated in
place. A mutable global too large to check at every call is not counted, and
named (``large_mutable_globals``) and warned about.
"""

from __future__ import annotations

import builtins
import collections
import dataclasses
import datetime
import dis
import enum
import functools
import hashlib
import importlib
import inspect
import linecache
import marshal
import operator
import os
import pickle
import sys
import textwrap
import threading
import types
import weakref
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any

from ..hashing import canonical_json
from . import dependencies
from .arguments import hash_value
from .same_objects import Held, holds_same, list_addresses
from .source import TOKEN_FORMAT, source_digest

_CONSTANT_TYPES = (type(None), bool, int, float, complex, str, bytes)
_CONSTANT_CONTAINERS = (tuple, frozenset, list, set, dict)
# Module-level containers bigger than this are data, not settings: ignored (listed in explain).
_MAX_CONSTANT_ITEMS = 10_000
_MAX_CONSTANT_ARRAY_BYTES = 1 << 20
_MAX_TABLE_ITEMS = 1_000
# A mutable global is checked at every call (compared with a copy, or hashed again): up to this many
# items, or bytes for an array or a frame; a larger one is not counted (named, and warned about).
_MAX_WATCHED_ITEMS = _MAX_CONSTANT_ITEMS
_MAX_WATCHED_BYTES = _MAX_CONSTANT_ARRAY_BYTES
_CODE = operator.attrgetter("__code__")
_CONTENTS = operator.attrgetter("cell_contents")


class Watch:
    """What a walk read, as cheap signals checked at every call: :meth:`fresh` is False once any
    global, class attribute or closure cell read is rebound, any function's ``__code__`` replaced,
    or any mutable value read changed its contents."""

    def __init__(self) -> None:
        self._reads: dict[int, tuple[Any, list[str], list[Any], Any]] = {}
        self._functions: list[Any] = []
        self._codes: list[Any] = []
        self._cells: list[Any] = []
        self._contents: list[Any] = []
        self._checks: list[Callable[[], bool]] = []
        self._held: list[Held] = []
        self._sizes: list[tuple[Any, int]] = []
        self._frozen: tuple = ()
        self._at_once: tuple = ()

    def read(self, mapping: Any, name: str, value: Any, owner: Any = None) -> None:
        """``mapping[name]`` (a module's or function's globals, a class's ``__dict__``) was ``value``."""
        owner = mapping if owner is None else owner
        entry = self._reads.get(id(owner))
        if entry is None:
            entry = self._reads[id(owner)] = (mapping, [], [], owner)
        if name not in entry[1]:
            entry[1].append(name)
            entry[2].append(value)

    def function(self, func: Any) -> None:
        """``func.__code__`` counted (``%autoreload`` replaces it in place)."""
        code = getattr(func, "__code__", None)
        if code is not None:
            self._functions.append(func)
            self._codes.append(code)

    def cell(self, cell: Any, value: Any) -> None:
        self._cells.append(cell)
        self._contents.append(value)

    def check(self, check: Callable[[], bool]) -> None:
        """``check()`` is True while a mutable value has the contents it was counted with."""
        self._checks.append(check)
        if isinstance(check, Held):
            self._held.append(check)

    def size(self, sized: Any, length: int) -> None:
        """``len(sized)`` was ``length`` (a class gaining or losing an attribute)."""
        self._sizes.append((sized, length))

    def freeze(self) -> Watch:
        # Each mapping's names are read in one call (a single name twice: itemgetter gives a tuple
        # only for two names or more), and every comparison is of identity: ``THRESHOLD = 1.0``
        # after ``1`` is a change.
        reads = tuple((mapping, operator.itemgetter(*(names * 2 if len(names) == 1 else names)),
                       tuple(values * 2 if len(values) == 1 else values), owner)
                      for mapping, names, values, owner in self._reads.values())
        functions, codes, cells, contents = (tuple(self._functions), tuple(self._codes), tuple(self._cells),
                                             tuple(self._contents))
        checks = tuple(check.check if isinstance(check, Held) else check for check in self._checks)
        self._frozen = (reads, functions, codes, cells, contents, checks, tuple(self._sizes))
        # All at once (see fresh): what each read gave, each __code__, each cell's contents and the
        # items of each container of settings, in one list, compared by identity with what they were.
        expected = [value for _, _, values, _ in reads for value in values]
        expected += [*codes, *contents]
        sources: list[Any] = []
        sized = [container for container, _ in self._sizes]
        lengths = [length for _, length in self._sizes]
        for held in self._held:
            for container, objects in held.parts:
                is_dict = type(container) is dict
                sources += (container, container.values()) if is_dict else (container,)
                expected += objects
                sized.append(container)
                lengths.append(len(objects) // 2 if is_dict else len(objects))
        addresses = list_addresses(len(expected))
        known = addresses(expected) if addresses is not None else b""
        others = tuple(check for check in self._checks if not isinstance(check, Held))
        # (``expected`` is kept: while its objects live, no other object can have one of their addresses.)
        self._at_once = (tuple((mapping, getter) for mapping, getter, _, _ in reads), functions, cells,
                         tuple(sources), tuple(sized), lengths, addresses, known, others, tuple(expected))
        return self

    def fresh(self) -> bool:
        """True while nothing the walk read has changed.

        Everything compared by identity is gathered into one list of this call's own, whose item
        addresses are read in one go and compared with those of the objects read then (none of
        them moves while :meth:`freeze` keeps them). When anything differs, or for a few objects,
        each signal is checked on its own (:meth:`changed`): a container holding, put back, an
        equal item of the same type is then told from a change by its values."""
        groups, functions, cells, sources, sized, lengths, addresses, known, others, _ = self._at_once
        if addresses is None:
            return not self.changed()
        items: list[Any] = []
        extend = items.extend
        try:
            for mapping, getter in groups:
                extend(getter(mapping))
            extend(map(_CODE, functions))
            if cells:
                extend(map(_CONTENTS, cells))
            any(map(extend, sources))  # (extend gives None: each source is gathered)
            if addresses(items) != known or (sized and list(map(len, sized)) != lengths):
                return not self.changed()
            for check in others:
                if not check():
                    return False
        except (KeyError, ValueError, AttributeError, TypeError, RuntimeError):  # a name deleted, a cell emptied
            return not self.changed()
        return True

    def changed(self) -> bool:
        """True once anything the walk read has changed, each signal checked on its own."""
        reads, functions, codes, cells, contents, checks, sizes = self._frozen
        try:
            for mapping, read, values, _ in reads:
                if not all(map(operator.is_, read(mapping), values)):
                    return True
            if not all(map(operator.is_, map(_CODE, functions), codes)):
                return True
            if cells and not all(map(operator.is_, map(_CONTENTS, cells), contents)):
                return True
            for sized, length in sizes:
                if len(sized) != length:
                    return True
            for check in checks:
                if not check():
                    return True
        except (KeyError, ValueError, AttributeError, TypeError):  # a name deleted, a cell emptied
            return True
        return False


_ALWAYS_FRESH = Watch().freeze()
# How explain's not_counted['globals'] begins for a global counted by its text that stands for files
# (warned about once, like one that cannot be hashed).
NAMED_PATHS = ("the str ", "a Path to the directory ")


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
    large: dict[str, str] = dataclasses.field(default_factory=dict)
    written: dict[str, str] = dataclasses.field(default_factory=dict)
    state: tuple[str, ...] = ()  # global state read that cannot be counted (random state, clocks, settings)
    watch: Watch = dataclasses.field(default=_ALWAYS_FRESH, compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """Everything, for ``explain``: what enters the digest and what was left out."""
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), dict) else v)
                for f in dataclasses.fields(self) if f.name != "watch"}


_descriptions: weakref.WeakKeyDictionary[Any, CodeDescription] = weakref.WeakKeyDictionary()
_source_digests: weakref.WeakKeyDictionary[Any, tuple[tuple, str, str | None]] = weakref.WeakKeyDictionary()


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
    """The code description of ``func`` as its code and the globals it reads are now (kept while
    its :class:`Watch` says nothing changed)."""
    func = _unwrap(func)
    try:
        known = _descriptions[func]
        if known.watch.fresh():
            return known
    except (KeyError, TypeError):
        pass
    walker = _Walker()
    name = qualified_name(func)
    own = walker.function(func, record=False, defaults=False)
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
        dynamic=tuple(walker.dynamic), large=dict(sorted(walker.large.items())),
        written=dict(sorted(walker.written.items())), state=tuple(dict.fromkeys(walker.state)),
        watch=walker.watch.freeze())
    try:
        _descriptions[func] = description
    except TypeError:
        pass  # not weak-referenceable: recomputed next time
    return description


_class_digests: weakref.WeakKeyDictionary[type, tuple[str, Watch]] = weakref.WeakKeyDictionary()
_describing = threading.local()


def class_digest(klass: type) -> str:
    """The digest of a user class's code as it is now: its source, its methods' helpers and
    constants, its base classes in user code (what an instance of it counts by, beside its state)."""
    try:
        digest, watch = _class_digests[klass]
        if watch.fresh():
            return digest
    except (KeyError, TypeError):
        pass
    busy = getattr(_describing, "classes", None)
    if busy is None:
        busy = _describing.classes = set()
    if id(klass) in busy:  # an instance of the class among its own globals: counted by the outer walk
        return hashlib.sha1(b"class being described\0" + qualified_name(klass).encode()).hexdigest()
    busy.add(id(klass))
    try:
        walker = _Walker()
        walker.value(klass, qualified_name(klass), set())
        parts = {"format": TOKEN_FORMAT, "class": qualified_name(klass), "helpers": walker.helpers,
                 "constants": walker.constants, "closure": walker.closure, "dependencies": walker.dependencies}
        digest = hashlib.sha1(canonical_json(parts).encode("utf-8")).hexdigest()
        watch = walker.watch.freeze()
    finally:
        busy.discard(id(klass))
    try:
        _class_digests[klass] = (digest, watch)
    except TypeError:
        pass
    return digest


def _unwrap(func: Any) -> Any:
    while True:
        if isinstance(func, (staticmethod, classmethod)):
            func = func.__func__
        elif isinstance(func, functools.partial):
            func = func.func
        elif not isinstance(func, type) and _wrapped(func) is not None:
            func = func.__wrapped__
        else:
            return func


def _wrapped(func: Any) -> Any:
    """``func.__wrapped__``, or None (also when a ``__getattr__`` of the user's raises)."""
    try:
        return getattr(func, "__wrapped__", None)
    except Exception:  # a __getattr__ raising something else than AttributeError
        return None


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def own_source_digest(obj: Any) -> tuple[str, str | None]:
    """The digest of a function's or class's own source, and a note when the source is unavailable."""
    state = _code_state(obj)
    try:
        known_state, digest, note = _source_digests[obj]
        if len(known_state) == len(state) and all(a is b for a, b in zip(known_state, state, strict=True)):
            return digest, note
    except (KeyError, TypeError):
        pass
    note = None
    stale = _stale_source(obj)
    try:
        if stale is not None:
            raise OSError(stale)
        digest = source_digest(_class_source(obj) if isinstance(obj, type) else inspect.getsource(obj))
        if isinstance(obj, type) and _ambiguous_class(obj):
            # Which of the file's definitions made the class is unknown (an enum redefined further
            # down): by its body's compiled code and values too, only on this Python version.
            version = f"{sys.version_info[0]}.{sys.version_info[1]}"
            digest = hashlib.sha1(f"{digest}\0{version}\0".encode() + _stable_bytes(_class_fingerprint(obj))
                                  ).hexdigest()
    except (OSError, TypeError):
        code = None if isinstance(obj, type) else getattr(obj, "__code__", None)  # (a metaclass's __getattr__)
        if isinstance(code, types.CodeType):
            # No source (python -c, a script on stdin, exec'd code): key by what the code does,
            # its compiled form without file name or line numbers, which is tied to this Python
            # version, so such keys are not shared across versions.
            version = f"{sys.version_info[0]}.{sys.version_info[1]}"
            digest = hashlib.sha1(version.encode() + b"\0" + _stable_bytes(code_fingerprint(code))).hexdigest()
            note = (f"{qualified_name(obj)}: no source file to read (defined in python -c, stdin or exec?), "
                    f"so it is keyed by its compiled code: the same code gives the same key wherever it "
                    f"stands, but only on Python {version}; define it in a .py file to share keys across "
                    f"Python versions")
            if stale is not None:
                note = f"{qualified_name(obj)}: {stale}, so it is keyed by its compiled code (Python {version})"
        elif isinstance(obj, type):
            # A class without source: by its bases and the compiled code and values of its body.
            version = f"{sys.version_info[0]}.{sys.version_info[1]}"
            digest = hashlib.sha1(version.encode() + b"\0" + _stable_bytes(_class_fingerprint(obj))).hexdigest()
            note = (f"{qualified_name(obj)}: no source file to read (defined in python -c, stdin or exec?), "
                    f"so the class is keyed by its methods' compiled code and its attributes' values, "
                    f"only on Python {version}")
            if stale is not None:
                note = (f"{qualified_name(obj)}: {stale}, so the class is keyed by its methods' compiled code "
                        f"and its attributes' values (Python {version})")
        else:
            digest = hashlib.sha1(qualified_name(obj).encode()).hexdigest()
            note = f"{qualified_name(obj)}: source unavailable, hashed by name only"
    try:
        _source_digests[obj] = (state, digest, note)
    except TypeError:
        pass
    return digest, note


def _class_source(klass: type) -> str:
    """The source of ``klass``: of the definition its methods come from when the file defines
    the class more than once (a class redefined further down; inspect finds the first)."""
    lines, start = inspect.getsourcelines(klass)
    inside = f"{klass.__qualname__}."
    firsts = [f.__code__.co_firstlineno for attr in vars(klass).values()
              if isinstance(f := _unwrap(attr), types.FunctionType) and f.__qualname__.startswith(inside)
              and f.__code__.co_filename not in ("<string>",)]
    if not firsts or start <= min(firsts) < start + len(lines):
        return "".join(lines)
    import ast

    file = inspect.getsourcefile(klass)
    all_lines = linecache.getlines(file) if file else []
    line = min(firsts)
    for node in ast.walk(ast.parse("".join(all_lines))):
        if isinstance(node, ast.ClassDef) and node.name == klass.__name__ and node.end_lineno is not None:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            if first <= line <= node.end_lineno:
                return "".join(all_lines[first - 1:node.end_lineno])
    return "".join(lines)


# Per source file: (modification time and size, the (name, first line, fingerprint digest) of each code
# object compiling it gives, or None when it does not compile).
_file_codes: dict[str, tuple[tuple[int, int], set[tuple[str, int, str]] | None]] = {}
_file_codes_lock = threading.Lock()


def _stable_bytes(fingerprint: Any) -> bytes:
    """``fingerprint`` (tuples of plain values) as bytes that depend on its value only: marshal's
    format 2, without the back-references of later formats, whose use depends on which equal
    objects happen to be shared (interned) in this process."""
    return marshal.dumps(fingerprint, 2)


def _code_id(code: types.CodeType) -> tuple[str, int, str]:
    name = getattr(code, "co_qualname", code.co_name)
    return name, code.co_firstlineno, hashlib.sha1(_stable_bytes(code_fingerprint(code))).hexdigest()


def _file_code_ids(file: str) -> set[tuple[str, int, str]] | None:
    """What compiling ``file`` as it is now on disk gives (None: no such file, or it does not compile)."""
    try:
        st = os.stat(file)
    except (OSError, ValueError):
        return None
    stamp = (st.st_mtime_ns, st.st_size)
    known = _file_codes.get(file)
    if known is not None and known[0] == stamp:
        return known[1]
    ids: set[tuple[str, int, str]] | None = set()
    try:
        with open(file, "rb") as handle:
            stack = [compile(handle.read(), file, "exec", dont_inherit=True)]
    except (OSError, SyntaxError, ValueError):
        ids, stack = None, []
    while stack:
        code = stack.pop()
        ids.add(_code_id(code))  # type: ignore[union-attr]
        stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    with _file_codes_lock:
        _file_codes[file] = (stamp, ids)
    return ids


def _stale_source(obj: Any) -> str | None:
    """Why the source file of a function (or of a class's methods) no longer holds the code that runs
    (the file edited since it was loaded, without a reload), or None. A key from that source would
    be the key of code that did not compute the result."""
    if isinstance(obj, type):
        inside = f"{obj.__qualname__}."
        functions = [f for attr in vars(obj).values() for f in _descriptor_targets(attr)
                     if isinstance(f, types.FunctionType) and f.__qualname__.startswith(inside)]
    else:
        functions = [obj] if isinstance(getattr(obj, "__code__", None), types.CodeType) else []
    for func in functions:
        code = func.__code__
        file = code.co_filename
        if not file or file.startswith("<"):
            continue
        ids = _file_code_ids(file)
        if ids is not None and _code_id(code) not in ids:
            return f"its file {os.path.basename(file)} was changed since it was loaded (edited without a reload?)"
    return None


def _ambiguous_class(klass: type) -> bool:
    """True if ``klass``'s file defines a class of its name more than once and nothing tells which
    definition it is (no method of its own to place it; Python 3.13's ``__firstlineno__`` does)."""
    if "__firstlineno__" in vars(klass):
        return False
    inside = f"{klass.__qualname__}."
    if any(isinstance(f := _unwrap(attr), types.FunctionType) and f.__qualname__.startswith(inside)
           and f.__code__.co_filename != "<string>" for attr in vars(klass).values()):
        return False  # _class_source finds the definition its methods come from
    try:
        file = inspect.getsourcefile(klass)
    except TypeError:
        return False
    text = "".join(linecache.getlines(file)) if file else ""
    if text.count(f"class {klass.__name__}") < 2:
        return False
    import ast

    try:
        tree = ast.parse(text)
    except SyntaxError:
        return False
    return sum(isinstance(n, ast.ClassDef) and n.name == klass.__name__ for n in ast.walk(tree)) > 1


def _code_state(obj: Any) -> tuple:
    """What a source digest is kept for: a function's ``__code__``, a class's attributes and their
    code (``%autoreload`` swaps code in place, an assignment replaces a method)."""
    if isinstance(obj, type):
        values = tuple(vars(obj).values())
        return values + tuple(getattr(_unwrap(v), "__code__", None) for v in values)
    code = getattr(obj, "__code__", None)
    return (code if isinstance(code, types.CodeType) else None,)


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
        self.large: dict[str, str] = {}  # mutable globals too large to check at every call
        self.written: dict[str, str] = {}  # containers the code only adds to (a log of calls)
        self.state: list[str] = []  # global state read that cannot be counted (named, warned about)
        self._absent: dict[int, set[str]] = {}  # per globals dict: the builtin names it must not shadow
        self.watch = Watch()
        self._seen: set[int] = set()
        self._seen_attributes: set[tuple[int, str]] = set()  # (id(module), name)
        self._keep: list[Any] = []  # keeps ids in _seen valid during the walk

    def _first_visit(self, obj: Any) -> bool:
        if id(obj) in self._seen:
            return False
        self._seen.add(id(obj))
        self._keep.append(obj)
        return True

    def function(self, func: Any, record: bool = True, defaults: bool = True) -> str:
        """Walk a user function; returns its own source digest. ``defaults``: count its default
        values (not for the cached function itself, whose defaults are bound as arguments)."""
        digest, note = own_source_digest(func)
        if not self._first_visit(func):
            return digest
        if note:
            self.notes.append(note)
        if record:
            _put(self.helpers, qualified_name(func), digest)
        code = getattr(func, "__code__", None)
        if code is None:
            return digest
        self.watch.function(func)
        module_name = getattr(func, "__module__", None) or "__main__"
        names = _code_names(code)
        if defaults:
            self.defaults(func, names)
        globals_ = getattr(func, "__globals__", {})
        written = _written_only(code)
        history = _ipython_history(globals_)
        for name in sorted(names):
            if name in globals_:
                value = globals_[name]
                self.watch.read(globals_, name, value)
                label = f"{module_label(module_name)}.{name}"
                if history and _is_history_name(name):
                    self.state.append(f"{label}: IPython's input/output history (it changes with every cell "
                                      f"run): not counted; pass what it holds as an argument")
                    continue
                if name in written and not _is_code_like(value):
                    self.written[label] = _WRITTEN_NOTE
                    continue
                self.value(value, label, names)
        self.builtin_names(globals_, code, names)
        cells = getattr(func, "__closure__", None) or ()
        self.dynamic_lookups(func, code, globals_, dict(zip(code.co_freevars, cells, strict=True)))
        for var, cell in zip(code.co_freevars, cells, strict=True):
            try:
                content = cell.cell_contents
            except ValueError:  # an empty cell: a variable assigned after the function was made
                continue
            self.watch.cell(cell, content)
            label = f"{qualified_name(func)}.<closure {var}>"
            if _global_state(content) is not None or _bound_self(content) is not None:
                self.value(content, label, names)
                continue
            if var in written and not _is_code_like(content):
                self.written[label] = _WRITTEN_NOTE
                continue
            if _is_code_like(content):
                self.value(content, label, names)
            else:
                try:
                    _put(self.closure, label, digest_ := hash_value(content, label))
                except TypeError as exc:  # UnhashableArgumentError is a TypeError
                    self.ignored[label] = f"closure value not hashable: {exc}"
                else:
                    if not _immutable(content):
                        self.watch.check(_content_check(content, digest_, label, False))
        return digest

    def builtin_names(self, globals_: dict[str, Any], code: types.CodeType, names: set[str]) -> None:
        """The builtins the code reads by bare name (``len``, a name set on ``builtins``): each by
        identity (``builtins.abs = other``), one not Python's own by value or code, and a module global
        set later of the same name (``len = my_len``), which shadows it, walks again."""
        read = [name for name in _global_loads(code) if name not in globals_]
        if not read:
            return
        builtins_ = globals_.get("__builtins__", builtins)
        builtins_ = vars(builtins_) if isinstance(builtins_, types.ModuleType) else builtins_
        if not isinstance(builtins_, dict):
            return
        read = [name for name in read if name in builtins_]
        if not read:
            return
        shadowed = self._absent.get(id(globals_))
        if shadowed is None:  # one check per module, however many of its functions read builtins
            shadowed = self._absent[id(globals_)] = set()
            self._keep.append(globals_)
            keys = globals_.keys()
            self.watch.check(lambda: keys.isdisjoint(shadowed))
        shadowed.update(read)
        for name in read:
            value = builtins_[name]
            self.watch.read(builtins_, name, value)
            if value is _ORIGINAL_BUILTINS.get(name, _UNRESOLVED) or (id(builtins_), name) in self._seen_attributes:
                continue
            self._seen_attributes.add((id(builtins_), name))
            module = dependencies.module_of(value)
            if (_is_constant(value) or _is_data(value) or module is None
                    or dependencies.classify_module(_real_module(module)) == "user"):
                self.value(value, f"builtins.{name}", names)
            else:  # a library's object set on builtins (IPython's display, get_ipython): by its version
                self.library(module)

    def defaults(self, func: Any, names: set[str]) -> None:
        """Count a helper's default values: its source shows only their expressions (``k=K``), and
        they can be rebound (``f.__defaults__ = ...``) or mutated in place. A default equal to the
        literal its source writes is counted by the source (watched if mutable); any other by value."""
        positional = getattr(func, "__defaults__", None) or ()
        keywords = getattr(func, "__kwdefaults__", None) or {}
        if not positional and not keywords:
            return
        code = func.__code__
        params = code.co_varnames[:code.co_argcount]
        named = dict(zip(params[len(params) - len(positional):], positional, strict=True))
        named.update(keywords)
        literals = _literal_defaults(func)
        for name, value in named.items():
            label = f"{qualified_name(func)}.<default {name}>"
            if name in literals and _same_value(literals[name], value, label):
                if not _immutable(value):  # the literal mutated in place: walked again
                    self.watch.check(_content_check(value, hash_value(value, label), label, False))
            else:
                self.value(value, label, names)
        positional_now, keywords_now = func.__defaults__, func.__kwdefaults__
        self.watch.check(lambda: func.__defaults__ is positional_now and func.__kwdefaults__ is keywords_now)

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
            chain = _attribute_chain(obj, [other for other, _ in instructions[i + 1:i + 4]])
            for j in range(1, len(chain)):  # a library module's data read by attribute (sys.argv)
                if isinstance(chain[j - 1], types.ModuleType) and not isinstance(chain[j], types.ModuleType):
                    self.library_data(chain[j - 1], instructions[i + j][0].argval)
            after = instructions[i + len(chain)][0] if i + len(chain) < len(instructions) else None
            unseeded = _unseeded(chain[-1], after)  # what the chain reaches, called with no argument
            if unseeded is not None:
                where = f" line {line}" if line is not None else ""
                self.state.append(f"{qualified_name(func)}{where}: {unseeded}")
            if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME") and ins.argval in globals_:
                chain = chain[1:]  # the global itself is named by value()
            for reached in chain:
                state = _global_state(reached)
                if state is not None:
                    where = f" line {line}" if line is not None else ""
                    self.state.append(f"{qualified_name(func)}{where}: {state}")
                    break
            variable = _environment_variable(obj, [other for other, _ in instructions[i + 1:i + 5]], resolve)
            following = [other for other, _ in instructions[i + 1:i + 3]]
            what = None
            if variable == _COMPUTED_VARIABLE:
                what = "os.environ read by a name computed at the call, or as a whole"
            elif variable is not None:
                self.environment(variable)
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
        _put(self.helpers, qualified_name(klass), digest)
        for base in (*klass.__bases__, type(klass)):  # its metaclass too (its __call__, __getattr__)
            module = dependencies.module_of(base)
            if module is not None and dependencies.classify_module(_real_module(module)) != "user":
                self.library(module)  # a library's base class or metaclass: by its version
            elif base is not klass:
                self.value(base, qualified_name(base), set())
        attributes = klass.__dict__
        for name, attr in attributes.items():  # a method replaced, added or removed counts
            self.watch.read(attributes, name, attr, owner=klass)
        self.watch.size(attributes, len(attributes))
        inside = f"{klass.__qualname__}."
        if not issubclass(klass, enum.Enum):
            # Class-level data (SCALE = 10 in the body) by value: set later (Scaler.SCALE = 20), the
            # source does not show it.
            for name, attr in attributes.items():
                if name.startswith(("__", "_abc_")):
                    continue
                if _is_constant(attr) or _is_data(attr):
                    self.data(f"{qualified_name(klass)}.{name}", attr)
                elif not hasattr(type(attr), "__get__"):
                    # Not a method nor a descriptor: a nested class, an instance, a standard-library
                    # object, a partial, each by what it is (Outer.Inner.K = 20 counts).
                    self.value(attr, f"{qualified_name(klass)}.{name}", set())
        for attr in vars(klass).values():
            for target in _descriptor_targets(attr):
                if isinstance(target, types.FunctionType):
                    # A method's source is inside the class's: walk only what it reaches. One set on
                    # the class from elsewhere (Scaler.factor = other) counts by its own source.
                    self._seen.discard(id(target))
                    self.function(target, record=not target.__qualname__.startswith(inside))

    def value(self, value: Any, label: str, names: set[str]) -> None:
        """Count one global (or closure) value by its kind."""
        state = _global_state(value)
        if state is not None:
            self.state.append(f"{label}: {state}")
            return
        owner = _bound_self(value)
        if owner is not None:
            self.bound_method(value, owner, label, names)
            return
        if isinstance(value, weakref.ref):
            # By its referent, and a referent gone or another one (a WeakMethod's too) walks again.
            referent = value()
            self.value(referent, f"{label}.<referent>", names)
            self.watch.check(lambda: value() is referent)
            return
        if isinstance(value, (weakref.WeakValueDictionary, weakref.WeakKeyDictionary, weakref.WeakSet)):
            # By what it holds now; an item added, removed, gone or replaced walks again.
            items = dict(value.items()) if not isinstance(value, weakref.WeakSet) else list(value)
            self.value(items, f"{label}.<items>", names)
            held = _weak_items(value)
            self.watch.check(lambda: _weak_items(value) == held)
            return
        if isinstance(value, weakref.ProxyTypes):
            # The referent cannot be reached from a proxy, only seen through it: named, not counted.
            self.ignored[label] = ("not hashable: a weakref.proxy, whose referent pairio cannot reach to count it; "
                                   "read the object itself (or a weakref.ref to it)")
            return
        if isinstance(value, functools.partial):
            # partial(scale, factor=3): the function by its code, the bound arguments by value.
            self.value(value.func, label, names)
            self.data(f"{label}.<partial arguments>", (value.args, value.keywords))
            return
        registry = getattr(value, "registry", None) if isinstance(value, types.FunctionType) else None
        if isinstance(registry, types.MappingProxyType) and hasattr(value, "dispatch"):
            # A functools.singledispatch function: each implementation registered on it counts, and
            # one registered later (a cell run again) walks it again.
            snapshot = dict(registry)
            self.watch.check(lambda: dict(registry) == snapshot)
            for implementation in snapshot.values():
                self.value(implementation, f"{label}.<registered>", names)
        value = _unwrap(value) if callable(value) and not isinstance(value, type) else value
        if isinstance(value, types.ModuleType):
            self.module(value, names)
            return
        if _is_constant(value):
            self.data(label, value)
            if type(value) is str:
                self.names_path(label, value)
            return
        if type(value) in _CONSTANT_CONTAINERS and _is_table(value):
            # A dispatch table ({"fast": fast_path, ...}): each function or class is walked, and
            # which name maps to which, with the constants beside them, counts by value.
            self.data(f"{label}.<table>", _table_shape(value))
            if type(value) in (list, set, dict):  # changed in place: walked again
                snapshot = _snapshot(value)
                self.watch.check(holds_same(value, lambda: _same(value, snapshot)))
            for item in _table_items(value):
                if not _is_constant(item):
                    self.value(item, label, names)
            return
        if _is_data(value):
            # Data of a common type (a large container, an array, a frame, a date, a Path to a file):
            # by value, checked at every call if it can change, unless too large for that.
            large = None if _immutable(value) else _too_large(value)
            if large is not None:
                self.large[label] = (f"{large}: too large to check at every call, so not counted; pass it "
                                     f"as an argument (or list what it holds in version=)")
            else:
                self.data(label, value)
                if isinstance(value, Path):
                    self.names_path(label, value)
            return
        module = dependencies.module_of(value)
        if module is None:
            self.ignored[label] = type(value).__qualname__
            return
        kind = dependencies.classify_module(_real_module(module))
        if kind != "user" and _is_library_value(value):
            # An object of a standard-library or library type (an OrderedDict, a deque, a Decimal, a
            # compiled pattern, a numpy dtype or random Generator, a sparse matrix): data, not code,
            # so by value beside its library's version, checked at every call if it can change.
            self.library_value(label, value, module)
            self.library(module)
            self.container_extras(label, value, names)
            if module == "argparse":  # a parser's parse_args() reads sys.argv
                self.script_arguments()
        elif kind != "user":
            self.library(module)
            self.library_callable(label, value, module, names)
        elif isinstance(value, type):
            self.cls(value)
        elif isinstance(value, types.FunctionType):
            self.function(value)
        else:
            # An instance of a user class: its class's code counts, and its state, by value (as
            # an argument's), checked at every call.
            tp = type(value)
            large = _too_large(getattr(value, "__dict__", None) or {})
            if large is not None:
                self.large[label] = (f"instance of {qualified_name(tp)} holding a {large}: too large to check "
                                     f"at every call, so not counted; pass it as an argument")
            else:
                self.data(label, value)
                self.container_extras(label, value, names)
            if isinstance(tp, type) and not isinstance(value, types.BuiltinFunctionType):
                self.value(tp, qualified_name(tp), names)

    def container_extras(self, label: str, value: Any, names: set[str]) -> None:
        """What a subclass of dict, list or set holds beside its items, which its hash does not see:
        its attributes, a defaultdict's ``default_factory`` (by its code, and replaced: walked again)."""
        if not isinstance(value, (dict, list, set)):
            return
        attributes = _instance_dict(value)
        if attributes is not None:
            self.data(f"{label}.<attributes>", attributes)
        if isinstance(value, collections.defaultdict):
            factory = value.default_factory
            self.value(factory, f"{label}.<default_factory>", names)
            self.watch.check(lambda: value.default_factory is factory)

    def bound_method(self, method: Any, owner: Any, label: str, names: set[str]) -> None:
        """A bound method held in a global (``LOOKUP = CONFIG.get``, ``SCALE = model.scale``): by the
        method's name and code, and by the object it is bound to, checked at every call as that object
        would be. One that only adds to its object (``ITEMS.append``) is the code's own record."""
        name = getattr(method, "__name__", None)
        if isinstance(method, types.MethodType):
            self.value(method.__func__, label, names)
        elif name in _WRITE_METHODS:
            self.written[label] = _WRITTEN_NOTE
            return
        _put(self.constants, f"{label}.<method>", hash_value(str(name), label))
        self.value(owner, f"{label}.<self>", names)

    def library_callable(self, label: str, value: Any, module: str, names: set[str]) -> None:
        """A library's function or class held in a global (``OP = np.add``) counts by its name (rebound
        to another, the key changes); a callable object (an ``operator.itemgetter``, an
        ``np.vectorize``, a ``poly1d``) by value, with the user code it holds."""
        if isinstance(value, (type, types.FunctionType)) or (_function_like(value) and _named_by(value, module)):
            _put(self.constants, label, hash_value(f"<library callable> {_library_name(value, module)}", label))
            return
        for attr in list((_instance_dict(value) or {}).values()):
            held = dependencies.module_of(attr)
            if (_is_code_like(attr) and held is not None and not isinstance(attr, types.ModuleType)
                    and dependencies.classify_module(_real_module(held)) == "user"):
                self.value(attr, f"{label}.<holds>", names)
        self.library_value(label, value, module)

    def data(self, label: str, value: Any, strict: bool = False) -> None:
        """Count ``value`` by its typed hash, under ``label`` (listed as ignored if it cannot be hashed)."""
        try:
            _put(self.constants, label, digest := hash_value(value, label, strict=strict))
        except TypeError as exc:  # UnhashableArgumentError is a TypeError
            self.ignored[label] = f"not hashable: {exc}"
            return
        if not _immutable(value):  # a dict of options mutated in place counts with its contents
            self.watch.check(_content_check(value, digest, label, strict))

    def names_path(self, label: str, value: str | Path) -> None:
        """Name a global counted by its text that stands for files: a str naming an existing file, a
        Path to a directory (the step reads what they hold, which the key cannot see)."""
        try:
            if isinstance(value, str):
                if len(value) > 1024 or "\n" in value or not os.path.isfile(value):
                    return
                self.ignored[label] = (f"{NAMED_PATHS[0]}{value!r}, which names an existing file: it counts by "
                                       f"its text, so an edit to the file would not change the key; make it a "
                                       f"pathlib.Path (a Path to a file counts by the file's content)")
            elif os.path.isdir(value):
                self.ignored[label] = (f"{NAMED_PATHS[1]}{str(value)!r}: it counts by its text, not by the "
                                       f"files in it, so an edit to them would not change the key; refer to the "
                                       f"files (a Path to a file counts by its content) or pass them as arguments")
        except (OSError, ValueError):
            return

    def environment(self, variable: str) -> None:
        """An environment variable the code reads by a literal name (``os.environ["SCALE"]``,
        ``os.getenv("SCALE")``) counts by its value now (unset: None), checked at every call."""
        value = os.environ.get(variable)
        _put(self.constants, f"os.environ[{variable!r}]", hash_value(value, variable))
        self.watch.check(lambda: os.environ.get(variable) == value)

    def library_value(self, label: str, value: Any, module: str) -> None:
        """Count an object of a standard-library or library type (of ``module``) by value, checked at
        every call unless too large for that (then named); one that cannot be hashed is named, and
        warned about unless it is machinery rather than data (a lock, a file, a logger)."""
        large = None if _immutable(value) else (_too_large(value) or _pickled_too_large(value))
        if large is not None:
            self.large[label] = (f"{large}: too large to check at every call, so not counted; pass it "
                                 f"as an argument (or list what it holds in version=)")
            return
        try:
            digest = hash_value(value, label)
        except TypeError as exc:  # UnhashableArgumentError is a TypeError
            machinery = module.partition(".")[0] in _MACHINERY_MODULES
            self.ignored[label] = (f"a {type(value).__qualname__} of {module}, which cannot be hashed: not counted"
                                   if machinery else f"not hashable: {exc}")
            return
        _put(self.constants, label, digest)
        if not _immutable(value):
            self.watch.check(_content_check(value, digest, label, False))

    def module(self, module: types.ModuleType, names: set[str]) -> None:
        if dependencies.classify_module(module.__name__) != "user":
            self.library(module.__name__)
            if module.__name__ == "argparse":  # a parser made in the code reads sys.argv
                self.script_arguments()
            return
        self._keep.append(module)
        attrs = vars(module)
        for name in sorted(names):
            # Once per attribute, not per module: two functions may use different attributes of it.
            if name in attrs and (id(module), name) not in self._seen_attributes:
                self._seen_attributes.add((id(module), name))
                self.watch.read(attrs, name, attrs[name])
                self.value(attrs[name], f"{module_label(module.__name__)}.{name}", names)
        lazy = attrs.get("__getattr__")
        if lazy is not None and (id(module), "__getattr__") not in self._seen_attributes:
            # A module __getattr__ (PEP 562) gives the names the module does not hold: its code counts,
            # and a name set on the module later (which then shadows it) walks again.
            self._seen_attributes.add((id(module), "__getattr__"))
            self.watch.read(attrs, "__getattr__", lazy)
            self.value(lazy, f"{module_label(module.__name__)}.__getattr__", names)
            absent = [name for name in names if name not in attrs]
            self.watch.check(lambda: not any(name in attrs for name in absent))

    def library_data(self, module: types.ModuleType, name: str) -> None:
        """A library module's data the code reads (``sys.argv``, ``np.pi``): by value, by identity and
        contents at every call (``sys.argv = [...]``, a list changed in place)."""
        attrs = vars(module)
        value = attrs.get(name, _UNRESOLVED)
        if (value is _UNRESOLVED or (id(module), name) in self._seen_attributes or callable(value)
                or not _is_constant(value) or dependencies.classify_module(module.__name__) == "user"):
            return
        self._seen_attributes.add((id(module), name))
        self._keep.append(module)
        self.watch.read(attrs, name, value)
        self.data(f"{module.__name__}.{name}", value)

    def script_arguments(self) -> None:
        """``sys.argv``, which ``argparse`` reads without the code naming it: by value, checked at every call."""
        attrs = vars(sys)
        if (id(sys), "argv") in self._seen_attributes or "argv" not in attrs:
            return
        self._seen_attributes.add((id(sys), "argv"))
        self.watch.read(attrs, "argv", attrs["argv"])
        self.data("sys.argv", attrs["argv"])

    def library(self, module: str) -> None:
        module = _real_module(module)
        if dependencies.classify_module(module) == "stdlib":
            self.stdlib.add(module.partition(".")[0])
            return
        for dist, version in dependencies.module_versions(module):
            self.dependencies[dist] = version


_UNRESOLVED = object()
# Python's own builtins, as they were when pairio was imported: one set or replaced later counts.
_ORIGINAL_BUILTINS = dict(vars(builtins))
_global_loads_cache: weakref.WeakKeyDictionary[types.CodeType, tuple[str, ...]] = weakref.WeakKeyDictionary()


def _global_loads(code: types.CodeType) -> tuple[str, ...]:
    """The names ``code`` (and nested code) reads as globals or builtins."""
    try:
        return _global_loads_cache[code]
    except KeyError:
        pass
    found = tuple(sorted({ins.argval for ins, _ in _instructions(code)
                          if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME") and isinstance(ins.argval, str)}))
    _global_loads_cache[code] = found
    return found


_HISTORY_NAMES = frozenset({"In", "Out", "_ih", "_oh", "_dh", "_i", "_ii", "_iii", "_", "__", "___"})


def _ipython_history(globals_: dict[str, Any]) -> bool:
    """True for an IPython user namespace (its ``In`` is its input history ``_ih``)."""
    history = globals_.get("_ih")
    return history is not None and globals_.get("In") is history and "Out" in globals_


def _is_history_name(name: str) -> bool:
    """``In``, ``Out``, ``_``, ``_i3``, ``_12``...: IPython's history, which changes with every cell."""
    if name in _HISTORY_NAMES:
        return True
    digits = name[2:] if name.startswith("_i") else name[1:] if name.startswith("_") else ""
    return digits.isdigit()


def _weak_items(value: Any) -> tuple[int, ...]:
    """The identities of what a weak container holds now (its keys and values)."""
    if isinstance(value, weakref.WeakSet):
        return tuple(map(id, list(value)))
    return tuple(id(item) for pair in list(value.items()) for item in pair)


def _bound_self(value: Any) -> Any:
    """The object a bound method is bound to (not a module: ``max`` is bound to ``builtins``), or None."""
    if not isinstance(value, (types.MethodType, types.BuiltinMethodType, types.MethodWrapperType)):
        return None
    owner = getattr(value, "__self__", None)
    return None if owner is None or isinstance(owner, types.ModuleType) else owner


def _instance_dict(value: Any) -> dict[str, Any] | None:
    """``value.__dict__`` if it is a dict of its own (not a class's mappingproxy), else None."""
    try:
        attributes = object.__getattribute__(value, "__dict__")
    except (AttributeError, TypeError):
        return None
    return attributes if type(attributes) is dict else None


def _function_like(value: Any) -> bool:
    """A function, builtin, ufunc, method descriptor or compiled (Cython) function: named, not data."""
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.MethodDescriptorType,
                          types.ClassMethodDescriptorType, types.WrapperDescriptorType, types.MethodWrapperType)):
        return True
    name = type(value).__name__
    return name == "ufunc" or "function" in name or name.endswith("method")


def _named_by(value: Any, module: str) -> bool:
    """True if ``value`` is what its module and qualified name give (``np.add`` is ``numpy.add``); a
    function-like object made at run time (``np.frompyfunc(f, 1, 1)``) is not: its name says nothing
    of what it runs."""
    try:
        owner = getattr(value, "__module__", None)
        name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
        obj: Any = sys.modules.get(owner if isinstance(owner, str) else module)
        if obj is None or not isinstance(name, str):
            return False
        for part in name.split("."):
            obj = vars(obj).get(part, _UNRESOLVED) if isinstance(obj, (types.ModuleType, type)) else _UNRESOLVED
        return obj is value
    except Exception:  # a __getattr__ of the library's raising
        return False


def _library_name(value: Any, module: str) -> str:
    try:
        owner = getattr(value, "__module__", None)
        name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
    except Exception:  # a __getattr__ of the library's raising
        owner = name = None
    return f"{owner if isinstance(owner, str) else module}.{name if isinstance(name, str) else type(value).__qualname__}"


# Functions whose result depends on global state the key cannot hold: module, function name(s), what.
_STATE_FUNCTIONS = (
    ("time", ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns", "process_time",
              "process_time_ns", "thread_time", "localtime", "gmtime", "ctime", "asctime", "strftime"),
     "reads the clock"),
    ("os", ("urandom", "getrandom"), "draws from the operating system's randomness"),
    ("uuid", ("uuid1", "uuid4"), "makes a new random or time-based UUID"),
    ("secrets", ("token_bytes", "token_hex", "token_urlsafe", "randbelow", "randbits", "choice"),
     "draws from the operating system's randomness"),
    ("decimal", ("getcontext", "localcontext"), "reads decimal's global context (precision, rounding)"),
    ("locale", ("getlocale", "localeconv", "setlocale"), "reads the global locale"),
    ("numpy", ("get_printoptions", "printoptions", "geterr", "getbufsize", "seterr", "errstate"),
     "reads numpy's global settings"),
    ("pandas", ("get_option", "option_context", "describe_option"), "reads pandas's global options"),
)
_STATE_OBJECTS = (("pandas", "options", "reads pandas's global options (pd.options)"),)
_CLOCK_METHODS = frozenset({"now", "utcnow", "today"})
# Made without a seed, these draw one from the operating system's entropy: module, names.
_UNSEEDED = (("random", ("Random",)), ("numpy.random", ("default_rng", "RandomState", "Generator", "SeedSequence")))


def _unseeded(value: Any, call: dis.Instruction | None) -> str | None:
    """What ``value`` called with no argument (``call`` the instruction after it) makes, if it draws a
    seed from the operating system's entropy (``np.random.default_rng()``, ``random.Random()``)."""
    if call is None or call.opname != "CALL" or call.arg != 0:
        return None
    for module, names in _UNSEEDED:
        found = sys.modules.get(module)
        for name in names:
            if found is not None and getattr(found, name, None) is value:
                return f"{module}.{name}() without a seed draws one from the operating system's entropy"
    return None
_state_functions: dict[int, tuple[Any, str]] = {}
_state_modules: set[str] = set()


def _global_state(value: Any) -> str | None:
    """What global state a function or object held or called reads that no key can hold (the random
    module's or numpy's global random state, the clock, decimal's context, a library's global
    settings), or None."""
    owner = getattr(value, "__self__", None) if isinstance(value, (types.MethodType, types.BuiltinMethodType)) else None
    name = getattr(value, "__name__", "?") if owner is not None else None
    if owner is not None and not isinstance(owner, types.ModuleType):
        random = sys.modules.get("random")
        if random is not None and owner is getattr(random, "_inst", None):
            return f"random.{name}() draws from the random module's global state"
        mtrand = sys.modules.get("numpy.random.mtrand")
        if mtrand is not None and owner is getattr(mtrand, "_rand", None):
            return f"numpy.random.{name}() draws from numpy's global random state"
        if isinstance(owner, type) and issubclass(owner, datetime.date) and name in _CLOCK_METHODS:
            return f"{owner.__qualname__}.{name}() reads the clock"
    loaded = tuple(m for m in ("time", "os", "uuid", "secrets", "decimal", "locale", "numpy", "pandas")
                   if m in sys.modules)
    if len(loaded) != len(_state_modules):
        for module, functions, what in _STATE_FUNCTIONS:
            if module in sys.modules:
                for function in functions:
                    obj = getattr(sys.modules[module], function, None)
                    if obj is not None:
                        _state_functions[id(obj)] = (obj, f"{module}.{function}() {what}")
        for module, attribute, what in _STATE_OBJECTS:
            obj = getattr(sys.modules.get(module), attribute, None)
            if obj is not None:
                _state_functions[id(obj)] = (obj, what)
        _state_modules.clear()
        _state_modules.update(loaded)
    known = _state_functions.get(id(value))
    return known[1] if known is not None and known[0] is value else None


def _submodule(module: types.ModuleType, name: str) -> Any:
    """``module.name`` for a submodule a package gives lazily (numpy's ``np.random``), imported as the
    code would import it; else :data:`_UNRESOLVED`."""
    full = f"{module.__name__}.{name}"
    if full in sys.modules:
        return sys.modules[full]
    if "__getattr__" not in vars(module) or "__path__" not in vars(module):
        return _UNRESOLVED
    try:
        import importlib.util

        return importlib.import_module(full) if importlib.util.find_spec(full) is not None else _UNRESOLVED
    except Exception:  # importing runs the package's code: any error means "cannot tell"
        return _UNRESOLVED


def _attribute_chain(obj: Any, following: list[dis.Instruction]) -> list[Any]:
    """``obj`` and what the attributes loaded after it reach through modules and classes
    (``np.random.rand``, ``datetime.datetime.now``), without running any other code."""
    out = [obj]
    for ins in following:
        if ins.opname not in ("LOAD_ATTR", "LOAD_METHOD") or not isinstance(ins.argval, str):
            break
        name = ins.argval
        if isinstance(obj, types.ModuleType):
            obj = vars(obj).get(name, _UNRESOLVED) if name in vars(obj) else _submodule(obj, name)
        elif isinstance(obj, type) and any(name in vars(k) for k in obj.__mro__):
            try:
                obj = getattr(obj, name)
            except Exception:  # a descriptor of the class's raising
                break
        else:
            break
        if obj is _UNRESOLVED:
            break
        out.append(obj)
    return out


def _put(table: dict[str, str], label: str, digest: str) -> None:
    """``table[label] = digest``, unless another object of the same name (two lambdas, two closures
    a factory made, two ``_`` functions) is there already: then under ``label #2``, ``#3``..."""
    name, n = label, 1
    while table.get(name, digest) != digest:
        n += 1
        name = f"{label} #{n}"
    table[name] = digest
_literal_defaults_cache: weakref.WeakKeyDictionary[types.CodeType, dict[str, Any]] = weakref.WeakKeyDictionary()


def _literal_defaults(func: Any) -> dict[str, Any]:
    """The defaults ``func``'s source writes as literals (``k=10``, ``opts={"s": 1}``), by parameter."""
    code = func.__code__
    try:
        return _literal_defaults_cache[code]
    except KeyError:
        pass
    import ast

    out: dict[str, Any] = {}
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        tree = None
    wanted = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
    for node in ast.walk(tree) if tree is not None else ():
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        args = node.args
        positional = [*args.posonlyargs, *args.args]
        if tuple(a.arg for a in [*positional, *args.kwonlyargs]) != wanted or (
                not isinstance(node, ast.Lambda) and node.name != func.__name__):
            continue
        pairs = [*zip(positional[len(positional) - len(args.defaults):], args.defaults, strict=True),
                 *((a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None)]
        for arg, expression in pairs:
            try:
                out[arg.arg] = ast.literal_eval(expression)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                pass
        break
    _literal_defaults_cache[code] = out
    return out


def _same_value(a: Any, b: Any, label: str) -> bool:
    """True if ``a`` and ``b`` hash alike by the argument rules."""
    try:
        return hash_value(a, label) == hash_value(b, label)
    except TypeError:
        return False


def _real_module(name: str) -> str:
    return "__main__" if name == "__mp_main__" and "__mp_main__" not in sys.modules else name


def _literal(ins: dis.Instruction | None) -> str | None:
    return ins.argval if ins is not None and ins.opname == "LOAD_CONST" and isinstance(ins.argval, str) else None


# What _environment_variable gives for a read of the environment it cannot name.
_COMPUTED_VARIABLE = "<computed>"
_ENVIRON_READS = ("get", "setdefault", "pop")


def _environment_variable(obj: Any, following: list[dis.Instruction], resolve: Callable[[dis.Instruction], Any]
                          ) -> str | None:
    """The name of the environment variable read by ``obj`` (``os``, ``os.environ``, ``os.getenv``) and
    the instructions after it: ``os.environ["X"]``, ``os.environ.get("X")``, ``os.getenv("X")``, the
    name a literal or a global str; :data:`_COMPUTED_VARIABLE` for any other read of the environment
    (a name computed at the call, the whole of ``os.environ``); None where it is not read (a write)."""
    def at(n: int) -> dis.Instruction | None:
        return following[n] if len(following) > n else None

    def attribute(n: int) -> str | None:
        ins = at(n)
        return ins.argval if ins is not None and ins.opname in ("LOAD_ATTR", "LOAD_METHOD") else None

    def name(n: int) -> str:
        """The variable named by the operand at ``n``, then at ``n + 1`` a call or a subscript."""
        ins = at(n)
        if ins is None:
            return _COMPUTED_VARIABLE
        if ins.opname == "LOAD_CONST":
            value = ins.argval
        elif ins.opname in _LOADS:
            value = resolve(ins)
        else:
            return _COMPUTED_VARIABLE
        after = at(n + 1)
        if type(value) is not str or after is None or after.opname not in (
                "CALL", "PRECALL", "BINARY_SUBSCR", "CONTAINS_OP", "LOAD_CONST", "LOAD_GLOBAL", "LOAD_NAME",
                "LOAD_FAST", "LOAD_DEREF", "STORE_SUBSCR", "DELETE_SUBSCR"):
            return _COMPUTED_VARIABLE
        return value

    if obj is os:
        if attribute(0) == "getenv":
            return name(1)
        if attribute(0) != "environ":
            return None
        start = 1
    elif obj is os.getenv:
        return name(0)
    elif obj is os.environ:
        start = 0
    else:
        return None
    if attribute(start) in _ENVIRON_READS:
        return name(start + 1)
    after = at(start + 1)
    if after is not None and after.opname in ("STORE_SUBSCR", "DELETE_SUBSCR"):
        return None  # os.environ["X"] = ...: a write
    if after is not None and after.opname in ("BINARY_SUBSCR", "CONTAINS_OP"):
        return name(start)
    ins = at(start)
    if ins is not None and ins.opname in ("STORE_SUBSCR", "DELETE_SUBSCR"):
        return None  # os.environ[name] = ... with the name already on the stack
    return _COMPUTED_VARIABLE


def _descriptor_targets(attr: Any) -> list[Any]:
    """The functions a class attribute runs: a property's accessors, a cached_property's or a
    partialmethod's function, a singledispatchmethod's implementations, a method itself."""
    if isinstance(attr, property):
        return [attr.fget, attr.fset, attr.fdel]
    if isinstance(attr, (functools.cached_property, functools.partialmethod)):
        return [_unwrap(attr.func)]
    if isinstance(attr, functools.singledispatchmethod):
        return [_unwrap(f) for f in attr.dispatcher.registry.values()]
    return [_unwrap(attr)]


# Standard-library modules whose objects are machinery, not data (a lock, a file, a logger, a
# connection): one that cannot be hashed is named in explain, not warned about.
_MACHINERY_MODULES = frozenset({"_thread", "threading", "io", "_io", "socket", "multiprocessing", "queue",
                                "sqlite3", "logging", "asyncio", "concurrent", "selectors", "subprocess",
                                "weakref", "_weakref", "ssl", "mmap", "builtins", "_queue", "_asyncio", "_socket",
                                "_sqlite3", "_ssl", "_multiprocessing", "contextvars", "_contextvars"})


def _pickled_too_large(value: Any) -> str | None:
    """For an object neither a container, an array nor a frame: too large to check at every call
    if its pickle is (measured once, when the code is described)."""
    if isinstance(value, (dict, list, tuple, set, frozenset, collections.deque)):
        return None
    try:
        size = len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # pickling runs the object's own code: any error means "cannot tell"
        return None
    return f"{type(value).__qualname__} of {size} bytes pickled" if size > _MAX_WATCHED_BYTES else None


def _is_library_value(value: Any) -> bool:
    """True for an object of a library type that is data, not code (not a module, class,
    function, method or other callable)."""
    return not callable(value) and not isinstance(value, (type, types.ModuleType))


def _is_code_like(value: Any) -> bool:
    if isinstance(value, (types.FunctionType, types.ModuleType, type)):
        return True
    return _wrapped(value) is not None


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


# A container the code adds to (``calls.append(x)``, ``seen[k] = v``, a counter
# ``runs[k] = runs.get(k, 0) + 1``), or a global it assigns itself, is the code's own record (a
# log, a memo, a counter), not an input: its contents would change the key at every call.
_WRITE_METHODS = frozenset({"append", "extend", "add", "insert", "appendleft", "extendleft"})
_WRITTEN_NOTE = ("written by the code itself (append, extend, add, item assignment, a counter, a global "
                 "it assigns): its own record, not an input; not counted")


def _written_only(code: types.CodeType) -> set[str]:
    """The global and closure names ``code`` (and nested code) adds to or assigns: its own state."""
    instructions = [ins for ins, _ in _instructions(code)]
    writes: set[str] = set()
    reads: set[str] = set()
    assigned = {ins.argval for ins in instructions if ins.opname in ("STORE_GLOBAL", "STORE_DEREF")}
    for i, ins in enumerate(instructions):
        if ins.opname not in _LOADS:
            continue
        following = instructions[i + 1:i + 3]
        ahead = instructions[i + 1:i + 12]
        if (following and following[0].opname in ("LOAD_METHOD", "LOAD_ATTR")
                and following[0].argval in _WRITE_METHODS):
            writes.add(ins.argval)
        elif (len(following) == 2 and following[1].opname == "STORE_SUBSCR"
              and following[0].opname in ("LOAD_CONST", "LOAD_FAST")):
            writes.add(ins.argval)
        elif _counts_into_itself(ins.argval, ahead):  # RUNS[k] = RUNS.get(k, 0) + 1; RUNS[k] += 1
            writes.add(ins.argval)
        else:
            reads.add(ins.argval)
    # A container the code writes into (a log of calls, a memo of results, a counter), even if it
    # reads it too, and a global it assigns itself (global COUNT; COUNT += 1): its own state.
    return writes | {name for name in assigned if name in reads}


def _counts_into_itself(name: str, ahead: list[dis.Instruction]) -> bool:
    """True if the load of ``name`` before ``ahead`` reads an item only to store into ``name`` again:
    ``name[k] = name.get(k, 0) + 1`` or ``name[k] += 1`` (a counter)."""
    if not ahead:
        return False
    first = ahead[0]
    if first.opname in ("LOAD_METHOD", "LOAD_ATTR") and first.argval == "get":
        rest = ahead[1:]
    elif first.opname in ("LOAD_FAST", "LOAD_CONST") and len(ahead) > 3 and ahead[1].opname == "COPY":
        return any(op.opname == "STORE_SUBSCR" for op in ahead[2:9]) and not any(
            op.opname.startswith(("CALL", "RETURN")) for op in ahead[2:9])
    else:
        return False
    for j in range(len(rest) - 2):
        if (rest[j].opname in _LOADS and rest[j].argval == name
                and rest[j + 1].opname in ("LOAD_FAST", "LOAD_CONST") and rest[j + 2].opname == "STORE_SUBSCR"):
            return True
    return False


_TIME_TYPES = (datetime.date, datetime.time, datetime.timedelta, datetime.timezone)


def _is_data(value: Any) -> bool:
    """A value of a common data type (counted by value, never by its library's version alone)."""
    if type(value) in _CONSTANT_CONTAINERS or isinstance(value, (*_TIME_TYPES, PurePath)):
        return True
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, (numpy.ndarray, numpy.generic)):
        return True
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, (pandas.DataFrame, pandas.Series, pandas.Index))


_IMMUTABLE_STDLIB = frozenset({("decimal", "Decimal"), ("fractions", "Fraction"), ("re", "Pattern"),
                               ("uuid", "UUID"), ("ipaddress", "IPv4Address"), ("ipaddress", "IPv6Address")})


def _immutable(value: Any, budget: list[int] | None = None) -> bool:
    """True for values that cannot change in place (scalars, enums, dates, pure paths, and tuples
    and frozensets of those): counted once, not checked at every call."""
    if budget is None:
        budget = [_MAX_CONSTANT_ITEMS]
    budget[0] -= 1
    if budget[0] < 0:
        return False
    tp = type(value)
    if tp in _CONSTANT_TYPES or isinstance(value, (enum.Enum, *_TIME_TYPES)):
        return True
    if isinstance(value, PurePath):
        return not isinstance(value, Path)  # a Path to a file counts by the file's content
    if (tp.__module__, tp.__qualname__) in _IMMUTABLE_STDLIB:
        return True
    if tp is tuple or tp is frozenset:
        return all(_immutable(v, budget) for v in value)
    return False


def _too_large(value: Any) -> str | None:
    """What makes a mutable value too large to check at every call, or None."""
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        return f"array of {value.nbytes} bytes" if value.nbytes > _MAX_WATCHED_BYTES else None
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, (pandas.DataFrame, pandas.Series, pandas.Index)):
        try:
            size = int(numpy.asarray(value.memory_usage(deep=False)).sum())  # type: ignore[union-attr]
        except (TypeError, ValueError, AttributeError):
            return None
        return f"{type(value).__name__} of {size} bytes" if size > _MAX_WATCHED_BYTES else None
    budget = [_MAX_WATCHED_ITEMS]
    stack = [value]
    while stack:
        item = stack.pop()
        budget[0] -= 1
        if budget[0] < 0:
            return f"{type(value).__name__} of more than {_MAX_WATCHED_ITEMS} items"
        if isinstance(item, dict):
            stack.extend(v for pair in item.items() for v in pair)
        elif isinstance(item, (list, tuple, set, frozenset, collections.deque)):
            stack.extend(item)
        elif numpy is not None and isinstance(item, numpy.ndarray) and item.nbytes > _MAX_WATCHED_BYTES:
            return f"{type(value).__name__} holding an array of {item.nbytes} bytes"
    return None


def _plain(value: Any, budget: list[int]) -> bool:
    """Builtin containers of scalars, enums, functions and classes: compared with ``==`` to a copy."""
    budget[0] -= 1
    if budget[0] < 0:
        return False
    tp = type(value)
    if tp in _CONSTANT_TYPES or isinstance(value, (enum.Enum, *_TIME_TYPES, types.FunctionType, type)):
        return True
    if tp is dict:
        return all(_plain(k, budget) and _plain(v, budget) for k, v in value.items())
    if tp in _CONSTANT_CONTAINERS:
        return all(_plain(v, budget) for v in value)
    return False


class _Members(tuple):
    """A set's snapshot: its members, in the order the set gave them when it was copied."""


def _typed(value: Any) -> Any:
    """What tells ``value`` apart from every value that does not hash with it: its type beside it,
    and a float's (or complex's) text, for ``0.0 == -0.0``."""
    tp = type(value)
    return (tp, repr(value)) if tp is float or tp is complex else (tp, value)


def _same(a: Any, b: Any) -> bool:
    """``a == b``, and of the same types all through (``b`` a :func:`_snapshot` of ``a``, sharing
    its scalars, so that unchanged items are the same objects). ``==`` alone says 1 == 1.0 == True
    and 0.0 == -0.0, which hash apart. An unchanged container is told at C speed: its items are the
    very objects copied."""
    if a is b:
        return True
    tp = type(a)
    if tp is set or tp is frozenset:
        return type(b) is _Members and len(a) == len(b) and (
            all(map(operator.is_, a, b)) or set(map(_typed, a)) == set(map(_typed, b)))
    if tp is not type(b):
        return False
    if tp is dict:
        if len(a) != len(b):
            return False
        if all(map(operator.is_, a.values(), b.values())) and a.keys() == b.keys():
            if all(map(operator.is_, a, b)):
                return True  # each key and value the very object copied (the common case)
            return set(map(_typed, a)) == set(map(_typed, b))
        return all(k in b and _same(v, b[k]) for k, v in a.items()) and (
            all(map(operator.is_, a, b)) or set(map(_typed, a)) == set(map(_typed, b)))
    if tp is list or tp is tuple:
        return len(a) == len(b) and (all(map(operator.is_, a, b)) or all(map(_same, a, b)))
    if tp is float or tp is complex:
        return a == b and repr(a) == repr(b)
    return a == b


def _snapshot(value: Any) -> Any:
    """A copy of a plain container, its scalars shared (functions and classes too; a tuple or a
    frozenset of scalars, which cannot change, too)."""
    tp = type(value)
    if tp is dict:
        return {k: _snapshot(v) for k, v in value.items()}
    if (tp is tuple or tp is frozenset) and all(type(v) in _CONSTANT_TYPES for v in value):
        return value
    if tp is set or tp is frozenset:
        return _Members(_snapshot(v) for v in value)
    if tp is list or tp is tuple:
        return tp(_snapshot(v) for v in value)
    return value


def _content_check(value: Any, digest: str, label: str, strict: bool) -> Callable[[], bool]:
    """A check that ``value`` still has the contents it was hashed with (``digest``): a comparison
    with a copy where that is exact and cheap, else hashing it again."""
    if _plain(value, [_MAX_WATCHED_ITEMS]):
        snapshot = _snapshot(value)
        return holds_same(value, lambda: _same(value, snapshot))
    numpy = sys.modules.get("numpy")
    if numpy is not None and type(value) is numpy.ndarray and not value.dtype.hasobject:
        shape, dtype, data = value.shape, value.dtype, value.tobytes()
        return lambda: value.shape == shape and value.dtype == dtype and value.tobytes() == data
    return lambda: hash_value(value, label, strict=strict) == digest
