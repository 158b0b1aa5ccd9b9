"""The cache key of a call: the code part (once per function) plus the bound arguments (per call).

    key = sha1( "pairio.cached/<KEY_FORMAT>\\0" + code digest + "\\0" + version + "\\0"
                + canonical JSON of the explicit dependencies' versions + "\\0"
                + for each argument in signature order, not ignored:  name + "\\0" + value hash + "\\0" )

The code digest covers the function's name, source, helpers, constants,
closure values and the versions of the libraries they use (:mod:`.code`); a
value hash is :func:`.arguments.hash_value`. The libraries that define the
arguments' types (a DataFrame's pandas, an array's numpy, also inside lists,
dicts and dataclasses) count by version too: ``df.sum()`` runs pandas code the
function never names. Those not already counted by the code part are appended
after the arguments, as ``"types\0" + canonical JSON + "\0"`` (nothing when
there are none, so keys of calls on plain values are as they were). Arguments are bound to the
signature with defaults applied, so ``f(1)``, ``f(a=1)`` and ``f(1, b=<default>)``
are one key.

Changing anything here, in :mod:`.arguments`, :mod:`.source` or :mod:`.code`
that changes keys must bump ``KEY_FORMAT`` (the pinned vectors in the tests fail first).
"""

from __future__ import annotations

import hashlib
import inspect
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import PurePath
from typing import Any

from ..hashing import canonical_json
from ..user_warnings import warn_user
from . import dependencies as deps
from .arguments import hash_int, hash_value
from .code import NAMED_PATHS, CodeDescription, describe_function, qualified_name

KEY_FORMAT = 1
# The str arguments a KeyMaker remembers having checked for naming a file (each costs a stat),
# with their value hashes.
_CHECKED_STRS = 4096

# How many items of a list, tuple or dict argument are looked at for a str naming a file.
_FILE_NAME_ITEMS = 32
# How many keys of calls with plain arguments (see _plain) each function keeps.
_PLAIN_KEYS = 4096
# The longest str argument, in characters, and the widest int, in bits, that _plain accepts.
_PLAIN_STR = 256
_PLAIN_INT_BITS = 64

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class KeyMaker:
    """Derives keys for calls of one function; the code part is computed at first use."""

    def __init__(self, func: Callable[..., Any], *, version: str | None = None,
                 ignore: Iterable[str] = (), dependencies: Iterable[str] = (), strict: bool = False) -> None:
        self.func = func
        self.version = "" if version is None else str(version)
        self.ignore = frozenset(ignore)
        self.explicit_dependencies = tuple(sorted(set(dependencies)))
        self.strict = strict
        self._read_signature()
        params = list(self.signature.parameters.values())
        unknown = self.ignore - {p.name for p in params}
        if unknown:
            raise ValueError(f"ignore= names {sorted(unknown)} are not parameters of "
                             f"{getattr(func, '__qualname__', func)}{self.signature}")
        self._order = [p.name for p in params]
        self._positional = [p.name for p in params if p.kind in _POSITIONAL]
        self._keywords = frozenset(p.name for p in params if p.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))
        self._simple = not any(p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
                               for p in params)
        # A call passing every parameter by position (the commonest) is bound by zip: its
        # arguments are the parameters in order. -1 when that cannot be (*args, keyword-only, ignore=).
        self._arity = (len(params) if self._simple and not self.ignore and len(self._positional) == len(params)
                       else -1)
        self._heads = tuple(f"{name}\0".encode() for name in self._order)  # as key_from_hashes encodes them
        self.self_name = params[0].name if params and params[0].kind in _POSITIONAL else None
        self._prefix: bytes | None = None
        self._prefix_sha1: Any = None  # a SHA-1 fed the prefix, copied by each key
        self._code: CodeDescription | None = None
        self._warned_globals: set[str] = set()  # globals already warned about (not counted)
        self._warned_file_names: set[str] = set()  # arguments already warned about naming a file
        # The str arguments found to name no file (up to _CHECKED_STRS), each with its value hash: a
        # default or a repeated value is neither looked up on disk (the warning is advice, not part of
        # the key) nor hashed again at every call.
        self._checked_file_names: dict[str, str] = {}
        self._type_parts: dict[frozenset[type], tuple[dict[str, str], bytes]] = {}
        # The keys of calls passing only small ints and short strs by position, by their arguments,
        # each with the prefix SHA-1 it was made from: such a call is keyed again without hashing
        # while that prefix is the current one (each code description makes a new one).
        self._plain_keys: dict[tuple, tuple[tuple[str, dict[str, str], dict[str, str]], Any]] = {}
        # (key, argument hashes, type versions, the code description the key was made with)
        self.last: tuple[str, dict[str, str], dict[str, str], CodeDescription] | None = None

    def _read_signature(self) -> None:
        """The signature and the defaults as the function has them now (``__defaults__`` and
        ``__kwdefaults__`` can be rebound: the call then runs with the new ones)."""
        func = self.func
        now = (getattr(func, "__defaults__", None), getattr(func, "__kwdefaults__", None))
        self.signature = inspect.signature(func)
        self._defaults = {p.name: p.default for p in self.signature.parameters.values()
                          if p.default is not inspect.Parameter.empty}
        self._default_types = frozenset(type(value) for value in self._defaults.values())
        self._defaults_now = now  # last: a thread that sees it sees the defaults read with it

    def _check_defaults(self) -> None:
        """Take rebound defaults: the keys memoised for plain arguments were made with the old ones."""
        func = self.func
        positional, keywords = self._defaults_now
        if (getattr(func, "__defaults__", None) is not positional
                or getattr(func, "__kwdefaults__", None) is not keywords):
            self._read_signature()
            self._plain_keys = {}

    def _not_warned_yet(self, names: Iterable[str]) -> list[str]:
        """Those of ``names`` not warned about yet in this process, marked warned from now on."""
        new = [name for name in names if name not in self._warned_globals]
        self._warned_globals.update(new)
        return new

    # --- the code part ---------------------------------------------------------------

    @property
    def code(self) -> CodeDescription:
        """The description of the function's code as it is now (walked again when a global it reads
        was rebound or changed in place, or a helper's code changed)."""
        code = self._code
        if code is None or not code.watch.fresh():
            code = self._refresh()
        return code

    def _refresh(self) -> CodeDescription:
        """Describe the code afresh; everything derived from the old description goes."""
        code = describe_function(self.func)
        # What was derived from the old description goes before the new one is seen: a thread that
        # finds the new one never finds the old prefix (nor a key made from it) still in place.
        self._prefix = None
        self._prefix_sha1 = None
        self._type_parts = {}
        self._plain_keys = {}
        self._code = code
        if self._not_warned_yet(code.dynamic):
            warn_user(f"pairio: {code.function} looks code or settings up by a name computed at run time "
                      f"({'; '.join(code.dynamic)}): pairio cannot see what that reaches, so a "
                      f"change there would not change the key (a stale hit). Refer to the helper "
                      f"directly (an environment variable by its literal name, or pass its value as an "
                      f"argument), list a library in dependencies=[...], or raise version= when it "
                      f"changes. (explain()['not_counted']['dynamic_lookups'] lists them.)")
        if new := self._not_warned_yet(code.state):
            warn_user(f"pairio: {code.function} reads global state that no key can hold ({'; '.join(new)}): "
                      f"it is not counted, so a result that depends on it is reused as it is. Pass what it "
                      f"gives as an argument (a seed or a Generator, a timestamp, the settings). "
                      f"(explain()['not_counted']['global_state'] lists them.)")
        for label, why in code.large.items():
            if label not in self._warned_globals:
                self._warned_globals.add(label)
                warn_user(f"pairio: {code.function} reads the global {label}, a {why}: a change to it "
                          f"would not change the key. (explain()['not_counted']['large_mutable_globals'])")
        for label, why in code.ignored.items():
            if why.startswith("not hashable") and label not in self._warned_globals:
                self._warned_globals.add(label)
                warn_user(f"pairio: {code.function} reads the global {label}, which is {why}; it is not "
                          f"counted, so a change to it would not change the key: pass it as an argument. "
                          f"(explain()['not_counted']['globals'])")
            elif why.startswith(NAMED_PATHS) and label not in self._warned_globals:
                self._warned_globals.add(label)
                warn_user(f"pairio: {code.function} reads the global {label}, {why}. "
                          f"(explain()['not_counted']['globals'])")
        return code

    def dependency_versions(self) -> dict[str, str]:
        """The versions of the distributions named in ``dependencies=``."""
        return {name: deps.distribution_version(name) for name in self.explicit_dependencies}

    @property
    def prefix(self) -> bytes:
        """Everything in the key that does not depend on the call."""
        if self._prefix is None:
            self._prefix = (f"pairio.cached/{KEY_FORMAT}\0{self.code.digest}\0{self.version}\0"
                            f"{canonical_json(self.dependency_versions())}\0").encode()
        return self._prefix

    # --- the call part ---------------------------------------------------------------

    def of_types(self, args: Sequence[Any], kwargs: dict[str, Any], types: frozenset[type]) -> bool:
        """True if every argument of this call and every default of the function is of one of
        ``types`` (exactly: not a subclass), told without binding the call."""
        self._check_defaults()
        return (self._default_types <= types and all(type(value) in types for value in args)
                and all(type(value) in types for value in kwargs.values()))

    def binder(self, args: Sequence[Any], kwargs: dict[str, Any]) -> Callable[[], list[tuple[str, Any]]]:
        """A function giving :meth:`bind` of this call as it is now (with the defaults the function
        has now), to be called later: by the background writer of a miss's record."""
        self._check_defaults()
        signature, defaults = self.signature, self._defaults
        return lambda: self._bind(args, kwargs, signature, defaults)

    def bind(self, args: Sequence[Any], kwargs: dict[str, Any]) -> list[tuple[str, Any]]:
        """The arguments by name in signature order, defaults applied (TypeError as Python would)."""
        self._check_defaults()
        return self._bind(args, kwargs, self.signature, self._defaults)

    def _bind(self, args: Sequence[Any], kwargs: dict[str, Any], signature: inspect.Signature,
              defaults: dict[str, Any]) -> list[tuple[str, Any]]:
        if self._simple and len(args) <= len(self._positional):
            bound = dict(zip(self._positional, args, strict=False))
            ok = True
            for name, value in kwargs.items():
                if name in bound or name not in self._keywords:
                    ok = False
                    break
                bound[name] = value
            if ok:
                try:
                    return [(name, bound[name] if name in bound else defaults[name])
                            for name in self._order]
                except KeyError:
                    pass  # a missing argument: let Signature.bind say which
        try:
            ba = signature.bind(*args, **kwargs)
        except TypeError as exc:
            # As Python names the function in such errors: which call was wrong matters in a pipeline.
            raise TypeError(f"{qualified_name(self.func)}() {exc} (signature: {signature})") from None
        ba.apply_defaults()
        return list(ba.arguments.items())

    def argument_hashes(self, args: Sequence[Any], kwargs: dict[str, Any], *, method: bool = False,
                        file_hash: Callable[[PurePath], str] | None = None,
                        types: set[type] | None = None) -> dict[str, str]:
        """Each counted argument's value hash, in signature order.

        ``method`` is accepted for callers that pass it: a method's ``self`` counts like any
        argument (by its state and its class's code), unless ``ignore=['self']``.
        ``types``, if given, receives the non-builtin types met in the arguments.
        """
        out = {}
        ignore = self.ignore
        strict = self.strict
        for name, value in self.bind(args, kwargs):
            if name in ignore:
                continue
            out[name] = hash_value(value, name, strict=strict, file_hash=file_hash, types=types)
            if (isinstance(value, (str, list, tuple, dict)) and name not in self._warned_file_names
                    and not (type(value) is str and value in self._checked_file_names)):
                self._warn_if_names_file(name, value, out[name])
        return out

    def _warn_if_names_file(self, name: str, value: Any, digest: str) -> None:
        """Warn (once per argument) when a str argument, or one in a list, tuple or dict, names a file
        (``digest``: the value's hash, remembered with a str that names none)."""
        text = _file_named_by(value)
        if text is None:
            if type(value) is str:  # a container may be changed in place: only a str is remembered
                if len(self._checked_file_names) >= _CHECKED_STRS:  # ever new strs: keep it bounded
                    self._checked_file_names.clear()
                self._checked_file_names[value] = digest
            return
        self._warned_file_names.add(name)
        warn_user(
            f"pairio: argument {name!r} of {self.code.function} is the str {text!r}, which names an existing "
            f"file: a str counts by its text, so an edit to the file would not change the key (a stale hit). "
            f"Pass pathlib.Path({text!r}) instead: a Path to a file counts by the file's content.")

    def value_hash(self, value: Any) -> str:
        """``value``'s hash by the argument rules, as an argument of this function is hashed."""
        return hash_value(value, "value")

    def type_dependencies(self, types: Iterable[type]) -> dict[str, str]:
        """The versions of the libraries defining ``types`` that the code part does not count yet."""
        counted = self.code.dependencies
        explicit = self.explicit_dependencies
        out: dict[str, str] = {}
        for tp in types:
            for dist, version in deps.type_versions(tp):
                if dist not in counted and dist not in explicit:
                    out[dist] = version
        return dict(sorted(out.items()))

    def _type_part(self, types: set[type]) -> tuple[dict[str, str], bytes]:
        """:meth:`type_dependencies` of ``types`` and their part of the key, computed once per set of types."""
        found = frozenset(types)
        part = self._type_parts.get(found)
        if part is None:
            versions = self.type_dependencies(found)
            part = (versions, f"types\0{canonical_json(versions)}\0".encode() if versions else b"")
            if len(self._type_parts) >= 256:  # arguments of ever new types: keep it bounded
                self._type_parts.clear()
            self._type_parts[found] = part
        return part

    def key_from_hashes(self, hashes: dict[str, str], type_dependencies: dict[str, str] | None = None) -> str:
        """The key, given the argument hashes and the versions of their types' libraries."""
        h = hashlib.sha1(self.prefix)
        for name, digest in hashes.items():
            h.update(f"{name}\0{digest}\0".encode())
        if type_dependencies:
            h.update(f"types\0{canonical_json(type_dependencies)}\0".encode())
        return h.hexdigest()

    def key(self, args: Sequence[Any], kwargs: dict[str, Any], *, method: bool = False,
            file_hash: Callable[[PurePath], str] | None = None) -> str:
        """The 40-hex key of the call ``func(*args, **kwargs)``.

        ``last`` keeps the newest key with its argument hashes and type versions, so a miss can
        record them without hashing the arguments again (a reader checks the key: threads share it).
        """
        code = self._code
        if code is None or not code.watch.fresh():  # a global rebound, a helper redefined...
            code = self._refresh()
        self._check_defaults()
        plain: dict | None = self._plain_keys
        if (type(args) is tuple and len(args) == self._arity and not kwargs and file_hash is None and not method
                and _plain(args)):
            found = plain.get(args)
            # Made from this very prefix (a new one is made with each code description): still the key.
            if found is not None and found[1] is self._prefix_sha1:
                self.last = found[0]
                return found[0][0]
        else:
            plain = None
        types: set[type] = set()
        start = self._prefix_sha1
        if start is None:
            start = self._prefix_sha1 = hashlib.sha1(self.prefix)
        h = start.copy()
        if len(args) == self._arity and not kwargs and file_hash is None:
            hashes = self._positional_hashes(args, h, method, types)
        else:
            hashes = self.argument_hashes(args, kwargs, method=method, file_hash=file_hash, types=types)
            for name, digest in hashes.items():
                h.update(f"{name}\0{digest}\0".encode())
        type_versions: dict[str, str] = {}
        if types:
            type_versions, part = self._type_part(types)
            h.update(part)  # as key_from_hashes adds them
        key = h.hexdigest()
        self.last = last = (key, hashes, type_versions, code)
        if plain is not None:
            if len(plain) >= _PLAIN_KEYS:  # ever new arguments: keep it bounded
                plain.clear()
            plain[args] = (last, start)
        return key

    def _positional_hashes(self, args: Sequence[Any], h: Any, method: bool, types: set[type]) -> dict[str, str]:
        """:meth:`argument_hashes` of a call passing every parameter by position, each also fed to
        ``h`` as :meth:`key_from_hashes` feeds it: the hot path of a hit."""
        out = {}
        checked = self._checked_file_names
        names, heads = self._order, self._heads
        for name, head, value in zip(names, heads, args, strict=True):
            tp = type(value)
            if tp is int:
                digest = hash_int(value)
            else:
                digest = checked.get(value) if tp is str else None  # (another thread may clear it)
                if digest is None:
                    digest = hash_value(value, name, strict=self.strict, types=types)
                    if isinstance(value, (str, list, tuple, dict)) and name not in self._warned_file_names:
                        self._warn_if_names_file(name, value, digest)
            out[name] = digest
            h.update(head + digest.encode() + b"\0")
        return out

    def explain(self, args: Sequence[Any], kwargs: dict[str, Any], *, method: bool = False,
                file_hash: Callable[[PurePath], str] | None = None) -> dict[str, Any]:
        """What went into the key of this call, and what was left out."""
        types: set[type] = set()
        hashes = self.argument_hashes(args, kwargs, method=method, file_hash=file_hash, types=types)
        type_dependencies = self.type_dependencies(types)
        code = self.code.as_dict()
        counted = {
            "digest": code.pop("digest"),
            "source": code.pop("source"),
            "helpers": code.pop("helpers"),
            "constants": code.pop("constants"),
            "closure": code.pop("closure"),
        }
        return {
            "key": self.key_from_hashes(hashes, type_dependencies),
            "key_format": KEY_FORMAT,
            "function": code.pop("function"),
            "version": self.version,
            "code": counted,
            "dependencies": dict(sorted({**code.pop("dependencies"), **self.dependency_versions(),
                                         **type_dependencies}.items())),
            "arguments": hashes,
            "not_counted": {
                "ignored_arguments": sorted(self.ignore),
                "stdlib_modules (not versioned)": list(code.pop("stdlib")),
                "globals": code.pop("ignored"),
                "dynamic_lookups": list(code.pop("dynamic")),
                "large_mutable_globals": code.pop("large"),
                "written_only_globals": code.pop("written"),
                "global_state": list(code.pop("state")),
                "notes": list(code.pop("notes")),
            },
        }



def _file_named_by(value: Any) -> str | None:
    """The str in ``value`` (itself, or one of the first items of a list, tuple or dict) that names a file."""
    if isinstance(value, str):
        return value if _names_file(value) else None
    items = value.values() if isinstance(value, dict) else value
    for i, item in enumerate(items):
        if i >= _FILE_NAME_ITEMS:
            break
        if isinstance(item, str) and _names_file(item):
            return item
    return None


def _names_file(text: str) -> bool:
    if not text or len(text) > 4096 or "\0" in text:
        return False
    try:
        return os.path.isfile(text)
    except (OSError, ValueError):
        return False


def _plain(args: Sequence[Any]) -> bool:
    """True if every argument is a small int or a short str, exactly (no bool, float or subclass):
    such arguments are equal as tuples only when their hashes are equal (1 == 1.0 == True, and
    0.0 == -0.0, are not), and cheap to keep."""
    for value in args:
        tp = type(value)
        if tp is str:
            if len(value) > _PLAIN_STR:
                return False
        elif tp is not int or value.bit_length() > _PLAIN_INT_BITS:
            return False
    return True
