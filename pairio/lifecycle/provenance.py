"""Where a cached result came from: the entries and content its arguments were made from.

A result handed out by a cached call (a hit or a miss) is remembered in this
process by identity, through a weak reference, so it is never kept alive here.
Objects that cannot be weakly referenced (tuples, lists, dicts, numbers) are not
remembered themselves; the elements of a returned tuple, list or dict are, so
``a, b = step1()`` then ``step2(a)`` still links ``step2`` to ``step1``.

When a call misses, each argument (and each element of an argument that is a
list, tuple or dict) is matched: a remembered result links to its entry; a
``sha1://`` URI, or a path inside the content store's objects, links to that
content (and, through it, to the entry that produced it, if any).

A remembered result may have been changed in place since it was handed out
(``x = load(5); x[0] = 1000; total(x)``): it links only if its hash, by the
argument rules (as the key hashed it), is still the hash of the stored result
(worked out once per stored result, from its content, and only for a miss that
passes it on: a hit never pays for it).
"""

from __future__ import annotations

import functools
import os
import reprlib
import threading
import weakref
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

from ..content.named import sha1_of_named_path
from ..content.uri import parse_uri
from ..errors import InvalidURIError, PairioError
from ..hashing import is_sha1_hex
from ..kv import EmbeddedStore
from . import records

_MAX_REMEMBERED = 4096
_MAX_ELEMENTS = 64
_lock = threading.Lock()
# id(result) -> (weak reference to it, link, SHA-1 of the stored result it came from, where in that
# result: None for the whole, an index or a dict key for an element); a link is
# {"collection": c, "key": k} or {"uri": u}.
_remembered: dict[int, tuple[weakref.ref, dict[str, str], str, Any]] = {}
# (SHA-1 of a stored result, where in it) -> the hash of that value by the argument rules.
_stored_hashes: dict[tuple[str, Any], str] = {}
_MAX_STORED_HASHES = 1024
# Types never remembered: their values are shared by identity (small ints, interned strings)
# or cannot be weakly referenced anyway.
_PLAIN = frozenset({type(None), bool, int, float, complex, str, bytes})


def note_origin(result: Any, link: dict[str, str], sha1: str) -> None:
    """Remember that ``result``, stored as object ``sha1``, came from ``link`` (its elements too, for
    a tuple, list or dict)."""
    t = type(result)
    if t in _PLAIN:
        return
    if t is tuple or t is list:
        for i, value in enumerate(result[:_MAX_ELEMENTS]):
            if type(value) not in _PLAIN:
                _remember_one(value, link, sha1, i)
        return
    if t is dict:
        for k, value in list(result.items())[:_MAX_ELEMENTS]:
            if type(value) not in _PLAIN:
                _remember_one(value, link, sha1, k)
        return
    _remember_one(result, link, sha1, None)


def _remember_one(value: Any, link: dict[str, str], sha1: str, where: Any) -> None:
    try:
        ref = weakref.ref(value)
    except TypeError:
        return
    with _lock:
        if len(_remembered) >= _MAX_REMEMBERED:
            # Drop the oldest half (dicts keep insertion order); dead references go with them.
            for k in list(_remembered)[: _MAX_REMEMBERED // 2]:
                del _remembered[k]
        _remembered[id(value)] = (ref, link, sha1, where)


class Checker:
    """Tells whether a value remembered as a stored result is still that result: ``load(sha1)``
    gives a stored result, ``digest(value)`` a value's hash by the argument rules, ``known`` the
    hashes already taken for the key (by argument name)."""

    def __init__(self, load: Callable[[str], Any], digest: Callable[[Any], str],
                 known: dict[str, str] | None = None) -> None:
        self.load = load
        self.digest = digest
        self.known = known or {}

    def unchanged(self, value: Any, name: str | None, sha1: str, where: Any) -> bool:
        try:
            stored = _stored_hashes.get((sha1, where))
            if stored is None:
                result = self.load(sha1)
                stored = self.digest(result if where is None else result[where])
                with _lock:
                    if len(_stored_hashes) >= _MAX_STORED_HASHES:
                        _stored_hashes.clear()
                    _stored_hashes[(sha1, where)] = stored
            now = self.known.get(name) if name is not None else None
            return (now or self.digest(value)) == stored
        except (PairioError, OSError, LookupError, TypeError, ValueError):
            return False  # not known to be the stored result: not claimed


def _remembered_link(value: Any, name: str | None, checker: Checker | None) -> dict[str, str] | None:
    found = _remembered.get(id(value))
    if found is None or found[0]() is not value:
        return None
    if checker is not None and not checker.unchanged(value, name, found[2], found[3]):
        return None  # changed in place since it was handed out (or not known to be unchanged)
    return found[1]


def _prefix(objects_dir: str) -> str:
    """``objects_dir`` as the absolute prefix of its objects' paths (an absolute one made once:
    every miss asks; a relative one depends on the working directory)."""
    return _absolute_prefix(objects_dir) if os.path.isabs(objects_dir) else os.path.join(os.path.abspath(objects_dir), "")


@functools.lru_cache(maxsize=16)
def _absolute_prefix(objects_dir: str) -> str:
    return os.path.join(os.path.normpath(objects_dir), "")


def links(bound: list[tuple[str, Any]], objects_dir: str, checker: Checker | None = None) -> list[dict[str, str]]:
    """The inputs of a call's arguments ``[(name, value)]``: ``{"argument", "collection", "key"}``
    for another cached call's result (if ``checker`` finds it unchanged since), ``{"argument", "uri"}``
    for content."""
    out: list[dict[str, str]] = []
    prefix = _prefix(objects_dir)
    for name, value in bound:
        link = _link(value, prefix, name, checker)
        if link is not None:
            out.append({"argument": name, **link})
            continue
        t = type(value)
        if t is tuple or t is list:
            items: Any = enumerate(value[:_MAX_ELEMENTS])
        elif t is dict:
            items = list(value.items())[:_MAX_ELEMENTS]
        else:
            continue
        for i, element in items:
            link = _link(element, prefix, None, checker)
            if link is not None:
                out.append({"argument": f"{name}[{i!r}]", **link})
    return out


def _link(value: Any, objects_prefix: str, name: str | None, checker: Checker | None) -> dict[str, str] | None:
    t = type(value)
    if t is str:
        if value.startswith(("sha1://", "sha1dir://")):
            try:
                parse_uri(value)
            except InvalidURIError:
                return None
            return {"uri": value}
        return None
    if t in _PLAIN:
        return None
    ref_link = getattr(t, "pairio_link", None)  # a pairio.Ref: the call that produced it
    if ref_link is not None:
        return ref_link(value)
    if isinstance(value, PurePath):
        path = os.path.abspath(value)
        base = os.path.basename(path)
        if path.startswith(objects_prefix) and is_sha1_hex(base):
            return {"uri": f"sha1://{base}"}
        # A file of a cached result, as a hit hands it back: named like the original, beside the objects.
        sha1 = sha1_of_named_path(path, os.path.dirname(os.path.dirname(objects_prefix)))
        return {"uri": f"sha1://{sha1}/{base}"} if sha1 is not None else None
    return _remembered_link(value, name, checker)


# --- lineage ------------------------------------------------------------------------------


def _sha1_of_uri(uri: str) -> str | None:
    try:
        return parse_uri(uri).sha1
    except InvalidURIError:
        return None


def lineage(store: EmbeddedStore, entry: records.Entry, _seen: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The tree of where ``entry`` came from: each step's function, key, code digest,
    dependency versions and argument summaries, with the steps its inputs came from."""
    node: dict[str, Any] = {
        "function": entry.function,
        "key": entry.key,
        "collection": entry.collection,
        "uri": entry.uri,
        "code": entry.code.get("digest", ""),
        "dependencies": entry.dependencies,
        "arguments": entry.summary,
        "created": entry.created,
        "host": entry.host,
        "inputs": [],
    }
    seen = _seen | {entry.key}
    for link in entry.inputs:
        child: records.Entry | None = None
        if "key" in link:
            child = records.get(store, link["collection"], link["key"])
            what = {"key": link["key"]}
        else:
            sha1 = _sha1_of_uri(link["uri"])
            found = records.find(store, sha1) if sha1 else []
            child = found[0] if found else None
            what = {"uri": link["uri"]}
        if child is not None and child.key not in seen:
            node["inputs"].append({"argument": link["argument"], **lineage(store, child, seen)})
        else:
            note = "raw input" if "uri" in what and child is None else "no record (forgotten or evicted)"
            if child is not None:
                note = "cycle"
            node["inputs"].append({"argument": link["argument"], **what, "note": note})
    return node


def depth(tree: dict[str, Any]) -> int:
    """The number of cached steps on the longest path of a lineage tree."""
    steps = [depth(child) for child in tree.get("inputs", []) if "function" in child]
    return 1 + max(steps, default=0)


_short = reprlib.Repr()
_short.maxstring = 40
_short.maxother = 40


def format_tree(tree: dict[str, Any]) -> str:
    """A lineage tree as indented text, one step per paragraph."""
    lines: list[str] = []
    _format(tree, lines, "", "", None)
    return "\n".join(lines)


def _format(node: dict[str, Any], lines: list[str], first: str, rest: str, argument: str | None) -> None:
    via = f"{argument} <- " if argument else ""
    if "function" not in node:
        what = node.get("uri") or node.get("key", "")
        lines.append(f"{first}{via}{what} ({node.get('note', '')})")
        return
    deps = ", ".join(f"{k} {v}" for k, v in sorted(node["dependencies"].items()))
    lines.append(f"{first}{via}{node['function']}  key {node['key'][:12]}  code {node['code'][:12]}"
                 + (f"  [{deps}]" if deps else ""))
    args = ", ".join(f"{k}={v}" for k, v in node["arguments"].items())
    lines.append(f"{rest}    ({args})  -> {node['uri']}")
    children = node["inputs"]
    for i, child in enumerate(children):
        last = i == len(children) - 1
        _format(child, lines, rest + ("└─ " if last else "├─ "), rest + ("   " if last else "│  "),
                child["argument"])
