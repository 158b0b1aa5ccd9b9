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
"""

from __future__ import annotations

import os
import reprlib
import threading
import weakref
from pathlib import PurePath
from typing import Any

from ..content.named import sha1_of_named_path
from ..content.uri import parse_uri
from ..errors import InvalidURIError
from ..hashing import is_sha1_hex
from ..kv import EmbeddedStore
from . import records

_MAX_REMEMBERED = 4096
_MAX_ELEMENTS = 64
_lock = threading.Lock()
# id(result) -> (weak reference to it, link); a link is {"collection": c, "key": k} or {"uri": u}.
_remembered: dict[int, tuple[weakref.ref, dict[str, str]]] = {}
# Types never remembered: their values are shared by identity (small ints, interned strings)
# or cannot be weakly referenced anyway.
_PLAIN = frozenset({type(None), bool, int, float, complex, str, bytes})


def remember(result: Any, link: dict[str, str]) -> None:
    """Remember that ``result`` came from ``link`` (its elements too, for a tuple, list or dict)."""
    t = type(result)
    if t in _PLAIN:
        return
    if t is tuple or t is list:
        for value in result[:_MAX_ELEMENTS]:
            if type(value) not in _PLAIN:
                _remember_one(value, link)
        return
    if t is dict:
        for value in list(result.values())[:_MAX_ELEMENTS]:
            if type(value) not in _PLAIN:
                _remember_one(value, link)
        return
    _remember_one(result, link)


def _remember_one(value: Any, link: dict[str, str]) -> None:
    try:
        ref = weakref.ref(value)
    except TypeError:
        return
    with _lock:
        if len(_remembered) >= _MAX_REMEMBERED:
            # Drop the oldest half (dicts keep insertion order); dead references go with them.
            for k in list(_remembered)[: _MAX_REMEMBERED // 2]:
                del _remembered[k]
        _remembered[id(value)] = (ref, link)


def _remembered_link(value: Any) -> dict[str, str] | None:
    found = _remembered.get(id(value))
    if found is not None and found[0]() is value:
        return found[1]
    return None


def links(bound: list[tuple[str, Any]], objects_dir: str) -> list[dict[str, str]]:
    """The inputs of a call's arguments ``[(name, value)]``: ``{"argument", "collection", "key"}``
    for another cached call's result, ``{"argument", "uri"}`` for content."""
    out: list[dict[str, str]] = []
    prefix = os.path.join(os.path.abspath(objects_dir), "")
    for name, value in bound:
        link = _link(value, prefix)
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
            link = _link(element, prefix)
            if link is not None:
                out.append({"argument": f"{name}[{i!r}]", **link})
    return out


def _link(value: Any, objects_prefix: str) -> dict[str, str] | None:
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
    if isinstance(value, PurePath):
        path = os.path.abspath(value)
        name = os.path.basename(path)
        if path.startswith(objects_prefix) and is_sha1_hex(name):
            return {"uri": f"sha1://{name}"}
        # A file of a cached result, as a hit hands it back: named like the original, beside the objects.
        sha1 = sha1_of_named_path(path, os.path.dirname(os.path.dirname(objects_prefix)))
        return {"uri": f"sha1://{sha1}/{name}"} if sha1 is not None else None
    return _remembered_link(value)


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
