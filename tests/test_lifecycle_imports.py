"""Lifecycle sits below memo: nothing under pairio/lifecycle imports pairio.memo, not even lazily."""

from __future__ import annotations

import ast
from pathlib import Path

import pairio

_LIFECYCLE = Path(pairio.__file__).parent / "lifecycle"


def _imported(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports (inside functions and TYPE_CHECKING blocks too), by line."""
    package = ["pairio", "lifecycle"]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found += [(node.lineno, module)] + [(node.lineno, f"{module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return found


def test_lifecycle_imports_nothing_from_memo() -> None:
    climbing = [f"{path.name}:{line} {module}" for path in sorted(_LIFECYCLE.rglob("*.py"))
                for line, module in _imported(path) if module == "pairio.memo" or module.startswith("pairio.memo.")]
    assert climbing == []
