"""Rate limits on a real server with tiny limits: 429 with Retry-After, and nothing changed."""

from __future__ import annotations

import pytest
from server_process import RW_PASSWORD, ServerProcess, server_store, signed_request

import pairio as pa
from pairio.kv.remote import RemoteStore

SETTINGS = {"channels": [{"name": "lab-rw", "password": RW_PASSWORD, "collections": [
    {"name": "gets", "maxNumGetsPerMinute": 3, "maxNumSetsPerMinute": 1000},
    {"name": "sets", "maxNumGetsPerMinute": 1000, "maxNumSetsPerMinute": 2},
    {"name": "batch", "maxNumGetsPerMinute": 10, "maxNumSetsPerMinute": 1000}]}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory, pair_backend):
    with ServerProcess(tmp_path_factory.mktemp("limits"), {**SETTINGS, **pair_backend}) as s:
        yield s


def call(server, path, obj):
    return signed_request(server.url, "lab-rw", RW_PASSWORD, path, obj)


def test_gets_over_the_limit_are_429_with_retry_after(server):
    for _ in range(3):
        assert call(server, "/api/v1/get", {"collection": "gets", "key": "k"}).status_code == 200
    r = call(server, "/api/v1/get", {"collection": "gets", "key": "k"})
    assert r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= 20
    assert "gets" in r.json()["error"]
    # sets on the same collection have their own budget
    assert call(server, "/api/v1/set", {"collection": "gets", "key": "k", "value": "v"}).status_code == 200


def test_sets_over_the_limit_are_429_and_change_nothing(server):
    stored = server_store(server)
    for i in range(2):
        assert call(server, "/api/v1/set", {"collection": "sets", "key": f"k{i}", "value": "v"}).status_code == 200
    r = call(server, "/api/v1/set", {"collection": "sets", "key": "k9", "value": "v"})
    assert r.status_code == 429 and "Retry-After" in r.headers
    assert stored.get("sets", "k9") is None
    stored.close()


def test_each_key_of_get_many_counts(server):
    keys = [f"k{i}" for i in range(8)]
    assert call(server, "/api/v1/get_many", {"collection": "batch", "keys": keys}).status_code == 200
    assert call(server, "/api/v1/get_many", {"collection": "batch", "keys": keys}).status_code == 429


def test_client_raises_rate_limited_with_retry_after(server):
    store = RemoteStore(server.url, "lab-rw", RW_PASSWORD, retries=3, max_retry_after=0.5)
    for _ in range(5):
        try:
            store.get("gets", "k")
        except pa.RateLimitedError as exc:
            assert exc.retry_after is not None and exc.retry_after >= 1
            assert server.url in str(exc)
            break
    else:
        pytest.fail("no RateLimitedError")
