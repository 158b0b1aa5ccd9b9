"""The client (``pa.*`` with a server configured, and RemoteStore) against a real server."""

from __future__ import annotations

import hashlib
import http.server
import json
import multiprocessing
import threading
import time
import types
import uuid

import pytest
from server_process import RO_PASSWORD, RW_PASSWORD, ServerProcess, default_settings, free_port, server_store

import pairio as pa
from pairio.kv import remote as remote_module
from pairio.kv import remote_store
from pairio.kv.embedded import EmbeddedStore
from pairio.kv.remote import RemoteStore


@pytest.fixture(scope="module")
def server(tmp_path_factory, pair_backend):
    with ServerProcess(tmp_path_factory.mktemp("server"), default_settings(**pair_backend)) as s:
        yield s


@pytest.fixture(scope="module")
def stored(server):
    store = server_store(server)
    yield store
    store.close()


@pytest.fixture
def remote(server):
    """Configure the default config for the read-write channel, collection 'spikes'."""
    pa.set_config(url=server.url, channel="lab-rw", password=RW_PASSWORD, collection="spikes",
                  get_from="remote", set_to="remote")


def key() -> str:
    return hashlib.sha1(uuid.uuid4().bytes).hexdigest()


def local(k):
    return pa.get(k, get_from="local")


# --- the modes ---------------------------------------------------------------------------


def test_remote_get_set_delete(remote, stored):
    k = key()
    assert pa.get(k) is None
    pa.set(k, "v")
    assert pa.get(k) == "v" and stored.get("spikes", k) == "v"
    assert local(k) is None
    pa.delete(k)
    assert pa.get(k) is None and stored.get("spikes", k) is None


def test_dict_keys_are_hashed_by_the_client(remote, stored):
    pa.set({"step": "sort", "n": 3}, "result")
    assert stored.get("spikes", pa.key_string({"n": 3, "step": "sort"})) == "result"


def test_configured_from_environment(server, stored, monkeypatch):
    for var, value in {"PAIRIO_URL": server.url, "PAIRIO_CHANNEL": "lab-rw", "PAIRIO_PASSWORD": RW_PASSWORD,
                       "PAIRIO_COLLECTION": "spikes", "PAIRIO_GET_FROM": "remote",
                       "PAIRIO_SET_TO": "remote"}.items():
        monkeypatch.setenv(var, value)
    pa.reset_config()
    k = key()
    pa.set(k, "env")
    assert stored.get("spikes", k) == "env"


def test_local_then_remote_copies_a_remote_hit_locally(remote, stored):
    k = key()
    stored.set("spikes", k, "from-server")
    assert local(k) is None
    assert pa.get(k, get_from="local_then_remote") == "from-server"
    assert local(k) == "from-server"


def test_local_then_remote_prefers_local(remote, stored):
    k = key()
    stored.set("spikes", k, "server")
    pa.set(k, "local", set_to="local")
    assert pa.get(k, get_from="local_then_remote") == "local"


def test_remote_then_local_falls_back_to_local(remote, stored):
    k, both = key(), key()
    pa.set(k, "only-local", set_to="local")
    stored.set("spikes", both, "server")
    pa.set(both, "local", set_to="local")
    assert pa.get(k, get_from="remote_then_local") == "only-local"
    assert pa.get(both, get_from="remote_then_local") == "server"


def test_local_and_remote_writes_both(remote, stored):
    k = key()
    pa.set(k, "both", set_to="local_and_remote")
    assert stored.get("spikes", k) == "both" and local(k) == "both"
    pa.delete(k, set_to="local_and_remote")
    assert stored.get("spikes", k) is None and local(k) is None


def test_get_many_local_then_remote_fills_in_from_the_server(remote, stored):
    a, b, c = key(), key(), key()
    pa.set(a, "A", set_to="local")
    stored.set("spikes", b, "B")
    assert pa.get_many([a, b, c], get_from="local_then_remote") == {a: "A", b: "B", c: None}
    assert local(b) == "B"


def test_batches_use_the_batch_routes(remote, stored, monkeypatch):
    paths = []
    original = RemoteStore._request

    def spy(self, method, path, body):
        paths.append(path)
        return original(self, method, path, body)

    monkeypatch.setattr(RemoteStore, "_request", spy)
    pairs = {key(): str(i) for i in range(500)}
    pa.set_many(pairs)
    assert pa.get_many(pairs) == pairs
    assert paths == ["/api/v1/set_many", "/api/v1/get_many"]


def test_more_than_ten_thousand_pairs_go_in_several_requests(remote, stored):
    pairs = {key(): "v" for _ in range(12_345)}
    pa.set_many(pairs)
    assert len(stored.get_many("spikes", pairs)) == 12_345
    assert pa.get_many(pairs) == pairs


def test_big_bodies_are_split_under_the_servers_limit(remote, stored):
    # 10,000 pairs of escaped 80-character keys and values make a body over 4 MiB.
    pairs = {f"{i:06d}" + "\u00e9" * 74: "\u00e8" * 80 for i in range(10_000)}
    pa.set_many(pairs)
    assert pa.get_many(pairs) == pairs


# --- errors ---------------------------------------------------------------------------------


def test_wrong_password_raises_authentication_error_without_the_password(server, remote):
    with pytest.raises(pa.AuthenticationError) as info:
        pa.get("k", password="not-the-password-123")
    assert server.url in str(info.value) and "not-the-password-123" not in str(info.value)


def test_unknown_channel_raises_authentication_error(server, remote):
    with pytest.raises(pa.AuthenticationError):
        pa.get("k", channel="nobody")


def test_read_only_channel_raises_permission_denied(server, remote, stored):
    k = key()
    with pytest.raises(pa.PermissionDeniedError, match="spikes"):
        pa.set(k, "x", channel="public-ro", password=RO_PASSWORD)
    assert stored.get("spikes", k) is None


def test_unknown_collection_raises_bad_request_naming_it(remote):
    with pytest.raises(pa.BadRequestError, match="elsewhere"):
        pa.get("k", collection="elsewhere")


def test_server_down_raises_instead_of_returning_none():
    url = f"http://127.0.0.1:{free_port()}"
    store = RemoteStore(url, "lab-rw", RW_PASSWORD, retries=2, backoff=0.01)
    with pytest.raises(pa.ServerUnavailableError) as info:
        store.get("spikes", "k")
    assert url in str(info.value) and RW_PASSWORD not in str(info.value)
    assert isinstance(info.value, OSError)


def test_pa_get_with_server_down_raises(monkeypatch):
    pa.set_config(url=f"http://127.0.0.1:{free_port()}", channel="c", password="p" * 8, get_from="remote")
    monkeypatch.setattr(RemoteStore, "_backoff", lambda self, attempt: 0.0)
    with pytest.raises(pa.ServerUnavailableError):
        pa.get("k")


def test_url_without_http_is_a_configuration_error():
    for url in ("localhost:8080", "127.0.0.1:8080", "ftp://127.0.0.1", "http://"):
        with pytest.raises(pa.ConfigurationError, match="http://"):
            RemoteStore(url, "lab-rw", RW_PASSWORD)


def test_channel_that_cannot_travel_in_a_header_is_a_configuration_error():
    for channel in ("\u5b9e\u9a8c", "lab\n", ""):
        with pytest.raises(pa.ConfigurationError, match="ASCII"):
            RemoteStore("http://127.0.0.1:9", channel, RW_PASSWORD)


def test_password_that_cannot_be_encoded_is_a_configuration_error():
    with pytest.raises(pa.ConfigurationError, match="password") as info:
        RemoteStore("http://127.0.0.1:9", "lab-rw", "secret\ud800")
    assert "secret" not in str(info.value)


def test_https_to_an_http_server_says_tls_failed(server):
    url = server.url.replace("http://", "https://")
    with pytest.raises(pa.ServerUnavailableError, match="TLS") as info:
        RemoteStore(url, "lab-rw", RW_PASSWORD, retries=0).get("spikes", "k")
    assert url in str(info.value)


def test_batches_are_halved_until_the_server_accepts_their_size(tmp_path):
    with ServerProcess(tmp_path / "small", default_settings(maxBodyBytes=65536)) as small:
        store = RemoteStore(small.url, "lab-rw", RW_PASSWORD)
        pairs = {key(): "v" * 80 for _ in range(2000)}  # about 250 kB of JSON
        store.set_many("spikes", pairs)
        assert EmbeddedStore(small.directory / "store").get_many("spikes", pairs) == pairs
        assert store.get_many("spikes", pairs) == pairs
        assert store.max_body_bytes < 65536 * 2


def test_password_is_not_in_repr(server):
    store = RemoteStore(server.url, "lab-rw", RW_PASSWORD)
    assert RW_PASSWORD not in repr(store)
    assert RW_PASSWORD not in repr(remote_store(pa.get_config(url=server.url, channel="lab-rw",
                                                              password=RW_PASSWORD)))


def test_missing_configuration_is_a_clear_error():
    with pytest.raises(pa.ConfigurationError, match="url"):
        pa.get("k", get_from="remote")


def test_probe_reports_the_channels_rights(server):
    store = RemoteStore(server.url, "public-ro", RO_PASSWORD)
    assert store.probe()["collections"] == {"spikes": {"get": True, "set": False}}


# --- retries, against a scripted server -------------------------------------------------------


class Scripted:
    """A local HTTP server answering from a list of (status, headers, body), then 200."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the stdlib's name
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests += 1
                status, headers, body = outer.answers.pop(0) if outer.answers else (200, {}, {"value": "ok"})
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted():
    made = []

    def make(*answers):
        made.append(Scripted(answers))
        return made[-1]

    yield make
    for s in made:
        s.close()


def test_5xx_is_retried_then_succeeds(scripted):
    s = scripted((503, {}, {"error": "busy"}), (500, {}, {"error": "oops"}))
    store = RemoteStore(s.url, "c", "p" * 8, retries=3, backoff=0.01)
    assert store.get("spikes", "k") == "ok"
    assert s.requests == 3


def test_5xx_after_all_retries_raises_server_unavailable(scripted):
    s = scripted(*[(503, {}, {"error": "busy"})] * 4)
    store = RemoteStore(s.url, "c", "p" * 8, retries=3, backoff=0.01)
    with pytest.raises(pa.ServerUnavailableError, match="503"):
        store.get("spikes", "k")
    assert s.requests == 4


def test_429_honours_retry_after(scripted):
    s = scripted((429, {"Retry-After": "1"}, {"error": "slow down"}))
    store = RemoteStore(s.url, "c", "p" * 8, retries=2, backoff=0.01)
    start = time.monotonic()
    assert store.get("spikes", "k") == "ok"
    assert time.monotonic() - start >= 1.0 and s.requests == 2


def test_503_honours_retry_after(scripted, monkeypatch):
    waits = []
    monkeypatch.setattr(remote_module, "time", types.SimpleNamespace(sleep=waits.append))
    s = scripted((503, {"Retry-After": "3"}, {"error": "server busy"}))
    store = RemoteStore(s.url, "c", "p" * 8, retries=2, backoff=0.01)
    assert store.get("spikes", "k") == "ok"
    assert waits == [3.0] and s.requests == 2


def test_429_with_a_long_retry_after_raises_at_once(scripted):
    s = scripted((429, {"Retry-After": "60"}, {"error": "slow down"}))
    store = RemoteStore(s.url, "c", "p" * 8, retries=3, backoff=0.01)
    with pytest.raises(pa.RateLimitedError) as info:
        store.get("spikes", "k")
    assert info.value.retry_after == 60 and s.requests == 1


def test_4xx_is_not_retried(scripted):
    s = scripted((400, {}, {"error": "field 'key' is bad"}))
    store = RemoteStore(s.url, "c", "p" * 8, retries=3, backoff=0.01)
    with pytest.raises(pa.BadRequestError, match="field 'key' is bad"):
        store.get("spikes", "k")
    assert s.requests == 1


# --- processes ---------------------------------------------------------------------------------


def _connection_port(store) -> int:
    """The local port of the store's one idle connection to its server."""
    (conn,) = store.origins[store.url]._idle
    return conn.sock.getsockname()[1]


def _child_get(store, k, queue):
    inherited = store._origins is None and store._session is None
    value = store.get("spikes", k)
    queue.put((inherited, value, _connection_port(store)))


def test_a_forked_child_uses_a_fresh_connection_and_the_parent_keeps_its_own(server, stored):
    store = RemoteStore(server.url, "lab-rw", RW_PASSWORD)
    k = key()
    store.set("spikes", k, "parent")
    parent_port = _connection_port(store)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_get, args=(store, k, queue))
    child.start()
    fresh, value, child_port = queue.get(timeout=20)
    child.join(20)
    assert fresh and value == "parent" and child_port != parent_port
    assert store.get("spikes", k) == "parent"
    assert _connection_port(store) == parent_port  # the parent's connection was not disturbed


def test_a_server_answering_without_the_expected_field_is_named_not_a_key_error(scripted):
    s = scripted((200, {}, {"something": "else"}))
    store = RemoteStore(s.url, "c", "p" * 8)
    with pytest.raises(pa.ServerUnavailableError, match="without the field 'value'.*pairio server"):
        store.get("spikes", "k")


def test_a_password_written_into_the_url_stays_out_of_errors_and_repr(monkeypatch):
    monkeypatch.setattr(RemoteStore, "_backoff", lambda self, attempt: 0.0)
    store = RemoteStore(f"http://user:topsecret@127.0.0.1:{free_port()}", "c", "p" * 8, retries=0)
    assert "topsecret" not in repr(store)
    with pytest.raises(pa.ServerUnavailableError) as caught:
        store.get("spikes", "k")
    assert "topsecret" not in str(caught.value) and "***" in str(caught.value)
