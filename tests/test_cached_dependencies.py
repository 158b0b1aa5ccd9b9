"""Which distribution provides a module, and its version: the fast lookup agrees with the full scan."""

from __future__ import annotations

import importlib.metadata
import sys

import pytest

from pairio.memo import dependencies


@pytest.mark.parametrize("module", ["numpy", "requests", "cloudpickle", "filelock", "hypothesis"])
def test_a_same_named_distribution_is_found_without_scanning_them_all(module):
    # (Python 3.10's packages_distributions() misses packages whose wheels carry no
    # top_level.txt, numpy's among them: this lookup reads the RECORD instead.)
    name = importlib.metadata.distribution(module).metadata["Name"]
    assert dependencies._same_named_distribution(module) == [name]
    assert dependencies.module_versions(module) == ((name, importlib.metadata.version(name)),)


@pytest.mark.parametrize("module,distribution", [("yaml", "PyYAML"), ("dateutil", "python-dateutil")])
def test_a_differently_named_distribution_is_found_by_the_scan(module, distribution):
    pytest.importorskip(module)
    assert dependencies._same_named_distribution(module) == []
    assert dependencies.module_versions(module) == ((distribution, importlib.metadata.version(distribution)),)


def test_a_module_no_distribution_claims_counts_as_unknown(tmp_path, monkeypatch):
    (tmp_path / "site-packages" / "loose_pkg").mkdir(parents=True)
    (tmp_path / "site-packages" / "loose_pkg" / "__init__.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site-packages"))
    import loose_pkg  # noqa: F401

    dependencies.clear_caches()
    try:
        assert dependencies.classify_module("loose_pkg") == "library"
        assert dependencies.module_versions("loose_pkg") == (("loose_pkg", "unknown"),)
    finally:
        sys.modules.pop("loose_pkg", None)
        dependencies.clear_caches()


def test_the_standard_library_counts_by_nothing():
    assert dependencies.classify_module("json") == "stdlib"
    assert dependencies.module_versions("json") == ()
