"""A server says when it cannot serve (issue 21, item 5): ``/api/v1/health`` is 503 with the cause
while its store, database or content is unusable, and ``pairio serve`` on a database it cannot
reach (or a store that is corrupt) exits non-zero saying so, instead of claiming to serve."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import uuid

import pytest
import requests
from server_process import RW_PASSWORD, ServerProcess, default_settings, signed_request


def health(server) -> requests.Response:
    # Generous: with the database gone, each probe may wait for the pool's connect timeout (10 s).
    return requests.get(f"{server.url}/api/v1/health", timeout=120)


def dead_port() -> int:
    """A loopback port where nothing listens (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(directory, settings: dict) -> subprocess.CompletedProcess:
    import json

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pairio.json").write_text(json.dumps(settings))
    return subprocess.run([sys.executable, "-m", "pairio", "serve", str(directory), "--port", str(dead_port())],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def own_database(postgres_databases):
    """A PostgreSQL database of its own (so that the test may drop it), and its URL."""
    import psycopg

    name = f"pairio_health_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(postgres_databases.admin_url, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    yield admin, name, f"{postgres_databases.admin_url.rsplit('/', 1)[0]}/{name}"
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def test_health_is_503_with_the_cause_once_the_database_is_dropped(tmp_path, own_database):
    admin, name, url = own_database
    with ServerProcess(tmp_path / "s", default_settings(database=url)) as server:
        assert health(server).json()["status"] == "ok"
        assert signed_request(server.url, "lab-rw", RW_PASSWORD, "/api/v1/set",
                              {"collection": "spikes", "key": "k", "value": "v"}).status_code == 200
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        r = health(server)
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["status"] == "unavailable"
        assert any(cause.startswith("pairs store: ") for cause in body["causes"]), body
        assert "password" not in r.text
        # Again: whichever pooled connection answers now, cut or new and finding no database.
        assert health(server).status_code == 503


def test_serve_on_an_unreachable_database_exits_non_zero_saying_so(tmp_path, postgres_databases):
    url = f"postgresql://postgres@127.0.0.1:{dead_port()}/nothing"
    done = serve(tmp_path / "s", default_settings(database=url))
    assert done.returncode != 0
    assert "cannot serve" in done.stderr and "pairs store" in done.stderr and "refused" in done.stderr.lower()
    assert "pairio: serving" not in done.stderr


def test_health_is_503_when_the_content_directory_is_unusable(tmp_path):
    with ServerProcess(tmp_path / "s", default_settings()) as server:
        assert health(server).status_code == 200
        content = server.directory / "content"
        content.mkdir(exist_ok=True)
        shutil.rmtree(content)
        content.write_text("not a directory")
        r = health(server)
        assert r.status_code == 503 and any(c.startswith("content store: ") for c in r.json()["causes"]), r.text
        assert str(server.directory) not in r.text  # paths stay in the log
        content.unlink()
        assert health(server).status_code == 200


def test_health_is_503_when_the_pairs_database_is_emptied_beside_objects(tmp_path):
    with ServerProcess(tmp_path / "s", default_settings()) as server:
        data = b"an object" * 100
        sha1 = hashlib.sha1(data).hexdigest()
        assert signed_request(server.url, "lab-rw", RW_PASSWORD, f"/api/v1/content/sha1/{sha1}", method="PUT",
                              body=data, body_hash=sha1).status_code in (200, 201)
        assert signed_request(server.url, "lab-rw", RW_PASSWORD, "/api/v1/set",
                              {"collection": "spikes", "key": "k", "value": sha1}).status_code == 200
        os.truncate(server.directory / "store" / "kv.sqlite3", 0)
        r = health(server)
        assert r.status_code == 503, r.text
        assert any(c.startswith("pairs store: ") and "empty (0 bytes)" in c for c in r.json()["causes"]), r.text


@pytest.mark.parametrize("how", ["zeroed header", "0 bytes"])
def test_serve_on_a_corrupt_or_emptied_store_exits_non_zero_naming_it(tmp_path, how):
    with ServerProcess(tmp_path / "s", default_settings()) as server:
        data = b"an object" * 100
        sha1 = hashlib.sha1(data).hexdigest()
        assert signed_request(server.url, "lab-rw", RW_PASSWORD, f"/api/v1/content/sha1/{sha1}", method="PUT",
                              body=data, body_hash=sha1).status_code in (200, 201)
        for i in range(200):
            signed_request(server.url, "lab-rw", RW_PASSWORD, "/api/v1/set",
                           {"collection": "spikes", "key": f"k{i}", "value": "v"})
    database = tmp_path / "s" / "store" / "kv.sqlite3"
    if how == "zeroed header":
        with open(database, "r+b") as f:
            f.write(bytes(100))
    else:
        os.truncate(database, 0)
    done = serve(tmp_path / "s", default_settings())
    assert done.returncode != 0
    assert "cannot serve" in done.stderr and str(database) in done.stderr, done.stderr
    assert "pairio: serving" not in done.stderr
