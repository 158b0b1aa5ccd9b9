"""The parts of a cached call's key as lifecycle records them (:class:`~pairio.lifecycle.calls.KeyParts`),
built from the key maker: its code part (computed once per code), version, dependency versions,
the argument digests and short summaries of the arguments."""

from __future__ import annotations

import hashlib
import weakref
from typing import TYPE_CHECKING, Any

from ..lifecycle.calls import KeyParts
from ..lifecycle.summary import summarize

if TYPE_CHECKING:
    from .code import CodeDescription
    from .key import KeyMaker

# KeyMaker -> its code part as records keep it (computed once per function).
_code_parts: weakref.WeakKeyDictionary[Any, tuple[Any, dict[str, Any]]] = weakref.WeakKeyDictionary()


def code_parts(keys: KeyMaker, code: CodeDescription | None = None) -> dict[str, Any]:
    """The code digest of ``keys``'s function and the digests of its parts (of ``code``, its
    description a key was made with; by default as it is now: a helper redefined since the last
    call has a new description)."""
    if code is None:
        code = keys.code
    cached = _code_parts.get(keys)
    if cached is not None and cached[0] is code:
        return cached[1]
    parts = {
        "digest": code.digest,
        "source": hashlib.sha1(code.source.encode("utf-8", "surrogatepass")).hexdigest(),
        "helpers": dict(code.helpers),
        "constants": dict(code.constants),
        "closure": dict(code.closure),
    }
    _code_parts[keys] = (code, parts)
    return parts


def key_parts(keys: KeyMaker, method: bool, key: str, args: tuple,
              kwargs: dict) -> tuple[KeyParts, list[tuple[str, Any]]]:
    """The parts of ``key``, the key of ``(*args, **kwargs)`` (``method``: of a method), and the
    bound arguments."""
    bound = keys.bind(args, kwargs)
    return finish_key_parts(keys, *taken_now(keys, method, key, args, kwargs), bound), bound


def taken_now(keys: KeyMaker, method: bool, key: str, args: tuple, kwargs: dict) -> tuple:
    """What :func:`finish_key_parts` needs of the key maker as it is at this call (its code, the
    argument hashes of ``key``), to finish the parts later."""
    last = getattr(keys, "last", None)
    if last is not None and last[0] == key:
        # The key was just made: its parts are those it was made of (the code not described again).
        hashes, type_versions, code = last[1], last[2], last[3]
    else:
        types: set[type] = set()
        code = keys.code
        hashes = keys.argument_hashes(args, kwargs, method=method, types=types)
        type_versions = keys.type_dependencies(types) if types else {}
    return code_parts(keys, code), code.dependencies, hashes, type_versions


def finish_key_parts(keys: KeyMaker, code: dict[str, Any], code_dependencies: dict[str, Any],
                     hashes: dict[str, str], type_versions: dict[str, str],
                     bound: list[tuple[str, Any]]) -> KeyParts:
    """The parts of a key from what :func:`taken_now` took and the bound arguments."""
    summary = {name: summarize(value) for name, value in bound if name in hashes}
    return KeyParts(code=code, version=keys.version,
                    dependencies={**code_dependencies, **keys.dependency_versions(), **type_versions},
                    arguments=hashes, summary=summary)
