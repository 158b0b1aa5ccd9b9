"""Every test gets its own database directory (and so its own content store).

Tests of the PostgreSQL backends use the real service (DEVELOPERS.md says when they may
skip): each test session creates its own database with a random name, dropped at the
end, and each test that asks for one gets its own schema in it.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import pytest

import pairio as pa

# The server tests' database: override to use another PostgreSQL service.
POSTGRES_ADMIN_URL = os.environ.get("PAIRIO_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
POSTGRES_HOW_TO_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


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
                "PAIRIO_CACHE", "PAIRIO_TIMEOUT", "PAIRIO_STRICT_REMOTE", "PAIRIO_LEASE_TTL", "PAIRIO_MAX_WAIT"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "pairio-home"
    monkeypatch.setenv("PAIRIO_DB_PATH", str(home))
    pa.reset_config()
    yield home
    pa.reset_config()


class PostgresDatabases:
    """A database of this test session on the PostgreSQL service; hands out fresh schemas."""

    def __init__(self, admin_url: str) -> None:
        import psycopg

        self.admin_url = admin_url
        try:
            self._admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
        except psycopg.OperationalError:
            service_required(f"PostgreSQL ({admin_url})", POSTGRES_HOW_TO_START)
        self.name = f"pairio_test_{uuid.uuid4().hex[:12]}"
        self._admin.execute(f'CREATE DATABASE "{self.name}"')
        base = admin_url.rsplit("/", 1)[0]
        self.url = f"{base}/{self.name}"

    def schema_url(self) -> str:
        """The URL of a new, empty schema (through search_path) in the session's database."""
        import psycopg

        schema = f"s_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f'CREATE SCHEMA "{schema}"')
        return f"{self.url}?options={quote(f'-csearch_path={schema}')}"

    def drop(self) -> None:
        self._admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self._admin.close()


@pytest.fixture(scope="session")
def postgres_databases():
    """The session's own PostgreSQL database (created with a random name, dropped at the end)."""
    databases = PostgresDatabases(POSTGRES_ADMIN_URL)
    yield databases
    databases.drop()


@pytest.fixture
def postgres_url(postgres_databases) -> str:
    """A postgresql:// URL of a fresh, empty schema of its own."""
    return postgres_databases.schema_url()


@pytest.fixture(scope="module", params=["embedded", "postgresql"])
def pair_backend(request) -> dict:
    """The pairio.json fields choosing the pairs backend of a test module's server.

    Server and client test modules take it, so each runs once per backend.
    """
    if request.param == "embedded":
        return {}
    return {"database": request.getfixturevalue("postgres_databases").schema_url()}
