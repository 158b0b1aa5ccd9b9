"""The layer map in DEVELOPERS.md holds: every import in pairio/ (lazy ones inside functions
included) points down the map or stays inside its own package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pairio"


def layer_map() -> list[list[str]]:
    """The map's layers, top first: each a list of units (a module or a package under pairio)."""
    text = (ROOT / "DEVELOPERS.md").read_text()
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    assert block, "DEVELOPERS.md has no ```layers block"
    return [line.split("#")[0].split() for line in block.group(1).splitlines() if line.split("#")[0].strip()]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every pairio module that ``path`` imports, anywhere in it."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                targets = [f"{base}.{node.module}"] if node.module else [f"{base}.{a.name}" for a in node.names]
            else:
                targets = [node.module or ""]
            found += [(node.lineno, t) for t in targets]
    return [(line, target) for line, target in found if target == "pairio" or target.startswith("pairio.")]


def unit_of(module: str, units: set[str]) -> str | None:
    """The unit of the map that ``module`` belongs to (the longest matching prefix)."""
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        candidate = ".".join(parts[:n])
        if candidate in units:
            return candidate
    return "pairio" if module == "pairio" else None


def test_every_module_of_pairio_is_on_the_map():
    units = {u for layer in layer_map() for u in layer}
    unplaced = sorted(module_name(p) for p in PACKAGE.rglob("*.py") if unit_of(module_name(p), units) is None)
    assert not unplaced, f"modules on no layer of DEVELOPERS.md's map: {unplaced}"


def test_every_import_points_down_the_layer_map():
    layers = layer_map()
    level = {unit: i for i, layer in enumerate(layers) for unit in layer}
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = unit_of(module_name(path), set(level))
        for line, target in imported_modules(path):
            to = unit_of(target, set(level))
            if source is None or to is None or to == source or source == "pairio":
                continue
            if level[to] <= level[source]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({source}) imports {target} ({to})")
    assert not wrong, "imports against the layer map in DEVELOPERS.md:\n" + "\n".join(wrong)


def test_the_map_check_catches_an_arrow_that_climbs(tmp_path):
    # The walk itself: a lazy import inside a function is found, and a relative one is resolved.
    module = PACKAGE / "kv" / "embedded.py"
    found = dict((t, ln) for ln, t in imported_modules(module))
    assert any(t.startswith("pairio.") for t in found)
    sample = tmp_path / "pairio" / "kv" / "sample.py"
    sample.parent.mkdir(parents=True)
    sample.write_text("def f():\n    from ..memo import decorator\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert imported_modules(sample) == [(2, "pairio.memo")]
    finally:
        ROOT = saved


def test_the_core_layers_are_stacked_memo_lifecycle_content_kv():
    level = {u: i for i, layer in enumerate(layer_map()) for u in layer}
    order = [level[u] for u in ("pairio.memo", "pairio.lifecycle", "pairio.content", "pairio.kv")]
    assert order == sorted(set(order)), "memo over lifecycle over content over kv, each on its own layer"


def _module_of(dotted: str) -> str:
    """The module an import names: ``from . import app`` is ``pairio.server.app``, ``from .app import x`` too."""
    path = ROOT.joinpath(*dotted.split("."))
    if path.with_suffix(".py").exists() or (path / "__init__.py").exists():
        return dotted
    return dotted.rpartition(".")[0]


def cycle_among(package: str) -> list[str]:
    """One import cycle among the modules of ``package`` (a folder of pairio), or []."""
    graph = {module_name(p): {_module_of(t) for _, t in imported_modules(p)} for p in (PACKAGE / package).rglob("*.py")}
    done: set[str] = set()

    def visit(module: str, trail: list[str]) -> list[str]:
        if module in trail:
            return trail[trail.index(module):] + [module]
        if module in done or module not in graph:
            return []
        for imported in sorted(graph[module] - {module}):
            if cycle := visit(imported, trail + [module]):
                return cycle
        done.add(module)
        return []

    return next((c for c in map(lambda m: visit(m, []), sorted(graph)) if c), [])


def test_no_import_cycle_among_the_server_modules():
    assert cycle_among("server") == []
