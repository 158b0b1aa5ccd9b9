"""Smaller findings of the fault trial (issue 21, item 9): each a warning or a count that was wrong."""

from __future__ import annotations

import warnings

import pairio as pa


def runtime_warnings(f, *args, **kwargs) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = f(*args, **kwargs)
    return result, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def test_an_unknown_pairio_variable_is_warned_about_once_naming_the_closest_known_one(monkeypatch):
    monkeypatch.setenv("PAIRIO_CAHCE", "off")
    monkeypatch.setenv("PAIRIO_URLL", "http://127.0.0.1:1")
    _, said = runtime_warnings(pa.reset_config)
    _, again = runtime_warnings(pa.reset_config)
    assert len(said) == 2 and again == []
    typo = next(m for m in said if "PAIRIO_CAHCE" in m)
    assert "PAIRIO_CACHE" in typo and "ignored" in typo
    assert "PAIRIO_URL?" in next(m for m in said if "PAIRIO_URLL" in m)


def test_known_and_test_suite_variables_are_not_warned_about(monkeypatch):
    monkeypatch.setenv("PAIRIO_CACHE", "on")
    monkeypatch.setenv("PAIRIO_SERVE_DIRECTORY", "/tmp")
    monkeypatch.setenv("PAIRIO_TEST_ANYTHING", "1")
    _, said = runtime_warnings(pa.reset_config)
    assert said == []
