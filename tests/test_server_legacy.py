"""The legacy protocol: off by default, and with ``"legacy": true`` as old clients expect."""

from __future__ import annotations

import urllib.parse

import pytest
import requests
from server_process import RO_PASSWORD, RW_PASSWORD, ServerProcess, default_settings, server_store

from pairio.kv.embedded import EmbeddedStore
from pairio.signing import legacy_signature


@pytest.fixture(scope="module")
def legacy_server(tmp_path_factory, pair_backend):
    with ServerProcess(tmp_path_factory.mktemp("legacy"), default_settings(legacy=True, **pair_backend)) as s:
        yield s


@pytest.fixture(scope="module")
def stored(legacy_server):
    store = server_store(legacy_server)
    yield store
    store.close()


def url_for(server, name, channel, password, collection, key, value=None, signature=None):
    parts = [name, collection, key] + ([value] if value is not None else [])
    path = "/" + "/".join(urllib.parse.quote(p, safe="") for p in parts)
    signature = signature or legacy_signature(password, name, collection, key, value)
    return f"{server.url}{path}?channel={channel}&signature={signature}"


def test_legacy_routes_are_off_by_default(tmp_path):
    with ServerProcess(tmp_path / "s", default_settings()) as server:
        r = requests.get(url_for(server, "get", "lab-rw", RW_PASSWORD, "spikes", "k"), timeout=5)
        assert r.status_code == 404
        r = requests.get(url_for(server, "set", "lab-rw", RW_PASSWORD, "spikes", "k", "v"), timeout=5)
        assert r.status_code == 404
        assert EmbeddedStore(server.directory / "store").get("spikes", "k") is None


def test_legacy_set_then_get(legacy_server, stored):
    r = requests.get(url_for(legacy_server, "set", "lab-rw", RW_PASSWORD, "spikes", "old key", "v 1"), timeout=5)
    assert r.json() == {"success": True}
    r = requests.get(url_for(legacy_server, "get", "lab-rw", RW_PASSWORD, "spikes", "old key"), timeout=5)
    assert r.json() == {"success": True, "value": "v 1"}
    assert stored.get("spikes", "old key") == "v 1"


def test_legacy_get_of_an_absent_key_is_success_false(legacy_server):
    r = requests.get(url_for(legacy_server, "get", "lab-rw", RW_PASSWORD, "spikes", "absent"), timeout=5)
    assert r.status_code == 200 and r.json()["success"] is False


def test_legacy_wrong_signature_is_401_and_changes_nothing(legacy_server, stored):
    wrong = legacy_signature("guess-password", "set", "spikes", "k2", "v")
    r = requests.get(url_for(legacy_server, "set", "lab-rw", RW_PASSWORD, "spikes", "k2", "v", wrong), timeout=5)
    assert r.status_code == 401 and r.json()["success"] is False
    unknown = requests.get(url_for(legacy_server, "set", "ghost", RW_PASSWORD, "spikes", "k2", "v"), timeout=5)
    assert unknown.status_code == 401 and unknown.json() == r.json()
    assert stored.get("spikes", "k2") is None


def test_legacy_signature_for_another_value_is_401(legacy_server, stored):
    other = legacy_signature(RW_PASSWORD, "set", "spikes", "k3", "good")
    r = requests.get(url_for(legacy_server, "set", "lab-rw", RW_PASSWORD, "spikes", "k3", "evil", other), timeout=5)
    assert r.status_code == 401
    assert stored.get("spikes", "k3") is None


def test_legacy_read_only_channel_cannot_set(legacy_server, stored):
    r = requests.get(url_for(legacy_server, "set", "public-ro", RO_PASSWORD, "spikes", "k4", "v"), timeout=5)
    assert r.status_code == 403 and r.json()["success"] is False
    assert stored.get("spikes", "k4") is None


def test_legacy_unknown_collection_is_404(legacy_server):
    r = requests.get(url_for(legacy_server, "get", "public-ro", RO_PASSWORD, "other", "k"), timeout=5)
    assert r.status_code == 404 and RO_PASSWORD not in r.text


def test_legacy_over_long_value_is_400(legacy_server):
    r = requests.get(url_for(legacy_server, "set", "lab-rw", RW_PASSWORD, "spikes", "k5", "v" * 81), timeout=5)
    assert r.status_code == 400 and "80" in r.json()["error"]
