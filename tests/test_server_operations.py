"""Operating a server: /metrics in the Prometheus text format, one JSON log line per
request, and a graceful stop on SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from server_process import RW_PASSWORD, ServerProcess, default_settings, server_store, signed_request

from pairio.signing import HEADER_SIGNATURE, sign_request


@pytest.fixture(scope="module")
def server(tmp_path_factory, pair_backend):
    with ServerProcess(tmp_path_factory.mktemp("ops"), default_settings(**pair_backend), log_level="info") as s:
        yield s


def samples(server) -> dict[tuple[str, tuple], float]:
    r = requests.get(f"{server.url}/metrics", timeout=5)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(found, name, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def rw(server, path, obj):
    return signed_request(server.url, "lab-rw", RW_PASSWORD, path, obj)


def test_metrics_count_requests_hits_misses_and_bytes(server):
    before = samples(server)
    rw(server, "/api/v1/set", {"collection": "spikes", "key": "m1", "value": "v"})
    assert rw(server, "/api/v1/get", {"collection": "spikes", "key": "m1"}).json() == {"value": "v"}
    assert rw(server, "/api/v1/get", {"collection": "spikes", "key": "absent"}).json() == {"value": None}
    rw(server, "/api/v1/get_many", {"collection": "spikes", "keys": ["m1", "a1", "a2"]})
    r = signed_request(server.url, "lab-rw", "wrong-password-123", "/api/v1/get",
                       {"collection": "spikes", "key": "m1"})
    assert r.status_code == 401
    after = samples(server)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("pairio_requests_total", route="/api/v1/get", status="200") == 2
    assert grew("pairio_requests_total", route="/api/v1/get", status="401") == 1
    # a refused request is an error, neither a hit nor a miss
    assert grew("pairio_lookups_total", kind="pairs", result="hit") == 2
    assert grew("pairio_lookups_total", kind="pairs", result="miss") == 3
    assert grew("pairio_request_seconds_count", route="/api/v1/get") == 3
    assert grew("pairio_received_bytes_total", route="/api/v1/set") > 0
    assert grew("pairio_sent_bytes_total", route="/api/v1/get") >= len('{"value":"v"}') + len('{"value":null}')
    assert ("pairio_leases_held", ()) in after


def test_one_json_log_line_per_request_without_secrets(server):
    body = json.dumps({"collection": "spikes", "key": f"log-{time.time_ns()}", "value": "v"}).encode()
    headers = sign_request("lab-rw", RW_PASSWORD, "POST", "/api/v1/set", body)
    assert requests.post(f"{server.url}/api/v1/set", data=body, headers=headers, timeout=5).status_code == 200
    signed_request(server.url, "lab-rw", "wrong-password-123", "/api/v1/get", {"collection": "spikes", "key": "k"})
    # The log line is written after the answer is sent: a /metrics request's own line follows it.
    requests.get(f"{server.url}/metrics", timeout=5)
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    sets = [line for line in lines if line["route"] == "/api/v1/set"]
    assert sets and set(sets[-1]) == {"channel", "method", "route", "status", "bytes_in", "bytes_out", "ms"}
    assert sets[-1]["channel"] == "lab-rw" and sets[-1]["status"] == 200 and sets[-1]["bytes_in"] > 0
    refused = [line for line in lines if line["status"] == 401]
    assert refused and refused[-1]["channel"] is None  # an unverified channel name is not logged as the caller
    log = server.log()
    assert RW_PASSWORD not in log and "wrong-password-123" not in log
    assert headers[HEADER_SIGNATURE] not in log


def test_sigterm_finishes_the_request_in_flight_then_exits(tmp_path, pair_backend):
    with ServerProcess(tmp_path / "s", default_settings(**pair_backend)) as server:
        body = json.dumps({"collection": "spikes", "pairs": {f"k{i}": "v" for i in range(100)}}).encode()
        headers = sign_request("lab-rw", RW_PASSWORD, "POST", "/api/v1/set_many", body)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        with socket.create_connection(("127.0.0.1", server.port)) as conn:
            conn.sendall(f"POST /api/v1/set_many HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n{head}\r\n".encode() + body[:10])
            # Wait until the server is inside the request (it counts it in progress).
            while value(samples(server), "pairio_requests_in_progress") < 2:  # this scrape is one
                time.sleep(0.01)
            server.process.send_signal(signal.SIGTERM)
            conn.sendall(body[10:])
            answer = conn.makefile("rb").read()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        # uvicorn re-raises the signal once done: the exit status says it stopped on SIGTERM.
        assert server.process.wait(10) in (0, -signal.SIGTERM)
        stored = server_store(server)
        assert len(stored.get_many("spikes", [f"k{i}" for i in range(100)])) == 100
        stored.close()
