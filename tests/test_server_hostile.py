"""Hostile input to a live server is a 4xx, never a 5xx, never a write (issue 21, item 6).

Each server runs once per pairs backend (embedded SQLite and PostgreSQL): bad input must never
look like an outage, since clients skip a server that answers 503.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.parse
import uuid

import pytest
import requests
from server_process import RW_PASSWORD, ServerProcess, default_settings, server_store, signed_request
from store_faults import Mounts, fill

from pairio.signing import legacy_content_signature, legacy_signature, sign_request

HUGE = "9" * 5000  # more digits than int() converts (4300 by default)


@pytest.fixture(scope="module")
def server(tmp_path_factory, pair_backend):
    with ServerProcess(tmp_path_factory.mktemp("hostile"), default_settings(legacy=True, **pair_backend)) as s:
        yield s


@pytest.fixture(scope="module")
def stored(server):
    store = server_store(server)
    yield store
    store.close()


@pytest.fixture(scope="module")
def object_sha1(server):
    data = b"an object of the server " * 40
    sha1 = hashlib.sha1(data).hexdigest()
    r = signed_request(server.url, "lab-rw", RW_PASSWORD, f"/api/v1/content/sha1/{sha1}", method="PUT",
                       body=data, body_hash=sha1)
    assert r.status_code in (200, 201), r.text
    return sha1


def signed_get(server, path: str, headers: dict[str, str]) -> requests.Response:
    signed = sign_request("lab-rw", RW_PASSWORD, "GET", path)
    return requests.get(server.url + path, headers={**signed, **headers}, timeout=10)


def legacy_download(server, sha1: str, headers: dict[str, str]) -> requests.Response:
    query = urllib.parse.urlencode({"channel": "lab-rw",
                                    "signature": legacy_content_signature(RW_PASSWORD, "download", "sha1", sha1)})
    return requests.get(f"{server.url}/get/sha1/{sha1}?{query}", headers=headers, timeout=10)


@pytest.mark.parametrize("header", [f"bytes=0-{HUGE}", f"bytes={HUGE}-", f"bytes=-{HUGE}", f"bytes={HUGE}-{HUGE}",
                                    "bytes=0-" + "0" * 25 + "1"])
@pytest.mark.parametrize("route", ["signed", "legacy"])
def test_a_range_with_too_many_digits_is_416(server, object_sha1, header, route):
    path = f"/api/v1/content/sha1/{object_sha1}"
    r = signed_get(server, path, {"Range": header}) if route == "signed" \
        else legacy_download(server, object_sha1, {"Range": header})
    assert r.status_code == 416, r.text
    assert r.headers["Content-Range"] == "bytes */960"
    ok = signed_get(server, path, {"Range": "bytes=0-9"})  # an ordinary range is still served
    assert ok.status_code == 206 and len(ok.content) == 10


def raw_request(server, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> int:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders(body or None)
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.parametrize("length", [HUGE, "0" * 30 + "5", "²", "1²"])
def test_a_content_length_with_too_many_digits_or_not_ascii_is_400(server, stored, length):
    body = b'{"collection":"spikes","key":"cl","value":"v"}'
    signed = sign_request("lab-rw", RW_PASSWORD, "POST", "/api/v1/set", body)
    assert raw_request(server, "POST", "/api/v1/set", {**signed, "Content-Length": length}, body) == 400
    data = b"x" * 10
    sha1 = hashlib.sha1(data).hexdigest()
    put_path = f"/api/v1/content/sha1/{sha1}"
    signed = sign_request("lab-rw", RW_PASSWORD, "PUT", put_path, body_hash=sha1)
    assert raw_request(server, "PUT", put_path, {**signed, "Content-Length": length}, data) == 400
    assert stored.get("spikes", "cl") is None


# --- every text field a client sends, with a NUL (and a lone surrogate) in it -------------------

OWNER = "0123456789abcdefABCDEF"


def lease_body(**fields):
    return {"collection": "spikes", "key": "lease-key", "owner": OWNER, "ttl": 30, **fields}


HOSTILE_BODIES = [
    ("/api/v1/lease/acquire", lease_body(key="a\0b")),
    ("/api/v1/lease/renew", lease_body(key="a\0b")),
    ("/api/v1/lease/release", lease_body(key="a\0b")),
    ("/api/v1/lease/acquire", lease_body(info={"host": "a\0b"})),
    ("/api/v1/lease/acquire", lease_body(info={"ho\0st": "a"})),
    ("/api/v1/lease/acquire", lease_body(info={"host": "\ud800"})),
    ("/api/v1/lease/acquire", lease_body(info={"\udfff": 1})),
    ("/api/v1/lease/acquire", lease_body(owner="a\0" * 10)),
    ("/api/v1/lease/acquire", lease_body(collection="spi\0kes")),
    ("/api/v1/set", {"collection": "spi\0kes", "key": "k", "value": "v"}),
    ("/api/v1/get", {"collection": "spi\0kes", "key": "k"}),
    ("/api/v1/set_many", {"collection": "spi\0kes", "pairs": {"k": "v"}}),
    ("/api/v1/delete", {"collection": "spi\0kes", "key": "k"}),
    ("/api/v1/get_many", {"collection": "spi\0kes", "keys": ["a"]}),
]


@pytest.mark.parametrize(("path", "body"), HOSTILE_BODIES, ids=[f"{p}-{i}" for i, (p, _) in enumerate(HOSTILE_BODIES)])
def test_a_nul_or_a_lone_surrogate_in_any_text_field_is_a_4xx_never_a_write(server, stored, path, body):
    r = signed_request(server.url, "lab-rw", RW_PASSWORD, path, body=_json(body))
    assert 400 <= r.status_code < 500, (path, body, r.status_code, r.text)
    leases = signed_request(server.url, "lab-rw", RW_PASSWORD, "/api/v1/leases", method="GET")
    assert leases.status_code == 200 and leases.json()["leases"] == []
    assert stored.get("spikes", "k") is None


def test_a_nul_in_a_lease_key_is_400_naming_the_field(server):
    r = signed_request(server.url, "lab-rw", RW_PASSWORD, "/api/v1/lease/acquire", lease_body(key="a\0b"))
    assert r.status_code == 400 and "'key'" in r.json()["error"] and "NUL" in r.json()["error"]
    # A key with a NUL is a good key for the pairs themselves, on every backend.
    r = signed_request(server.url, "lab-rw", RW_PASSWORD, "/api/v1/set",
                       {"collection": "spikes", "key": "nul\0key", "value": "v"})
    assert r.status_code == 200, r.text
    r = signed_request(server.url, "lab-rw", RW_PASSWORD, "/api/v1/get", {"collection": "spikes", "key": "nul\0key"})
    assert r.json() == {"value": "v"}


def _json(obj) -> bytes:
    import json

    # surrogatepass: a lone surrogate travels as the JSON escape \\udXXX, as a hostile client sends it.
    return json.dumps(obj).encode()


# --- the legacy routes --------------------------------------------------------------------------


def legacy_url(server, name, collection, key, value=None):
    parts = [name, collection, key] + ([value] if value is not None else [])
    path = "/" + "/".join(urllib.parse.quote(p, safe="") for p in parts)
    signature = legacy_signature(RW_PASSWORD, name, collection, key, value)
    return f"{server.url}{path}?channel=lab-rw&signature={signature}"


def test_a_legacy_head_never_writes(server, stored):
    key = f"head-{uuid.uuid4().hex}"
    r = requests.head(legacy_url(server, "set", "spikes", key, "v"), timeout=10)
    assert r.status_code == 405 and r.headers["Allow"] == "GET"
    assert stored.get("spikes", key) is None
    r = requests.get(legacy_url(server, "set", "spikes", key, "v"), timeout=10)  # the URL is still good
    assert r.json() == {"success": True} and stored.get("spikes", key) == "v"
    assert requests.head(legacy_url(server, "get", "spikes", key), timeout=10).status_code == 200


def test_a_legacy_set_url_replayed_is_not_applied_again(server, stored):
    key = f"replay-{uuid.uuid4().hex}"
    first, second = legacy_url(server, "set", "spikes", key, "v1"), legacy_url(server, "set", "spikes", key, "v2")
    assert requests.get(first, timeout=10).json() == {"success": True}
    assert requests.get(second, timeout=10).json() == {"success": True}
    r = requests.get(first, timeout=10)  # captured, replayed later: it would revert the key
    assert r.status_code == 409 and r.json()["success"] is False and "already used" in r.json()["error"]
    assert stored.get("spikes", key) == "v2"
    # The same URL again while the key still holds its value changes nothing: answered as done.
    assert requests.get(second, timeout=10).json() == {"success": True}
    assert stored.get("spikes", key) == "v2"


# --- 405 and Allow -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["OPTIONS", "DELETE", "PATCH", "POST"])
def test_405_lists_every_method_of_the_path(server, object_sha1, method):
    r = requests.request(method, f"{server.url}/api/v1/content/sha1/{object_sha1}", timeout=10)
    assert r.status_code == 405
    assert sorted(m.strip() for m in r.headers["Allow"].split(",")) == ["GET", "HEAD", "PUT"]


@pytest.mark.parametrize(("path", "allowed"), [("/api/v1/set", ["POST"]), ("/api/v1/health", ["GET", "HEAD"]),
                                               ("/api/v1/content/missing", ["POST"])])
def test_options_is_405_with_the_allowed_methods(server, path, allowed):
    r = requests.options(server.url + path, timeout=10)
    assert r.status_code == 405
    assert sorted(m.strip() for m in r.headers["Allow"].split(",")) == allowed


# --- a log on a full disk ----------------------------------------------------------------------


def test_the_server_keeps_serving_when_the_disk_of_its_log_fills_up(tmp_path):
    mounts = Mounts()
    try:
        disk = mounts.tmpfs("256k")
        server = ServerProcess(tmp_path / "s", default_settings(), log_level="info")
        server.log_path = disk / "server.log"  # its stdout and stderr: every request writes a line
        with server:
            filler = fill(disk)
            for i in range(300):
                r = signed_request(server.url, "lab-rw", RW_PASSWORD, "/api/v1/set",
                                   {"collection": "spikes", "key": f"k{i}", "value": "v" * 60})
                assert r.status_code == 200, r.text
            assert server.process.poll() is None
            os.remove(filler)
            r = signed_request(server.url, "lab-rw", RW_PASSWORD, "/api/v1/get", {"collection": "spikes", "key": "k299"})
            assert r.json() == {"value": "v" * 60}
            assert requests.get(f"{server.url}/api/v1/health", timeout=10).status_code == 200
    finally:
        mounts.close()


def test_a_server_starts_and_serves_on_a_log_disk_already_full(tmp_path):
    mounts = Mounts()
    try:
        disk = mounts.tmpfs("64k")
        fill(disk)
        server = ServerProcess(tmp_path / "s", default_settings(), log_level="info")
        server.log_path = disk / "server.log"
        with server:
            for i in range(50):
                r = signed_request(server.url, "lab-rw", RW_PASSWORD, "/api/v1/set",
                                   {"collection": "spikes", "key": f"k{i}", "value": "v"})
                assert r.status_code == 200, r.text
            assert server.process.poll() is None
    finally:
        mounts.close()
