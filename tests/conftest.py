"""Every test gets its own database directory (and so its own content store).

Tests of the PostgreSQL backends use the real service (DEVELOPERS.md says when they may
skip): each test session creates its own database with a random name, dropped at the
end, and each test that asks for one gets its own schema in it.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from urllib.parse import quote

import pytest

import pairio as pa
from pairio.memo import dependencies as deps
from pairio.memo import values

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
                "PAIRIO_CACHE", "PAIRIO_TIMEOUT", "PAIRIO_STRICT_REMOTE", "PAIRIO_LEASE_TTL", "PAIRIO_MAX_WAIT",
                "PAIRIO_MAX_SIZE", "PAIRIO_STORE_BACKEND", "PAIRIO_STRICT_STORE"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "pairio-home"
    monkeypatch.setenv("PAIRIO_DB_PATH", str(home))
    pa.reset_config()
    # The process's memory of recent results (by SHA-1) is not another test's: a result stored by one
    # test (25, say) would be found by another that expects its store not to hold it.
    values._recent.clear()
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


class MotoServer:
    """moto's standalone S3 server on a free loopback port: a protocol double of S3, not a durable store."""

    def __init__(self) -> None:
        import requests

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        # moto logs every request: to a file, as a pipe nobody reads would fill and stall it.
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                error = self.log.read().decode(errors="replace")[-2000:]
                service_required(f"moto's S3 server (it exited: {error})", "pip install 'moto[server]'")
            try:
                requests.get(self.url, timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        self.stop()
        service_required("moto's S3 server (it did not answer within 60 s)", "pip install 'moto[server]'")

    def client(self):
        import boto3

        return boto3.session.Session().client("s3", endpoint_url=self.url, region_name="us-east-1")

    def new_bucket(self) -> str:
        name = f"pairio-test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture(scope="session")
def moto_server():
    """moto's S3 server for this session, with dummy credentials in the environment (for
    the servers the tests start too)."""
    fake = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    saved = {name: os.environ.get(name) for name in fake}
    os.environ.update(fake)
    try:
        server = MotoServer()
    except BaseException:
        _restore(saved)
        raise
    yield server
    server.stop()
    _restore(saved)


def _restore(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def s3_bucket(moto_server) -> str:
    """A new, empty bucket on the session's moto server."""
    return moto_server.new_bucket()


@pytest.fixture(scope="module", params=["directory", "s3"])
def content_backend(request) -> dict:
    """The pairio.json fields choosing the content backend of a test module's server."""
    if request.param == "directory":
        return {}
    moto = request.getfixturevalue("moto_server")
    return {"content": {"backend": "s3", "bucket": moto.new_bucket(), "prefix": "pairio/",
                        "endpoint": moto.url, "region": "us-east-1"}}


@pytest.fixture
def installed(monkeypatch):
    """Pretend versions of installed distributions: ``installed["numpy"] = "99.0"``."""
    pretend: dict[str, str] = {}
    real = deps.distribution_version

    @functools.cache
    def distribution_version(dist):
        return pretend.get(dist) or real(dist)

    deps.clear_caches()
    monkeypatch.setattr(deps, "distribution_version", distribution_version)
    yield pretend
    deps.clear_caches()  # nothing computed with pretend versions outlives the test
