"""``pairio.Ref``: a handle on a cached call's stored result, passed on without its bytes.

``f.ref(*args)`` returns the Ref of a call: on a hit (local or on the server) it costs
the key lookup and moves no content. A Ref given to a cached function is keyed by the
*argument digest* of its value (the value's hash by the argument rules, stored with
every result beside its pair, see :func:`argument_key`), so a Ref and the value it
stands for give the same key; the value is loaded only if the function must run.

Beside a result's pair ``key -> SHA-1`` a miss stores ``argument_key(key) ->
"<size> <digest>"`` (no digest for a value the rules cannot hash) and, when the value
has non-builtin types (whose libraries' versions count in keys), ``types_key(key) ->
"module:qualname,..."``. A lookup asks for the three pairs at once: one round trip.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Iterable
from pathlib import Path, PurePath
from typing import Any, Protocol, runtime_checkable

from ..config import get_config
from ..content import content_store
from ..errors import ContentNotFoundError, CorruptContentError
from ..hashing import MAX_VALUE_LENGTH
from ..result_keys import argument_key, types_key
from ..user_warnings import warn_user
from .digested import Digested

# The call of a Ref travels with it (for recomputing lost content elsewhere) if it pickles this small.
_MAX_CALL_BYTES = 64 << 10
_PLAIN_ARGUMENTS = (int, float, str, bool, type(None), bytes, complex, PurePath)


def type_names(types: Iterable[type]) -> str:
    """``types`` as :func:`types_key` keeps them."""
    return ",".join(sorted(f"{tp.__module__}:{tp.__qualname__}" for tp in types))


def digest_pairs(key: str, size: int, digest: str | None, types: set[type]) -> dict[str, str]:
    """The pairs stored with the result of ``key`` so that a Ref of it is keyed without its bytes
    (none for the digest if the value's types cannot be written in a value: it is then hashed)."""
    names = type_names(types) if types else ""
    if len(names) > MAX_VALUE_LENGTH:
        digest, names = None, ""
    pairs = {argument_key(key): f"{size} {digest}" if digest else str(size)}
    if names:
        pairs[types_key(key)] = names
    return pairs


def parse_argument(text: str | None) -> tuple[int | None, str | None]:
    """``(size, digest)`` from an :func:`argument_key` value (None where absent or malformed)."""
    if not text:
        return None, None
    size, _, digest = text.partition(" ")
    try:
        n = int(size)
    except ValueError:
        return None, None
    return n, digest if len(digest) == 40 else None


def _resolve_type(name: str) -> type | None:
    module, _, qualname = name.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError):
        return None
    return obj if isinstance(obj, type) else None


class Ref(Digested):
    """A stored result of a cached call: its ``uri``, ``sha1``, ``size``, and the call that made it
    (``function``, ``collection``, ``key``). ``load()`` gives the value (the local store first,
    then the server; verified), ``path()`` the object's file. Passed to a cached function, it is
    keyed as its value is, and loaded only if the function runs."""

    __slots__ = ("sha1", "size", "function", "collection", "key", "digest", "types", "_call", "_fn")

    def __init__(self, sha1: str, size: int | None, function: str, collection: str, key: str,
                 digest: str | None = None, types: str = "", call: tuple | None = None, fn: Any = None) -> None:
        self.sha1 = sha1
        self.size = size
        self.function = function
        self.collection = collection
        self.key = key
        self.digest = digest  # the value's hash by the argument rules (None: hashed from the value)
        self.types = types  # the value's non-builtin types, as type_names writes them
        self._call = call  # (args, kwargs) of the call, where known
        self._fn = fn  # the CachedFunction, in the process that made the Ref

    @property
    def uri(self) -> str:
        """``sha1://<sha1>``: the stored result's object."""
        return f"sha1://{self.sha1}"

    def __repr__(self) -> str:
        from ..units import format_size

        size = "size unknown" if self.size is None else format_size(self.size)
        return f"<pairio.Ref {self.function} key {self.key[:8]}: {self.uri[:15]}... {size}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ref) and (other.sha1, other.key, other.collection) == (
            self.sha1, self.key, self.collection)

    def __hash__(self) -> int:
        return hash((self.sha1, self.key))

    def __reduce__(self) -> tuple:
        return Ref, (self.sha1, self.size, self.function, self.collection, self.key, self.digest, self.types,
                     self._call if _small_call(self._call) else None)

    # --- as an argument -----------------------------------------------------------------

    def argument_digest(self, types: set[type] | None) -> str:
        """The hash its value has as an argument: the stored digest (the value is loaded and hashed
        only for a result stored without one)."""
        if self.digest is None:
            from .arguments import hash_value

            return hash_value(self.load(), f"Ref of {self.function}", types=types)
        if types is not None and self.types:
            for name in self.types.split(","):
                tp = _resolve_type(name)
                if tp is not None:
                    types.add(tp)
        return self.digest

    def pairio_link(self) -> dict[str, str]:
        """The provenance link of this Ref: the call that produced it."""
        return {"collection": self.collection, "key": self.key}

    # --- the value ----------------------------------------------------------------------

    def load(self, mmap: bool | None = None) -> Any:
        """The value (verified), from the local store, else the server (kept locally then). If it is
        on no reachable store, the call is computed again here once (its function imported by name)."""
        cfg = get_config()
        mmap = cfg.mmap if mmap is None else mmap
        try:
            value = self._read(cfg, mmap)
        except (ContentNotFoundError, CorruptContentError) as exc:
            value = self._recompute(exc)
        else:
            if mmap and self.digest is not None:
                remember_frozen(value, self.digest)
        from ..lifecycle import provenance

        provenance.note_origin(value, self.pairio_link(), self.sha1)
        return value

    def path(self) -> Path:
        """The path of the stored object in the local content store (fetched from the server if
        needed): a file to read, never to write."""
        cfg = get_config()
        store = content_store(cfg)
        if not store.has(self.sha1):
            self._fetch(cfg)
        found = store.path(self.sha1)
        if found is None:
            raise ContentNotFoundError(f"the result of {self.function} (key {self.key}, {self.uri}) is not here")
        return found

    def _read(self, cfg: Any, mmap: bool) -> Any:
        from .values import load_result

        store = content_store(cfg)
        if store.has(self.sha1):
            return load_result(store, self.sha1, mmap=mmap)
        if cfg.url and cfg.get_from != "local":
            from . import remote

            return remote.ServerLink(cfg).load(self.sha1, f"{self.function} {self.key[:8]}: loading a Ref", mmap=mmap)
        raise ContentNotFoundError(f"object {self.sha1} is not in the local content store (no server is configured)")

    def _fetch(self, cfg: Any) -> None:
        if cfg.url and cfg.get_from != "local":
            from . import remote

            if remote.ServerLink(cfg).fetch(self.sha1, f"{self.function} {self.key[:8]}: fetching a Ref"):
                return
        self._recompute(ContentNotFoundError(f"object {self.sha1} is on no reachable store"))

    def _recompute(self, exc: Exception) -> Any:
        fn = self._fn or _import_function(self.function)
        where = f"the result of {self.function} (key {self.key}, {self.uri})"
        if fn is None:
            raise ContentNotFoundError(f"{where} is on no reachable store ({exc}), and {self.function} cannot be "
                                       "imported here to compute it again") from exc
        if self._call is None:
            raise ContentNotFoundError(f"{where} is on no reachable store ({exc}), and the Ref does not carry "
                                       "its call's arguments (too large to travel with it)") from exc
        args, kwargs = self._call
        if fn.key(*args, **kwargs) != self.key:
            raise ContentNotFoundError(f"{where} is on no reachable store ({exc}), and {self.function} as it is "
                                       "here gives that call another key (its code or versions differ)") from exc
        warn_user(f"{where} is on no reachable store ({exc}): computing it again")
        from ..config import config

        with config(cache="refresh"):
            ref = fn.ref(*args, **kwargs)
        self.sha1, self.size = ref.sha1, ref.size  # (the same unless the step is not deterministic)
        if ref.digest is not None:
            self.digest, self.types = ref.digest, ref.types
        return self._read(get_config(), False)


def _small_call(call: tuple | None) -> bool:
    if call is None:
        return False
    args, kwargs = call
    if not all(_plain(a) for a in (*args, *kwargs.values())):
        return False
    try:
        return len(pickle.dumps(call, protocol=pickle.HIGHEST_PROTOCOL)) <= _MAX_CALL_BYTES
    except (pickle.PicklingError, TypeError, AttributeError):
        return False


def _plain(value: Any, depth: int = 0) -> bool:
    if isinstance(value, (Ref, *_PLAIN_ARGUMENTS)):
        return not isinstance(value, (str, bytes)) or len(value) <= 4096
    if depth < 3 and type(value) in (list, tuple):
        return len(value) <= 256 and all(_plain(v, depth + 1) for v in value)
    if depth < 3 and type(value) is dict:
        return len(value) <= 256 and all(_plain(k, depth + 1) and _plain(v, depth + 1) for k, v in value.items())
    return False


@runtime_checkable
class CachedCallable(Protocol):
    """What a Ref needs of the cached function that made it (``CachedFunction``, not imported
    here: the decorator imports this module)."""

    def key(self, *args: Any, **kwargs: Any) -> str: ...

    def ref(self, *args: Any, **kwargs: Any) -> Ref: ...

    def stored_result(self, cfg: Any, sha1: str) -> Any: ...


def _import_function(name: str) -> CachedCallable | None:
    """The cached function named ``module.qualname``, if it can be imported here (else None)."""
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for part in parts[i:]:
                obj = getattr(obj, part)
        except AttributeError:
            return None
        return obj if isinstance(obj, CachedCallable) else None
    return None


def remember_frozen(value: Any, digest: str) -> None:
    """A read-only memory-mapped array is never hashed again: its stored digest is its hash."""
    tp = type(value)
    if tp.__name__ == "ndarray" and tp.__module__ == "numpy":
        from .numeric import remember_stored

        remember_stored(value, digest)


_NEVER_REFS = frozenset({int, float, str, bool, type(None), bytes})


def has_refs(args: tuple, kwargs: dict) -> bool:
    """True if a Ref is among the arguments, or in a list, tuple or dict among them."""
    for value in (*args, *kwargs.values()):
        t = type(value)
        if t in _NEVER_REFS:  # (isinstance of an abstract class costs more than the rest of the loop)
            continue
        if isinstance(value, Ref):
            return True
        if (t is list or t is tuple) and any(isinstance(v, Ref) for v in value):
            return True
        if t is dict and any(isinstance(v, Ref) for v in value.values()):
            return True
    return False


def resolve(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """The arguments with each Ref (also in a list, tuple or dict) replaced by its value, loaded once."""
    loaded: dict[int, Any] = {}

    def value_of(v: Any) -> Any:
        if isinstance(v, Ref):
            if id(v) not in loaded:
                loaded[id(v)] = v.load()
            return loaded[id(v)]
        t = type(v)
        if t is list or t is tuple:
            return t(value_of(x) for x in v) if any(isinstance(x, Ref) for x in v) else v
        if t is dict:
            return {k: value_of(x) for k, x in v.items()} if any(isinstance(x, Ref) for x in v.values()) else v
        return v

    return tuple(value_of(a) for a in args), {k: value_of(v) for k, v in kwargs.items()}

