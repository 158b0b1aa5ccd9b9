"""The content routes of a real ``pairio serve`` process: missing, HEAD/GET with Range, PUT.

Every refused request asserts its status and that the server's content directory
holds nothing new (read directly, as ``pairio fsck`` would).
"""

from __future__ import annotations

import hashlib
import os
import socket
import urllib.parse

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from server_process import (
    RO_PASSWORD,
    RW_PASSWORD,
    WO_PASSWORD,
    ServerObjects,
    ServerProcess,
    default_settings,
    signed_request,
)

from pairio.server.auth import ApiError
from pairio.server.content import _parse_range
from pairio.signing import legacy_content_signature, sign_request

TINY_PASSWORD = "tiny-password-0123456789"
MAX_OBJECT = 10_000
QUOTA = 25_000


def settings(**extra):
    s = default_settings(**extra)
    s["channels"].append({"name": "tiny", "password": TINY_PASSWORD, "collections": [],
                          "readContent": True, "writeContent": True,
                          "maxObjectBytes": MAX_OBJECT, "maxUploadBytesPerDay": QUOTA})
    s["channels"].append({"name": "pairs-only", "password": "pairs-password-0123", "collections": []})
    return s


@pytest.fixture(scope="module")
def server(tmp_path_factory, content_backend):
    with ServerProcess(tmp_path_factory.mktemp("content-server"), settings(legacy=True, **content_backend)) as s:
        yield s


@pytest.fixture(scope="module")
def objects(server):
    """The server's content (directory or bucket), read directly."""
    return ServerObjects(server)


def new_data(n: int = 3000) -> tuple[bytes, str]:
    data = os.urandom(n)
    return data, hashlib.sha1(data).hexdigest()


def path(sha1: str) -> str:
    return f"/api/v1/content/sha1/{sha1}"


def put(server, data: bytes, sha1: str, channel="lab-rw", password=RW_PASSWORD, headers=None):
    signed = sign_request(channel, password, "PUT", path(sha1), body_hash=sha1)
    return requests.put(server.url + path(sha1), data=data, headers={**signed, **(headers or {})}, timeout=10)


def get(server, sha1: str, channel="lab-rw", password=RW_PASSWORD, method="GET", headers=None):
    signed = sign_request(channel, password, method, path(sha1))
    return requests.request(method, server.url + path(sha1), headers={**signed, **(headers or {})}, timeout=10)


def assert_refused(response, status, *words):
    assert response.status_code == status, response.text
    message = response.json()["error"]
    for word in words:
        assert word in message, message


def raw_put(server, sha1: str, head_length: int, body: bytes) -> bytes:
    """PUT over a bare socket: announce ``head_length`` bytes, send ``body``, stop sending; the answer."""
    signed = sign_request("lab-rw", RW_PASSWORD, "PUT", path(sha1), body_hash=sha1)
    head = "".join(f"{k}: {v}\r\n" for k, v in signed.items())
    request = (f"PUT {path(sha1)} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {head_length}\r\n"
               f"{head}\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


# --- what works ------------------------------------------------------------------------


def test_put_then_get_returns_the_same_bytes(server, objects):
    data, sha1 = new_data(300_000)
    r = put(server, data, sha1)
    assert r.status_code == 200 and r.json() == {"sha1": sha1, "size": len(data)}
    assert objects.read(sha1) == data
    r = get(server, sha1)
    assert r.status_code == 200 and r.content == data
    assert r.headers["Content-Length"] == str(len(data)) and r.headers["Accept-Ranges"] == "bytes"


def test_a_server_directory_passes_fsck(server, objects):
    if objects.store is None:
        pytest.skip("pairio fsck reads a content directory; this server's content is in a bucket")
    data, sha1 = new_data()
    put(server, data, sha1)
    report = objects.store.fsck()
    assert report.checked >= 1 and not report.corrupt and not report.unreadable


def test_putting_a_present_object_again_keeps_one_copy(server, objects):
    data, sha1 = new_data()
    assert put(server, data, sha1).status_code == 200
    assert put(server, data, sha1).status_code == 200
    assert objects.read(sha1) == data
    if objects.store is not None:  # the very same file: not written again
        inode = objects.store.path(sha1).stat().st_ino
        assert put(server, data, sha1).status_code == 200
        assert objects.store.path(sha1).stat().st_ino == inode


def test_head_gives_the_size_without_a_body(server):
    data, sha1 = new_data(1234)
    put(server, data, sha1)
    r = get(server, sha1, method="HEAD")
    assert r.status_code == 200 and r.headers["Content-Length"] == "1234" and r.content == b""


@pytest.mark.parametrize(("header", "start", "stop"), [
    ("bytes=0-99", 0, 100), ("bytes=100-", 100, 5000), ("bytes=-10", 4990, 5000),
    ("bytes=4000-9999", 4000, 5000), ("bytes=4999-4999", 4999, 5000),
])
def test_a_range_gets_206_and_those_bytes(server, header, start, stop):
    data, sha1 = new_data(5000)
    put(server, data, sha1)
    r = get(server, sha1, headers={"Range": header})
    assert r.status_code == 206, r.text
    assert r.content == data[start:stop]
    assert r.headers["Content-Range"] == f"bytes {start}-{stop - 1}/5000"


def test_a_range_past_the_end_is_416(server):
    data, sha1 = new_data(5000)
    put(server, data, sha1)
    r = get(server, sha1, headers={"Range": "bytes=5000-"})
    assert_refused(r, 416, "5000 bytes")
    assert r.headers["Content-Range"] == "bytes */5000"


def test_a_malformed_range_is_ignored(server):
    data, sha1 = new_data(100)
    put(server, data, sha1)
    r = get(server, sha1, headers={"Range": "lines=1-2"})
    assert r.status_code == 200 and r.content == data


@given(header=st.one_of(st.text(max_size=30), st.from_regex(r"bytes=[0-9]{0,7}-[0-9]{0,7}", fullmatch=True)),
       size=st.integers(0, 10**6))
def test_any_range_header_is_a_nonempty_slice_of_the_object_ignored_or_416(header, size):
    try:
        wanted = _parse_range(header, size)
    except ApiError as exc:
        assert exc.status == 416 and exc.headers == {"Content-Range": f"bytes */{size}"}
        return
    if wanted is None:
        return
    start, stop = wanted
    assert 0 <= start < stop <= size
    first, last = header.strip()[len("bytes="):].split("-")
    if first:  # bytes=a-b is [a, b] clipped to the object; bytes=a- runs to its end
        assert start == int(first) and stop == (size if not last else min(int(last) + 1, size))
    else:  # bytes=-n: the last n bytes
        assert stop == size and start == max(size - int(last), 0)


def test_missing_lists_the_absent_in_order(server):
    present = []
    for _ in range(2):
        data, sha1 = new_data(10)
        put(server, data, sha1)
        present.append(sha1)
    absent = [new_data(10)[1] for _ in range(3)]
    r = signed_request(server.url, "lab-rw", RW_PASSWORD, "/api/v1/content/missing",
                       {"sha1s": [absent[0], present[0], absent[1], present[1], absent[2]]})
    assert r.status_code == 200 and r.json() == {"missing": absent}


def test_missing_refuses_a_malformed_hash_naming_it(server):
    r = signed_request(server.url, "lab-rw", RW_PASSWORD, "/api/v1/content/missing",
                       {"sha1s": ["a" * 40, "A" * 40]})
    assert_refused(r, 400, "sha1s[1]")


def test_missing_refuses_more_than_10000_hashes(server):
    r = signed_request(server.url, "lab-rw", RW_PASSWORD, "/api/v1/content/missing",
                       {"sha1s": ["a" * 40] * 10_001})
    assert_refused(r, 400, "10000")


def test_write_only_and_read_only_channels_may_ask_what_is_missing(server):
    for channel, password in (("drop-box", WO_PASSWORD), ("public-ro", RO_PASSWORD)):
        r = signed_request(server.url, channel, password, "/api/v1/content/missing", {"sha1s": []})
        assert r.status_code == 200 and r.json() == {"missing": []}


def test_probe_shows_the_channels_content_rights(server):
    r = signed_request(server.url, "drop-box", WO_PASSWORD, "/api/v1/probe", method="GET")
    assert r.json()["content"] == {"read": False, "write": True}


# --- refusals: status, and nothing stored -------------------------------------------------


def test_a_body_that_does_not_match_its_hash_is_refused(server, objects):
    data, sha1 = new_data()
    r = put(server, data + b"!", sha1)
    assert_refused(r, 400, "does not hash to", sha1)
    assert not objects.has(sha1) and not objects.has(hashlib.sha1(data + b"!").hexdigest())


def test_a_truncated_body_stores_nothing(server, objects):
    data, sha1 = new_data(50_000)
    answer = raw_put(server, sha1, len(data), data[:20_000])
    assert not answer.startswith(b"HTTP/1.1 200")  # refused, or no answer to a client that left
    assert not objects.has(sha1)


def test_a_body_larger_than_announced_stores_nothing(server, objects):
    data, sha1 = new_data(50_000)
    answer = raw_put(server, sha1, 20_000, data)
    # The announced bytes do not hash to the path's SHA-1, and the rest is no HTTP request:
    # 400 from the route, or from the HTTP parser that reads on.
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"200 OK" not in answer
    assert not objects.has(sha1) and not objects.has(hashlib.sha1(data[:20_000]).hexdigest())


def test_an_object_over_the_channels_limit_is_refused_before_its_body(server, objects):
    data, sha1 = new_data(MAX_OBJECT + 1)
    r = put(server, data, sha1, "tiny", TINY_PASSWORD)
    assert_refused(r, 413, f"maxObjectBytes={MAX_OBJECT}", "tiny")
    assert not objects.has(sha1)


def test_a_chunked_body_over_the_limit_is_refused_as_it_arrives(server, objects):
    data, sha1 = new_data(MAX_OBJECT + 5000)
    r = put(server, (data[i:i + 1000] for i in range(0, len(data), 1000)), sha1, "tiny", TINY_PASSWORD)
    assert_refused(r, 413, f"maxObjectBytes={MAX_OBJECT}")
    assert not objects.has(sha1)


def test_past_the_daily_quota_uploads_get_429_with_retry_after(tmp_path):
    with ServerProcess(tmp_path / "quota", settings()) as server:
        objects = ServerObjects(server)
        for _ in range(2):
            data, sha1 = new_data(MAX_OBJECT)
            assert put(server, data, sha1, "tiny", TINY_PASSWORD).status_code == 200
        data, sha1 = new_data(MAX_OBJECT)  # 30,000 > 25,000
        r = put(server, data, sha1, "tiny", TINY_PASSWORD)
        assert_refused(r, 429, f"maxUploadBytesPerDay={QUOTA}", "20000 bytes uploaded today")
        assert 1 <= int(r.headers["Retry-After"]) <= 86_400
        assert not objects.has(sha1)
        # Another channel has its own quota.
        assert put(server, data, sha1).status_code == 200


def test_a_missing_object_is_404_before_any_byte(server):
    sha1 = new_data()[1]
    for method in ("GET", "HEAD"):
        r = get(server, sha1, method=method)
        assert r.status_code == 404
        if method == "GET":
            assert_refused(r, 404, sha1)


def test_reading_without_the_right_is_403(server):
    data, sha1 = new_data()
    put(server, data, sha1)
    assert_refused(get(server, sha1, "drop-box", WO_PASSWORD), 403, "readContent")
    r = signed_request(server.url, "pairs-only", "pairs-password-0123", "/api/v1/content/missing", {"sha1s": []})
    assert_refused(r, 403, "pairs-only")


def test_writing_without_the_right_is_403(server, objects):
    data, sha1 = new_data()
    assert_refused(put(server, data, sha1, "public-ro", RO_PASSWORD), 403, "writeContent")
    assert not objects.has(sha1)


def test_a_bad_signature_is_401(server, objects):
    data, sha1 = new_data()
    assert_refused(put(server, data, sha1, "lab-rw", RO_PASSWORD), 401)
    # Signed over the body's SHA-256 instead of the content's SHA-1: refused too.
    signed = sign_request("lab-rw", RW_PASSWORD, "PUT", path(sha1), data)
    assert_refused(requests.put(server.url + path(sha1), data=data, headers=signed, timeout=10), 401)
    assert not objects.has(sha1)
    put(server, data, sha1)
    assert_refused(get(server, sha1, "lab-rw", "wrong-password-0123"), 401)


def test_a_replayed_upload_is_401(server, objects):
    data, sha1 = new_data()
    signed = sign_request("lab-rw", RW_PASSWORD, "PUT", path(sha1), body_hash=sha1)
    r = requests.put(server.url + path(sha1), data=data + b"x", headers=signed, timeout=10)
    assert_refused(r, 400, "does not hash to")
    r = requests.put(server.url + path(sha1), data=data, headers=signed, timeout=10)
    assert_refused(r, 401, "already used")
    assert not objects.has(sha1)


def test_a_malformed_hash_in_the_path_is_400(server):
    for bad in ("A" * 40, "a" * 39, "not-a-hash"):
        assert_refused(put(server, b"x", bad), 400, "SHA-1")
        assert_refused(get(server, bad), 400, "SHA-1")


# --- the legacy kachery routes -------------------------------------------------------------


def legacy_url(server, name, sha1, channel="lab-rw", password=RW_PASSWORD, algorithm="sha1"):
    route = {"check": "check", "download": "get", "upload": "set"}[name]
    signature = legacy_content_signature(password, name, algorithm, sha1)
    query = urllib.parse.urlencode({"channel": channel, "signature": signature})
    return f"{server.url}/{route}/{algorithm}/{sha1}?{query}"


def test_kachery_clients_check_upload_and_download(server, objects):
    data, sha1 = new_data(4000)
    r = requests.get(legacy_url(server, "check", sha1), timeout=10)
    assert r.json() == {"success": True, "found": False, "size": 0}
    r = requests.post(legacy_url(server, "upload", sha1), data=data, timeout=10)
    assert r.status_code == 200 and r.json() == {"success": True}
    assert objects.read(sha1) == data
    r = requests.get(legacy_url(server, "check", sha1), timeout=10)
    assert r.json() == {"success": True, "found": True, "size": 4000}
    r = requests.get(legacy_url(server, "download", sha1), timeout=10)
    assert r.content == data
    r = requests.get(legacy_url(server, "download", sha1), headers={"Range": "bytes=10-19"}, timeout=10)
    assert r.status_code == 206 and r.content == data[10:20]


def test_kachery_uploads_are_verified_and_limited(server, objects):
    data, sha1 = new_data(4000)
    r = requests.post(legacy_url(server, "upload", sha1), data=data + b"x", timeout=10)
    assert r.status_code == 400 and r.json()["success"] is False
    r = requests.post(legacy_url(server, "upload", sha1, "public-ro", RO_PASSWORD), data=data, timeout=10)
    assert r.status_code == 403
    r = requests.post(legacy_url(server, "upload", sha1, "lab-rw", RO_PASSWORD), data=data, timeout=10)
    assert r.status_code == 401
    assert not objects.has(sha1)


def test_kachery_md5_gets_a_clear_400(server):
    md5 = hashlib.md5(b"x").hexdigest()
    for name in ("check", "download", "upload"):
        url = legacy_url(server, name, md5, algorithm="md5")
        r = requests.post(url, data=b"x", timeout=10) if name == "upload" else requests.get(url, timeout=10)
        assert r.status_code == 400 and "SHA-1 only" in r.json()["error"], r.text


def test_kachery_routes_are_off_without_legacy(tmp_path):
    with ServerProcess(tmp_path / "s", settings()) as server:
        sha1 = new_data()[1]
        assert requests.get(legacy_url(server, "check", sha1), timeout=10).status_code == 404
        assert requests.post(legacy_url(server, "upload", sha1), data=b"x", timeout=10).status_code in (404, 405)
