"""The signed JSON API of a real ``pairio serve`` process: every route and security rule.

Each refused request is checked twice: its status, and that the server's store
did not change (read directly from the server's directory).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import time
import uuid

import pytest
import requests
from server_process import (
    RO_PASSWORD,
    RW_PASSWORD,
    WO_PASSWORD,
    ServerProcess,
    default_settings,
    server_store,
    signed_request,
)

from pairio.signing import HEADER_SIGNATURE, sign_request

MAX_BODY = 1024 * 1024
PASSWORDS = (RW_PASSWORD, RO_PASSWORD, WO_PASSWORD)


@pytest.fixture(scope="module")
def server(tmp_path_factory, pair_backend):
    settings = default_settings(maxBodyBytes=MAX_BODY, **pair_backend)
    with ServerProcess(tmp_path_factory.mktemp("server"), settings) as s:
        yield s


@pytest.fixture(scope="module")
def stored(server):
    """The server's own store, read directly."""
    store = server_store(server)
    yield store
    store.close()


def key() -> str:
    return hashlib.sha1(uuid.uuid4().bytes).hexdigest()


def rw(server, path, obj=None, **kw):
    return signed_request(server.url, "lab-rw", RW_PASSWORD, path, obj, **kw)


def assert_refused(response, status, *words):
    assert response.status_code == status, response.text
    message = response.json()["error"]
    for word in words:
        assert word in message
    for password in PASSWORDS:
        assert password not in response.text


# --- routes -------------------------------------------------------------------------


def test_health_needs_no_signature(server):
    r = requests.get(f"{server.url}/api/v1/health", timeout=5)
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_openapi_document_lists_every_route(server):
    doc = requests.get(f"{server.url}/openapi.json", timeout=5).json()
    assert doc["openapi"].startswith("3.")
    assert {"/api/v1/get", "/api/v1/set", "/api/v1/delete", "/api/v1/get_many",
            "/api/v1/set_many", "/api/v1/health", "/api/v1/probe"} <= set(doc["paths"])


def test_openapi_document_describes_retry_after_and_503(server):
    doc = requests.get(f"{server.url}/openapi.json", timeout=5).json()
    responses = doc["paths"]["/api/v1/get"]["post"]["responses"]
    assert "Retry-After" in responses["429"]["headers"]
    assert "503" in responses
    assert "X-Pairio-Nonce" in doc["info"]["description"]


def test_probe_answers_head_like_get(server):
    r = signed_request(server.url, "public-ro", RO_PASSWORD, "/api/v1/probe", method="HEAD")
    assert r.status_code == 200 and r.content == b""


def test_probe_shows_only_the_callers_channel(server):
    r = signed_request(server.url, "public-ro", RO_PASSWORD, "/api/v1/probe", method="GET")
    assert r.status_code == 200
    assert r.json() == {"channel": "public-ro", "collections": {"spikes": {"get": True, "set": False}},
                        "content": {"read": True, "write": False}}
    assert "lab-rw" not in r.text


def test_set_get_delete_round_trip(server, stored):
    k = key()
    assert rw(server, "/api/v1/get", {"collection": "spikes", "key": k}).json() == {"value": None}
    assert rw(server, "/api/v1/set", {"collection": "spikes", "key": k, "value": "v1"}).json() == {"ok": True}
    assert rw(server, "/api/v1/get", {"collection": "spikes", "key": k}).json() == {"value": "v1"}
    assert stored.get("spikes", k) == "v1"
    assert rw(server, "/api/v1/delete", {"collection": "spikes", "key": k}).status_code == 200
    assert stored.get("spikes", k) is None


def test_collections_are_separate(server, stored):
    k = key()
    rw(server, "/api/v1/set", {"collection": "other", "key": k, "value": "x"})
    assert stored.get("other", k) == "x" and stored.get("spikes", k) is None


def test_set_many_and_get_many(server, stored):
    pairs = {key(): f"v{i}" for i in range(100)}
    assert rw(server, "/api/v1/set_many", {"collection": "spikes", "pairs": pairs}).status_code == 200
    missing = key()
    r = rw(server, "/api/v1/get_many", {"collection": "spikes", "keys": [*pairs, missing]})
    assert r.json() == {"values": pairs}
    first = next(iter(pairs))
    rw(server, "/api/v1/set_many", {"collection": "spikes", "pairs": {first: None}})
    assert stored.get("spikes", first) is None


def test_ten_thousand_pairs_in_one_request(server, stored):
    pairs = {key(): "v" for _ in range(10_000)}
    assert rw(server, "/api/v1/set_many", {"collection": "spikes", "pairs": pairs}).status_code == 200
    assert len(stored.get_many("spikes", pairs)) == 10_000
    r = rw(server, "/api/v1/get_many", {"collection": "spikes", "keys": list(pairs)})
    assert len(r.json()["values"]) == 10_000


def test_more_than_ten_thousand_pairs_is_refused_whole(server, stored):
    pairs = {key(): "v" for _ in range(10_001)}
    assert_refused(rw(server, "/api/v1/set_many", {"collection": "spikes", "pairs": pairs}), 400, "pairs", "10000")
    assert stored.get_many("spikes", pairs) == {}
    assert_refused(rw(server, "/api/v1/get_many", {"collection": "spikes", "keys": list(pairs)}), 400, "keys")


# --- validation ----------------------------------------------------------------------


@pytest.mark.parametrize("obj, field", [
    ({"key": "k", "value": "v"}, "collection"),
    ({"collection": "spikes", "value": "v"}, "key"),
    ({"collection": "spikes", "key": "k" * 81, "value": "v"}, "key"),
    ({"collection": "spikes", "key": "", "value": "v"}, "key"),
    ({"collection": "spikes", "key": 5, "value": "v"}, "key"),
    ({"collection": "spikes", "key": "k", "value": "v" * 81}, "value"),
    ({"collection": "spikes", "key": "k", "value": None}, "value"),
    ({"collection": "spikes", "key": "k", "value": 3}, "value"),
    ({"collection": "spikes", "key": "\ud800", "value": "v"}, "key"),
])
def test_invalid_fields_are_named_and_change_nothing(server, stored, obj, field):
    before = stored.get("spikes", "k")
    assert_refused(rw(server, "/api/v1/set", obj), 400, field)
    assert stored.get("spikes", "k") == before


def test_set_many_with_one_bad_value_stores_nothing(server, stored):
    good, bad = key(), key()
    r = rw(server, "/api/v1/set_many", {"collection": "spikes", "pairs": {good: "ok", bad: "x" * 81}})
    assert_refused(r, 400, bad)
    assert stored.get_many("spikes", [good, bad]) == {}


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"", b"[" * 100_000])
def test_malformed_json_is_400_and_changes_nothing(server, stored, body):
    count = stored.count("spikes")
    assert_refused(rw(server, "/api/v1/set", body=body), 400, "JSON")
    assert stored.count("spikes") == count


# --- signatures ------------------------------------------------------------------------


def test_wrong_password_and_unknown_channel_get_the_same_401(server, stored):
    k = key()
    obj = {"collection": "spikes", "key": k, "value": "x"}
    wrong = signed_request(server.url, "lab-rw", "not-the-password", "/api/v1/set", obj)
    unknown = signed_request(server.url, "no-such-channel", RW_PASSWORD, "/api/v1/set", obj)
    assert_refused(wrong, 401)
    assert_refused(unknown, 401)
    assert wrong.json() == unknown.json()
    assert "no-such-channel" not in unknown.text
    assert stored.get("spikes", k) is None


def test_unsigned_request_is_401(server, stored):
    k = key()
    r = requests.post(f"{server.url}/api/v1/set", json={"collection": "spikes", "key": k, "value": "x"}, timeout=5)
    assert_refused(r, 401, "X-Pairio-Signature")
    assert stored.get("spikes", k) is None


def test_tampered_body_is_401(server, stored):
    k = key()
    body = json.dumps({"collection": "spikes", "key": k, "value": "good"}).encode()
    headers = sign_request("lab-rw", RW_PASSWORD, "POST", "/api/v1/set", body)
    tampered = body.replace(b"good", b"evil")
    r = requests.post(f"{server.url}/api/v1/set", data=tampered, headers=headers, timeout=5)
    assert_refused(r, 401, "signature")
    assert stored.get("spikes", k) is None


def test_signature_for_another_route_is_401(server, stored):
    k = key()
    stored.set("spikes", k, "keep")
    body = json.dumps({"collection": "spikes", "key": k}).encode()
    headers = sign_request("lab-rw", RW_PASSWORD, "POST", "/api/v1/get", body)
    r = requests.post(f"{server.url}/api/v1/delete", data=body, headers=headers, timeout=5)
    assert_refused(r, 401)
    assert stored.get("spikes", k) == "keep"


def test_malformed_signature_is_401(server):
    r = rw(server, "/api/v1/get", {"collection": "spikes", "key": "k"}, headers={HEADER_SIGNATURE: "zz\u00e9"})
    assert_refused(r, 401)


def test_replayed_request_is_401_and_changes_nothing(server, stored):
    k = key()
    body = json.dumps({"collection": "spikes", "key": k, "value": "old"}).encode()
    headers = sign_request("lab-rw", RW_PASSWORD, "POST", "/api/v1/set", body)
    assert requests.post(f"{server.url}/api/v1/set", data=body, headers=headers, timeout=5).status_code == 200
    rw(server, "/api/v1/set", {"collection": "spikes", "key": k, "value": "new"})
    replay = requests.post(f"{server.url}/api/v1/set", data=body, headers=headers, timeout=5)
    assert_refused(replay, 401, "replay")
    assert stored.get("spikes", k) == "new"


@pytest.mark.parametrize("offset", [-301, 301, -3600])
def test_stale_or_future_timestamp_is_401(server, stored, offset):
    k = key()
    r = rw(server, "/api/v1/set", {"collection": "spikes", "key": k, "value": "x"},
           timestamp=int(time.time()) + offset)
    assert_refused(r, 401, "X-Pairio-Timestamp")
    assert stored.get("spikes", k) is None


def test_timestamp_within_the_window_is_accepted(server):
    r = rw(server, "/api/v1/get", {"collection": "spikes", "key": "k"}, timestamp=int(time.time()) - 200)
    assert r.status_code == 200


# --- permissions -------------------------------------------------------------------------


@pytest.mark.parametrize("path, obj", [
    ("/api/v1/set", {"collection": "spikes", "key": "K", "value": "x"}),
    ("/api/v1/delete", {"collection": "spikes", "key": "K"}),
    ("/api/v1/set_many", {"collection": "spikes", "pairs": {"K": "x"}}),
    ("/api/v1/set_many", {"collection": "spikes", "pairs": {}}),  # even an empty batch
])
def test_read_only_channel_cannot_write(server, stored, path, obj):
    k = key()
    stored.set("spikes", k, "keep")
    obj = json.loads(json.dumps(obj).replace('"K"', json.dumps(k)))
    r = signed_request(server.url, "public-ro", RO_PASSWORD, path, obj)
    assert_refused(r, 403, "public-ro", "spikes")
    assert stored.get("spikes", k) == "keep"


def test_read_only_channel_can_read(server, stored):
    k = key()
    stored.set("spikes", k, "shared")
    r = signed_request(server.url, "public-ro", RO_PASSWORD, "/api/v1/get", {"collection": "spikes", "key": k})
    assert r.json() == {"value": "shared"}


def test_write_only_channel_cannot_read(server, stored):
    k = key()
    stored.set("spikes", k, "secret")
    for path, obj in (("/api/v1/get", {"collection": "spikes", "key": k}),
                      ("/api/v1/get_many", {"collection": "spikes", "keys": [k]}),
                      ("/api/v1/get_many", {"collection": "spikes", "keys": []})):
        r = signed_request(server.url, "drop-box", WO_PASSWORD, path, obj)
        assert_refused(r, 403, "read")
        assert "secret" not in r.text


def test_collection_not_listed_for_the_channel_is_404(server, stored):
    k = key()
    r = signed_request(server.url, "public-ro", RO_PASSWORD, "/api/v1/get", {"collection": "other", "key": k})
    assert_refused(r, 404, "other")
    r = rw(server, "/api/v1/set", {"collection": "nowhere", "key": k, "value": "x"})
    assert_refused(r, 404, "nowhere")
    assert "nowhere" not in stored.collections()


# --- body size -------------------------------------------------------------------------------


def test_declared_oversized_body_is_413_before_it_is_read(server):
    body = b"{}"
    headers = sign_request("lab-rw", RW_PASSWORD, "POST", "/api/v1/set", body)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.putrequest("POST", "/api/v1/set")
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(100 * MAX_BODY))
        connection.endheaders()
        connection.send(body)
        response = connection.getresponse()
        assert response.status == 413
        assert "limit" in json.loads(response.read())["error"]
    finally:
        connection.close()


def test_streamed_oversized_body_is_413(server, stored):
    count = stored.count("spikes")
    chunk = b" " * 65536

    def stream():  # no Content-Length: sent chunked
        yield b'{"collection": "spikes", "key": "big", "value": "x"'
        for _ in range(2 * MAX_BODY // len(chunk)):
            yield chunk
        yield b"}"

    headers = sign_request("lab-rw", RW_PASSWORD, "POST", "/api/v1/set", b"")
    try:
        r = requests.post(f"{server.url}/api/v1/set", data=stream(), headers=headers, timeout=10)
    except requests.ConnectionError:  # the server may close before the client finished sending
        pass
    else:
        assert_refused(r, 413, "limit")
    assert stored.count("spikes") == count
