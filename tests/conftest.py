"""Every test gets its own database directory (and so its own content store)."""

from __future__ import annotations

import os

import pytest

import pairio as pa


def service_required(what: str, how_to_start: str) -> None:
    """Skip (or, under CI=true, fail) a test whose real service is not running."""
    message = f"{what} is not running; start it with: {how_to_start}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def pairio_home(tmp_path, monkeypatch):
    """A fresh default config pointing at a temporary database directory."""
    for var in ("PAIRIO_URL", "PAIRIO_CHANNEL", "PAIRIO_PASSWORD", "PAIRIO_COLLECTION",
                "PAIRIO_CONTENT_DIR", "PAIRIO_GET_FROM", "PAIRIO_SET_TO", "PAIRIO_VERBOSE",
                "PAIRIO_CACHE", "PAIRIO_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "pairio-home"
    monkeypatch.setenv("PAIRIO_DB_PATH", str(home))
    pa.reset_config()
    yield home
    pa.reset_config()
