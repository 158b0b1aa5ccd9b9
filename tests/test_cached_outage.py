"""A cache outage never stops a pipeline: a server that is down or refuses is a remote miss, with one warning."""

from __future__ import annotations

import http.server
import threading
import uuid
import warnings

import pytest
from server_process import RO_PASSWORD, RW_PASSWORD, ServerProcess, default_settings, free_port

import pairio as pa

runs: dict[str, int] = {}


@pa.cached
def step(tag: str, x: int) -> int:
    runs[tag] = runs.get(tag, 0) + 1
    return x + 1


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("server"), default_settings()) as s:
        yield s


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex


def down_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


@pytest.fixture
def failing_server():
    """A server that answers every request with 503."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": "maintenance"}')

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def calls_with_warnings(f, *calls) -> tuple[list, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = [f(*args) for args in calls]
    return results, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("get_from", ["remote", "local_then_remote", "remote_then_local"])
@pytest.mark.parametrize("set_to", ["remote", "local_and_remote"])
def test_a_server_that_is_down_is_a_miss_with_one_warning_and_the_result_is_kept_locally(tag, get_from, set_to):
    url = down_url()
    with pa.config(url=url, channel="lab-rw", password=RW_PASSWORD, get_from=get_from, set_to=set_to):
        results, said = calls_with_warnings(step, (tag, 1), (tag, 2), (tag, 1))
    assert results == [2, 3, 2]
    assert len(said) == 1 and url in said[0] and "unreachable" in said[0] and "locally" in said[0]
    # The results were stored locally: with the server still down, a local read finds them.
    with pa.config(url=url, channel="lab-rw", password=RW_PASSWORD, get_from="local"):
        assert step.is_cached(tag, 1) and step.is_cached(tag, 2)
    if get_from != "remote":
        assert runs[tag] == 2  # the third call was a local hit
    else:
        assert runs[tag] >= 2


def test_remote_then_local_falls_back_to_a_local_hit(tag, server):
    step(tag, 5)  # computed and stored locally only
    with pa.config(url=down_url(), channel="lab-rw", password=RW_PASSWORD, get_from="remote_then_local"):
        results, said = calls_with_warnings(step, (tag, 5))
    assert results == [6] and runs[tag] == 1 and len(said) == 1


def test_a_wrong_password_is_a_miss_with_one_warning_naming_the_server(tag, server):
    with pa.config(url=server.url, channel="lab-rw", password="wrong-password-123", collection="spikes",
                   get_from="local_then_remote", set_to="local_and_remote"):
        results, said = calls_with_warnings(step, (tag, 1), (tag, 2))
    assert results == [2, 3] and runs[tag] == 2
    assert len(said) == 1 and server.url in said[0] and "rejected channel 'lab-rw'" in said[0]


def test_a_failing_server_is_a_miss_with_one_warning(tag, failing_server):
    with pa.config(url=failing_server, channel="lab-rw", password=RW_PASSWORD,
                   get_from="remote", set_to="local_and_remote"):
        results, said = calls_with_warnings(step, (tag, 1))
    assert results == [2] and len(said) == 1
    assert failing_server in said[0] and "HTTP 503" in said[0] and "maintenance" in said[0]


def test_a_read_only_channel_computes_and_warns_once(tag, server):
    with pa.config(url=server.url, channel="public-ro", password=RO_PASSWORD, collection="spikes",
                   get_from="local_then_remote", set_to="local_and_remote"):
        results, said = calls_with_warnings(step, (tag, 1), (tag, 2), (tag, 3))
        assert step(tag, 1) == 2  # kept locally: a hit
    assert results == [2, 3, 4] and runs[tag] == 3
    assert len(said) == 1 and "may not write" in said[0] and "not recorded on the server" in said[0]


@pytest.mark.parametrize("cause", ["down", "password"])
def test_strict_remote_raises_before_computing(tag, server, cause):
    url, password = (down_url(), RW_PASSWORD) if cause == "down" else (server.url, "wrong-password-123")
    expected = pa.ServerUnavailableError if cause == "down" else pa.AuthenticationError
    with pa.config(url=url, channel="lab-rw", password=password, collection="spikes",
                   get_from="local_then_remote", set_to="local_and_remote", strict_remote=True):
        with pytest.raises(expected):
            step(tag, 1)
    assert tag not in runs


def test_strict_remote_is_read_from_the_environment():
    assert pa.Config.from_env({"PAIRIO_STRICT_REMOTE": "true"}).strict_remote is True
    assert pa.Config.from_env({}).strict_remote is False
    with pytest.raises(pa.ConfigurationError, match="PAIRIO_STRICT_REMOTE"):
        pa.Config.from_env({"PAIRIO_STRICT_REMOTE": "maybe"})


def test_set_to_both_says_the_pair_was_stored_locally_but_not_on_the_server():
    url = down_url()
    with pa.config(url=url, channel="lab-rw", password=RW_PASSWORD, set_to="local_and_remote"):
        with pytest.raises(pa.ServerUnavailableError) as raised:
            pa.set("k", "v")
        with pytest.raises(pa.ServerUnavailableError, match="stored in the local store .* but not on the server"):
            pa.set_many({"k2": "v2"})
    message = str(raised.value)
    assert message.startswith("stored in the local store") and "but not on the server" in message and url in message
    assert pa.get("k") == "v" and pa.get("k2") == "v2"


def test_set_to_remote_alone_still_raises_for_pa_set():
    with pa.config(url=down_url(), channel="lab-rw", password=RW_PASSWORD, set_to="remote"):
        with pytest.raises(pa.ServerUnavailableError, match="unreachable"):
            pa.set("k", "v")
    assert pa.get("k") is None
