"""Why a call missed: its key's parts compared with the stored entries of the same function.

A key is made of the code digest (the function's source, its helpers, constants
and closure values), ``version=``, the dependency versions and each argument's
hash. Records keep each of these, so two calls can be compared part by part:
"helper steps.scale changed (digest cb5d.. -> 91aa..)", "argument `width` differs (5 -> 7)".
"""

from __future__ import annotations

import time
from typing import Any

from ..kv import EmbeddedStore
from ..units import format_age
from . import records

# How many of a function's newest entries a miss is compared with.
_COMPARED = 500
NOTHING_TO_COMPARE = "no stored entry of this function to compare with"


def _digest(value: Any) -> str:
    return f"{str(value)[:4]}.." if value else "none"


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs from ``old`` to ``new`` (each a dict with ``code``, ``version``,
    ``dependencies``, ``arguments`` and ``summary``, as records keep them)."""
    out: list[str] = []
    old_code, new_code = old["code"], new["code"]
    if old_code.get("digest") != new_code.get("digest"):
        before = len(out)
        if old_code.get("source") != new_code.get("source"):
            out.append(f"its own source changed (digest {_digest(old_code.get('source'))} -> "
                       f"{_digest(new_code.get('source'))})")
        for part, label in (("helpers", "helper"), ("constants", "constant"), ("closure", "closure variable")):
            a, b = old_code.get(part, {}), new_code.get(part, {})
            for name in sorted(set(a) | set(b)):
                if name not in a:
                    out.append(f"{label} {name} was added")
                elif name not in b:
                    out.append(f"{label} {name} was removed")
                elif a[name] != b[name]:
                    out.append(f"{label} {name} changed (digest {_digest(a[name])} -> {_digest(b[name])})")
        if len(out) == before:
            out.append(f"its code changed (digest {_digest(old_code.get('digest'))} -> "
                       f"{_digest(new_code.get('digest'))})")
    if old["version"] != new["version"]:
        out.append(f"version= changed ({old['version']!r} -> {new['version']!r})")
    a, b = old["dependencies"], new["dependencies"]
    for name in sorted(set(a) | set(b)):
        if a.get(name) != b.get(name):
            out.append(f"dependency {name} changed ({a.get(name, 'absent')} -> {b.get(name, 'absent')})")
    a, b = old["arguments"], new["arguments"]
    for name in list(dict.fromkeys([*b, *a])):
        if name not in a:
            out.append(f"argument `{name}` is new")
        elif name not in b:
            out.append(f"argument `{name}` is gone")
        elif a[name] != b[name]:
            sa, sb = old["summary"].get(name, ""), new["summary"].get(name, "")
            if sa and sb and sa != sb:
                out.append(f"argument `{name}` differs ({sa} -> {sb})")
            else:
                out.append(f"argument `{name}` differs (hash {_digest(a[name])} -> {_digest(b[name])}"
                           + (f", both {sa}" if sa else "") + ")")
    return out


def _parts(entry: records.Entry) -> dict[str, Any]:
    return {"code": entry.code, "version": entry.version, "dependencies": entry.dependencies,
            "arguments": entry.arguments, "summary": entry.summary}


def closest(store: EmbeddedStore, function: str, key: str,
            current: dict[str, Any]) -> tuple[records.Entry | None, list[str]]:
    """The stored entry of ``function`` (other than ``key``) nearest to ``current``, and the differences."""
    best: tuple[records.Entry | None, list[str]] = (None, [])
    for entry in records.of_function(store, function, _COMPARED):
        if entry.key == key:
            continue
        diff = differences(_parts(entry), current)
        if best[0] is None or len(diff) < len(best[1]):
            best = (entry, diff)  # the newest wins ties: entries come newest first
    return best


def reason(store: EmbeddedStore, function: str, key: str, current: dict[str, Any],
           same_key: records.Entry | None = None) -> str:
    """One line saying why the call with key ``key`` and parts ``current`` missed."""
    if same_key is not None:
        return (f"entry {key[:8]} is recorded but its pair or content is gone "
                f"(created {format_age(time.time() - same_key.created)} ago)")
    entry, diff = closest(store, function, key, current)
    if entry is None:
        return NOTHING_TO_COMPARE
    what = " and ".join(diff) if diff else "nothing recorded differs (a key format change?)"
    return f"missed because {what}; closest entry {entry.key[:8]} ({format_age(time.time() - entry.created)} old)"


def diff_entries(a: records.Entry, b: records.Entry) -> list[str]:
    """What differs from entry ``a`` to entry ``b``."""
    out = [] if a.function == b.function else [f"function {a.function} -> {b.function}"]
    return out + differences(_parts(a), _parts(b))
