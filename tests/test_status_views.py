"""The status views' JSON and the rights around them, against a real server (and a real `pairio ui`).

A channel sees only the collections it may read, in every view; a view-only channel cannot write;
the session cookie is had only for a signed request and is taken only by the read-only views, so a
cross-site form post cannot act for a signed-in visitor; no password appears in any answer or log.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import requests
from server_process import RO_PASSWORD, RW_PASSWORD, ServerProcess, signed_request
from status_data import ENTRIES, SHA, VIEW_PASSWORD, populate, record, rw, start_ui, status_settings

from pairio.errors import ConfigurationError
from pairio.server import sessions
from pairio.server.settings import parse_settings


def get_view(server, channel, password, name, **query):
    path = f"/api/v1/status/{name}"
    q = "&".join(f"{k}={v}" for k, v in query.items())
    from pairio.signing import sign_request

    headers = sign_request(channel, password, "GET", path, b"", q)
    return requests.get(server.url + path + (f"?{q}" if q else ""), headers=headers, timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory, pair_backend):
    """A server of the embedded store, then one of PostgreSQL, holding :data:`ENTRIES`."""
    with ServerProcess(tmp_path_factory.mktemp("status-server"), status_settings(**pair_backend)) as s:
        populate(s)
        yield s


def test_every_view_of_a_channel_matches_what_was_stored(server):
    overview = get_view(server, "lab-rw", RW_PASSWORD, "overview").json()
    assert overview["entries"] == 4
    assert overview["bytes"] == sum(r["size"] for _, _, r in ENTRIES)
    assert overview["today"]["misses"] == 4 and overview["today"]["hits"] == 3
    assert overview["week"]["hit_rate"] == pytest.approx(3 / 7)
    assert overview["today"]["seconds_saved"] == pytest.approx(2 * 12.0 + 60.0)
    assert len(overview["chart"]) == 7 * 24 and sum(p["hits"] for p in overview["chart"]) == 3

    steps = get_view(server, "lab-rw", RW_PASSWORD, "steps", by="computed").json()["steps"]
    assert [s["function"] for s in steps] == ["secret.train_model", "steps.sort_units", "steps.detect"]
    detect = steps[2]
    assert (detect["entries"], detect["size"], detect["hits"]) == (2, 4000, 2)
    assert detect["seconds_computed"] == pytest.approx(22.0) and detect["seconds_saved"] == pytest.approx(24.0)
    by_size = get_view(server, "lab-rw", RW_PASSWORD, "steps", by="size").json()["steps"]
    assert [s["function"] for s in by_size] == ["secret.train_model", "steps.detect", "steps.sort_units"]
    by_saved = get_view(server, "lab-rw", RW_PASSWORD, "steps", by="saved").json()["steps"]
    assert by_saved[0]["function"] == "steps.sort_units"

    missed = {m["key"]: m for m in get_view(server, "lab-rw", RW_PASSWORD, "misses").json()["misses"]}
    assert "argument `threshold` differs (5 -> 7)" in missed["b" * 40]["reason"]
    assert missed["b" * 40]["closest"]["key"] == "a" * 40
    assert missed["a" * 40]["closest"] is None  # the first call of its function

    entry = get_view(server, "lab-rw", RW_PASSWORD, "entry", collection="spikes", key="a" * 40).json()
    assert entry["record"]["function"] == "steps.detect" and entry["record"]["hits"] == 2
    assert entry["record"]["channel"] == "lab-rw"
    assert entry["lineage"]["function"] == "steps.detect"
    assert entry["record"]["sha1"] == SHA[0] and entry["fetch"].startswith(f"pairio load sha1://{SHA[0]}")

    leases = get_view(server, "lab-rw", RW_PASSWORD, "leases").json()["leases"]
    assert {(lease["collection"], lease["host"], lease["function"]) for lease in leases} == {
        ("other", "gpu-7", "secret.train_model"), ("spikes", "lab-2", "steps.detect")}
    assert all(lease["age"] >= 0 for lease in leases)

    health = get_view(server, "lab-rw", RW_PASSWORD, "health").json()
    assert health["status"] == "ok" and health["version"]


@pytest.mark.parametrize("channel,password", [("public-ro", RO_PASSWORD), ("viewer", VIEW_PASSWORD)])
def test_a_channel_never_sees_another_channels_collections(server, channel, password):
    texts = [get_view(server, channel, password, name).text for name in ("overview", "steps", "misses", "leases")]
    for text in texts:
        assert "secret" not in text and "d" * 40 not in text and "gpu-7" not in text
    assert json.loads(texts[0])["entries"] == 3
    assert json.loads(texts[0])["today"]["hits"] == 3
    r = get_view(server, channel, password, "entry", collection="other", key="d" * 40)
    assert r.status_code == 404 and "secret" not in r.text
    # Through the page too, with the session cookie of its sign-in.
    cookie = sign_in(server, channel, password)
    for path in ("/", "/steps?by=size", "/misses", "/leases", "/entry?collection=other&key=" + "d" * 40):
        page = requests.get(server.url + path, cookies={sessions.COOKIE: cookie}, timeout=10)
        assert "secret" not in page.text and "gpu-7" not in page.text, path
        assert f"channel {channel}" in page.text


def sign_in(server, channel, password) -> str:
    r = signed_request(server.url, channel, password, "/api/v1/status/session", {})
    assert r.status_code == 200, r.text
    set_cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    return r.cookies[sessions.COOKIE]


def test_a_view_only_channel_cannot_write(server):
    def viewer(path, obj, method="POST"):
        return signed_request(server.url, "viewer", VIEW_PASSWORD, path, obj, method=method)

    assert viewer("/api/v1/get", {"collection": "spikes", "key": "a" * 40}).json()["value"] == SHA[0]
    assert viewer("/api/v1/set", {"collection": "spikes", "key": "9" * 40, "value": "x"}).status_code == 403
    assert viewer("/api/v1/delete", {"collection": "spikes", "key": "a" * 40}).status_code == 403
    assert viewer("/api/v1/set_many", {"collection": "spikes", "pairs": {"a" * 40: None}}).status_code == 403
    assert viewer("/api/v1/lease/acquire", {"collection": "spikes", "key": "9" * 40, "owner": "q" * 20,
                                            "ttl": 60}).status_code == 403
    put = signed_request(server.url, "viewer", VIEW_PASSWORD, f"/api/v1/content/sha1/{'0' * 40}", method="PUT",
                         body=b"x", body_hash="0" * 40)
    assert put.status_code == 403
    assert rw(server, "/api/v1/get", {"collection": "spikes", "key": "a" * 40}).json()["value"] == SHA[0]
    probe = signed_request(server.url, "viewer", VIEW_PASSWORD, "/api/v1/probe", method="GET").json()
    assert probe["collections"] == {"spikes": {"get": True, "set": False}}


def test_a_view_only_channel_that_names_a_write_right_is_refused(tmp_path):
    settings = status_settings()
    settings["channels"][-1]["collections"][0]["maxNumSetsPerMinute"] = 10
    with pytest.raises(ConfigurationError, match=r"channels\[3\]\.collections\[0\]\.maxNumSetsPerMinute.*view only"):
        parse_settings(settings, tmp_path)
    settings = status_settings()
    settings["channels"][-1]["writeContent"] = True
    with pytest.raises(ConfigurationError, match=r"channels\[3\]\.writeContent.*view only"):
        parse_settings(settings, tmp_path)
    settings = status_settings()
    settings["channels"][-1]["view"] = "yes"
    with pytest.raises(ConfigurationError, match=r"channels\[3\]\.view must be true or false"):
        parse_settings(settings, tmp_path)


def test_views_need_a_signature_or_a_session(server):
    for name in ("overview", "steps", "misses", "leases", "health"):
        r = requests.get(f"{server.url}/api/v1/status/{name}", timeout=10)
        assert r.status_code == 401, name
        r = requests.get(f"{server.url}/api/v1/status/{name}", cookies={sessions.COOKIE: "v1.bGFiLXJ3.9999999999.00"},
                         timeout=10)
        assert r.status_code == 401, name
    wrong = get_view(server, "lab-rw", "not-the-password", "overview")
    assert wrong.status_code == 401
    page = requests.get(server.url + "/", timeout=10)
    assert page.status_code == 200 and 'id="signin"' in page.text and "steps.detect" not in page.text
    # An expired session is refused.
    old = sessions.make_token("lab-rw", RW_PASSWORD, now=time.time() - 2 * sessions.SESSION_S)
    r = requests.get(f"{server.url}/api/v1/status/overview", cookies={sessions.COOKIE: old}, timeout=10)
    assert r.status_code == 401
    cookie = sign_in(server, "lab-rw", RW_PASSWORD)
    r = requests.get(f"{server.url}/api/v1/status/overview", cookies={sessions.COOKIE: cookie}, timeout=10)
    assert r.status_code == 200 and r.json()["entries"] == 4


def test_a_cross_site_form_post_is_refused_even_when_signed_in(server):
    cookie = sign_in(server, "lab-rw", RW_PASSWORD)
    form = {"collection": "spikes", "key": "a" * 40}
    for path in ("/api/v1/delete", "/api/v1/set", "/api/v1/set_many", "/api/v1/status/session"):
        r = requests.post(server.url + path, data=form, cookies={sessions.COOKIE: cookie},
                          headers={"Origin": "https://evil.example"}, timeout=10)
        assert r.status_code == 401, (path, r.text)
    assert rw(server, "/api/v1/get", {"collection": "spikes", "key": "a" * 40}).json()["value"] == SHA[0]


def test_no_password_in_any_answer_or_the_log(server):
    cookie = sign_in(server, "lab-rw", RW_PASSWORD)
    texts = [requests.get(server.url + path, cookies={sessions.COOKIE: cookie}, timeout=10).text
             for path in ("/", "/steps", "/misses", "/leases", "/health", f"/entry?collection=spikes&key={'a' * 40}")]
    texts += [get_view(server, "lab-rw", RW_PASSWORD, name).text for name in ("overview", "health")]
    texts += [requests.get(server.url + "/", timeout=10).text, cookie, server.log()]
    for text in texts:
        for password in (RW_PASSWORD, RO_PASSWORD, VIEW_PASSWORD):
            assert password not in text


def test_pages_escape_what_records_hold_and_forbid_outside_resources(server):
    key = "7" * 40
    nasty = record("<script>alert(1)</script>", 10, 1.0, time.time(), x="<img src=x onerror=alert(2)>")
    r = rw(server, "/api/v1/set", {"collection": "spikes", "key": key, "value": SHA[6], "records": {key: nasty}})
    assert r.status_code == 200, r.text
    cookie = sign_in(server, "lab-rw", RW_PASSWORD)
    for path in ("/steps", "/misses", f"/entry?collection=spikes&key={key}"):
        page = requests.get(server.url + path, cookies={sessions.COOKIE: cookie}, timeout=10)
        assert "<script>alert" not in page.text and "<img src=x" not in page.text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text, path
        policy = page.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "unsafe-inline" not in policy
        assert not re.search(r"(src|href)=\"https?://", page.text)
        assert '<meta name="viewport"' in page.text
    rw(server, "/api/v1/delete", {"collection": "spikes", "key": key})


def test_the_status_views_are_in_the_openapi_document(server):
    paths = requests.get(server.url + "/openapi.json", timeout=10).json()["paths"]
    for name in ("overview", "steps", "misses", "entry", "leases", "health", "session"):
        assert f"/api/v1/status/{name}" in paths


def test_pairio_ui_serves_the_local_store_on_loopback_with_a_token(tmp_path, pairio_home):
    import numpy as np

    import pairio as pa

    @pa.cached
    def double(x):
        return np.full(3, 2 * x)

    @pa.cached
    def plus_one(x):
        return x + 1  # an array: its lineage links it to double's entry

    double(1), double(2), double(1)
    plus_one(double(5))
    pa.deferred.drain_all()
    process, url = start_ui(tmp_path, pairio_home, max_size="1GB")
    try:
        assert url.startswith("http://127.0.0.1:")
        base, token = url.split("/?token=")
        assert len(token) >= 32
        assert requests.get(base + "/", timeout=10).status_code == 403
        assert requests.get(base + "/?token=" + "x" * len(token), timeout=10).status_code == 403
        assert requests.get(base + "/api/v1/status/overview", timeout=10).status_code == 403
        def view(name, **query):
            return requests.get(f"{base}/api/v1/status/{name}", params={"token": token, **query}, timeout=10).json()

        overview = view("overview")
        stored = pa.entries()
        assert overview["entries"] == len(stored) == 4 and overview["bytes"] == sum(e.size for e in stored)
        assert overview["limit"] == 10**9 and overview["used"] == pytest.approx(overview["bytes"] / 10**9)
        assert overview["today"]["hits"] == 1 and overview["today"]["misses"] == 4
        missed = {m["key"]: m for m in view("misses")["misses"]}
        second = double.key(2)
        assert "argument `x` differs (1 -> 2)" in missed[second]["reason"]
        plus = plus_one.entries()[0]
        entry = view("entry", collection=plus.collection, key=plus.key)
        assert entry["record"]["sha1"] == plus.sha1 and entry["fetch"] == f"pairio load sha1://{plus.sha1}"
        assert entry["lineage"]["inputs"][0]["function"] == double.name
        session = requests.Session()
        first = session.get(url, timeout=10)  # the token moves into a cookie, out of the address bar
        assert first.status_code == 200 and first.url == base + "/"
        assert "double" in session.get(base + "/steps", timeout=10).text
        assert token not in first.text
    finally:
        process.terminate()
        process.wait(10)


def test_the_local_source_lists_the_directory_stores_leases(tmp_path):
    from pairio.kv import EmbeddedStore
    from pairio.kv.directory import DirectoryLeases
    from pairio.server import status

    leases = DirectoryLeases(tmp_path / "shared")
    leases.acquire_lease("spikes/" + "a" * 40, "owner-1", {"host": "node-3", "pid": 11, "function": "steps.sort"}, 60)
    leases.acquire_lease("other/" + "b" * 40, "owner-2", {"host": "node-4", "pid": 12, "function": "steps.x"}, 60)
    source = status.LocalSource(EmbeddedStore(tmp_path / "db"), lease_directories=[tmp_path / "shared"])
    held = status.leases(source, None)["leases"]
    assert {(lease["collection"], lease["key"], lease["host"], lease["function"]) for lease in held} == {
        ("spikes", "a" * 40, "node-3", "steps.sort"), ("other", "b" * 40, "node-4", "steps.x")}
    assert [lease["host"] for lease in status.leases(source, ["spikes"])["leases"]] == ["node-3"]


def test_a_view_only_channel_is_named_on_the_page_and_steps_refuse_an_unknown_order(server):
    cookie = sign_in(server, "viewer", VIEW_PASSWORD)
    page = requests.get(server.url + "/", cookies={sessions.COOKIE: cookie}, timeout=10)
    assert "channel viewer (view only)" in page.text
    r = get_view(server, "lab-rw", RW_PASSWORD, "steps", by="colour")
    assert r.status_code == 400 and "by must be one of saved, computed, size" in r.json()["error"]
    page = requests.get(server.url + "/steps?by=colour", cookies={sessions.COOKIE: cookie}, timeout=10)
    assert page.status_code == 400 and "by must be one of" in page.text


def test_a_session_token_holds_for_its_channel_and_hour_only():
    passwords = {"lab-rw": RW_PASSWORD, "public-ro": RO_PASSWORD}
    token = sessions.make_token("lab-rw", RW_PASSWORD, now=1000.0)
    assert sessions.check_token(token, passwords, now=1000.0 + sessions.SESSION_S - 1) == "lab-rw"
    assert sessions.check_token(token, passwords, now=1000.0 + sessions.SESSION_S + 1) is None
    version, _, expires, mac = token.split(".")
    other = sessions.make_token("public-ro", RO_PASSWORD, now=1000.0).split(".")[1]
    for forged in (f"{version}.{other}.{expires}.{mac}",  # another channel's name, this MAC
                   f"{version}.{token.split('.')[1]}.{int(expires) + 3600}.{mac}",  # a later expiry
                   sessions.make_token("lab-rw", "a guessed password", now=1000.0), token[:-1], "", "v1..1.x"):
        assert sessions.check_token(forged, passwords, now=1000.0) is None, forged
    assert sessions.check_token(token, {"lab-rw": "a changed password"}, now=1000.0) is None
    assert RW_PASSWORD not in token


def test_the_views_count_at_most_the_newest_max_records(tmp_path, monkeypatch):
    from pairio.kv import EmbeddedStore
    from pairio.lifecycle import records as lifecycle_records
    from pairio.server import status

    store = EmbeddedStore(tmp_path / "db")
    for i in range(3):
        lifecycle_records.add(store, lifecycle_records.Entry(
            "default", f"{i:040x}", "steps.f", f"{i + 1:040x}", [], {"digest": "c"}, "", {}, {}, {}, [], 10, 1.0,
            1000.0 + i, 1000.0 + i, 0, "h", 0.0))
    source = status.LocalSource(store)
    assert status.overview(source, None)["entries"] == 3 and not status.overview(source, None)["capped"]
    monkeypatch.setattr(status, "MAX_RECORDS", 2)
    view = status.overview(source, None)
    assert view["entries"] == 2 and view["capped"] and view["bytes"] == 20
