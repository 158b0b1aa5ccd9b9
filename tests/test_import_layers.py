"""Every import in pairio points down the layers (lazy imports inside functions included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pairio

PACKAGE = Path(pairio.__file__).parent
# Top to bottom: a module may import its own layer and the layers below it, never one above.
LAYERS = [
    {"cli"},
    {"memory"},
    {"server"},
    {"memo"},
    {"lifecycle"},
    {"content"},
    {"api"},  # pairio.get/set: routing over the stores
    {"kv"},
    {"config", "identity", "signing", "result_keys"},
    {"hashing", "wal", "write_faults", "units"},
    {"errors", "files", "filesystems", "user_warnings", "_version"},
]
# Arrows still pointing up, each being turned around in its own change.
KNOWN_UPWARD = {
    ("lifecycle", "memo"),
    ("memo", "lifecycle"),
    ("kv", "content.small"),
}
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> list[str]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imported(path: Path) -> list[tuple[int, list[str]]]:
    """(line, the imported module's dotted parts) for every import in ``path`` within pairio."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")) for a in node.names if a.name.split(".")[0] == "pairio"]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = base + (node.module.split(".") if node.module else [])
            if target[:1] == ["pairio"]:
                names = [target + [a.name] for a in node.names] if not node.module else [target]
                out += [(node.lineno, name) for name in names]
    return out


def _upward_imports() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _module_name(path)[1:]
        if not source or source[0] not in LEVEL:
            continue  # pairio/__init__.py and __main__.py sit above every layer
        for line, target in _imported(path):
            target = target[1:]
            if not target or target[0] not in LEVEL or target[0] == source[0]:
                continue
            dotted = ".".join(target)
            if (source[0], target[0]) in KNOWN_UPWARD or (source[0], dotted) in KNOWN_UPWARD:
                continue
            if LEVEL[target[0]] < LEVEL[source[0]]:
                found.append(f"{'/'.join(source)}.py:{line} imports pairio.{dotted}")
    return found


def test_every_package_is_in_a_layer():
    packages = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
                if (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert packages - set(LEVEL) == {"__init__", "__main__"}


def test_no_module_imports_a_layer_above_its_own():
    assert _upward_imports() == []


def _module_of(parts: list[str]) -> str:
    """The dotted module an import names: ``from .app import x`` is ``pairio.server.app``, not ``x``."""
    path = PACKAGE.parent.joinpath(*parts)
    if path.with_suffix(".py").exists() or (path / "__init__.py").exists():
        return ".".join(parts)
    return ".".join(parts[:-1])


def _cycle_among(package: str) -> list[str]:
    graph = {}
    for path in sorted((PACKAGE / package).rglob("*.py")):
        graph[".".join(_module_name(path))] = {_module_of(target) for _, target in _imported(path)}
    done: set[str] = set()

    def visit(module: str, trail: list[str]) -> list[str]:
        if module in trail:
            return trail[trail.index(module):] + [module]
        if module in done or module not in graph:
            return []
        for imported in sorted(graph[module]):
            if imported != module and (cycle := visit(imported, trail + [module])):
                return cycle
        done.add(module)
        return []

    for module in graph:
        if cycle := visit(module, []):
            return cycle
    return []


def test_no_import_cycle_among_the_server_modules():
    assert _cycle_among("server") == []
