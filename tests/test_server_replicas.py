"""Replicas: several ``pairio serve`` processes over one PostgreSQL database agree on the
pairs, nonces, rate limits and leases; the client moves between them; ``--workers N``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest
import requests
from server_process import RW_PASSWORD, ServerProcess, default_settings, server_store, signed_request

import pairio as pa
from pairio.kv.remote import RemoteStore
from pairio.signing import sign_request


def settings_on(database: str, **extra) -> dict:
    settings = default_settings(database=database, **extra)
    settings["channels"][0]["collections"].append(
        {"name": "limited", "maxNumGetsPerMinute": 4, "maxNumSetsPerMinute": 1000})
    return settings


@pytest.fixture
def database(postgres_url) -> str:
    return postgres_url


@pytest.fixture
def replicas(tmp_path, database):
    settings = settings_on(database)
    with ServerProcess(tmp_path / "a", settings) as a, ServerProcess(tmp_path / "b", settings) as b:
        yield a, b


def rw(server, path, obj=None, **kw):
    return signed_request(server.url, "lab-rw", RW_PASSWORD, path, obj, **kw)


def test_a_pair_set_through_one_replica_is_read_through_the_other(replicas):
    a, b = replicas
    assert rw(a, "/api/v1/set", {"collection": "spikes", "key": "k", "value": "from-a"}).status_code == 200
    assert rw(b, "/api/v1/get", {"collection": "spikes", "key": "k"}).json() == {"value": "from-a"}
    rw(b, "/api/v1/set_many", {"collection": "spikes", "pairs": {"k": None, "k2": "from-b"}})
    assert rw(a, "/api/v1/get_many", {"collection": "spikes", "keys": ["k", "k2"]}).json() == \
        {"values": {"k2": "from-b"}}


def test_a_request_accepted_by_one_replica_is_a_replay_for_the_other(replicas):
    a, b = replicas
    body = json.dumps({"collection": "spikes", "key": "replayed", "value": "v"}).encode()
    headers = sign_request("lab-rw", RW_PASSWORD, "POST", "/api/v1/set", body)
    assert requests.post(f"{a.url}/api/v1/set", data=body, headers=headers, timeout=10).status_code == 200
    r = requests.post(f"{b.url}/api/v1/set", data=body, headers=headers, timeout=10)
    assert r.status_code == 401 and "replay" in r.json()["error"]


def test_rate_limits_are_shared_by_the_replicas(replicas):
    a, b = replicas
    statuses = [rw(server, "/api/v1/get", {"collection": "limited", "key": "k"}).status_code
                for server in (a, b, a, b)]
    assert statuses == [200] * 4
    # 4 a minute in all: the fifth is refused, whichever replica it reaches
    r = rw(b, "/api/v1/get", {"collection": "limited", "key": "k"})
    assert r.status_code == 429 and "Retry-After" in r.headers
    assert rw(a, "/api/v1/get", {"collection": "limited", "key": "k"}).status_code == 429


def test_a_lease_taken_through_one_replica_holds_on_the_other(replicas):
    a, b = replicas
    one = RemoteStore(a.url, "lab-rw", RW_PASSWORD)
    two = RemoteStore(b.url, "lab-rw", RW_PASSWORD)
    mine = one.acquire_lease("spikes", "slow-key", "ownerone0123456789", 60, {"host": "one"})
    assert mine["held"]
    theirs = two.acquire_lease("spikes", "slow-key", "ownertwo0123456789", 60, {"host": "two"})
    assert not theirs["held"] and theirs["lease"]["info"]["host"] == "one"
    assert one.release_lease("spikes", "slow-key", "ownerone0123456789")
    assert two.acquire_lease("spikes", "slow-key", "ownertwo0123456789", 60, {"host": "two"})["held"]


def test_the_client_moves_to_the_next_replica_when_one_is_killed_mid_batch(replicas):
    a, b = replicas
    store = RemoteStore(f"{a.url},{b.url}", "lab-rw", RW_PASSWORD, retries=2)
    acknowledged: list[dict[str, str]] = []
    errors = []

    def write() -> None:
        try:
            for n in range(150):
                batch = {f"batch{n}-{i}": f"v{n}" for i in range(200)}
                store.set_many("spikes", batch)
                acknowledged.append(batch)
        except Exception as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    # The writer sends batch after batch: the kill lands while one is on its way or being written.
    while len(acknowledged) < 20 and writer.is_alive():
        writer.join(0.005)
    a.process.send_signal(signal.SIGKILL)
    writer.join(120)
    assert errors == [] and len(acknowledged) == 150
    assert store.url == b.url  # it moved on, and stayed
    stored = server_store(b)
    for batch in acknowledged:
        assert stored.get_many("spikes", list(batch)) == batch
    stored.close()


def test_the_client_fails_over_through_the_config_url_list(replicas):
    a, b = replicas
    a.stop()
    pa.set_config(url=[a.url, b.url], channel="lab-rw", password=RW_PASSWORD, collection="spikes",
                  get_from="remote", set_to="remote")
    pa.set("listed", "v")
    assert pa.get("listed") == "v"


def test_workers_serve_one_port_over_a_shared_database(tmp_path, database):
    with ServerProcess(tmp_path / "w", settings_on(database), args=("--workers", "2")) as server:
        store = RemoteStore(server.url, "lab-rw", RW_PASSWORD)
        pairs = {f"w{i}": str(i) for i in range(50)}
        for k, v in pairs.items():
            store.set("spikes", k, v)
        assert store.get_many("spikes", list(pairs)) == pairs
        # Whichever worker answers, the figures are those of all of them.
        text = requests.get(f"{server.url}/metrics", timeout=10).text
        line = next(x for x in text.splitlines()
                    if x.startswith('pairio_requests_total{') and 'route="/api/v1/set"' in x and '"200"' in x)
        assert float(line.split()[-1]) == 50


def test_workers_with_the_embedded_store_are_refused_with_the_reason(tmp_path):
    (tmp_path / "pairio.json").write_text(json.dumps(default_settings()))
    result = subprocess.run([sys.executable, "-m", "pairio", "serve", str(tmp_path), "--workers", "2"],
                            capture_output=True, text=True, timeout=60, env={**os.environ})
    assert result.returncode != 0
    assert "--workers 2 needs a backend the processes share" in result.stderr
    assert '"database"' in result.stderr and "replay" in result.stderr


def test_several_urls_are_checked_and_masked():
    store = RemoteStore(" http://u:pw1@a:1/, https://b:2,http://u:pw1@a:1", "lab-rw", RW_PASSWORD)
    assert store.urls == ["http://u:pw1@a:1", "https://b:2"] and store.url == "http://u:pw1@a:1"
    assert "pw1" not in repr(store)
    with pytest.raises(pa.ConfigurationError, match="ftp://c"):
        RemoteStore("http://a:1,ftp://c", "lab-rw", RW_PASSWORD)
    assert pa.Config(url=["http://a:1/", "http://b:2"]).url == "http://a:1,http://b:2"
    assert "pw" not in repr(pa.Config(url="http://a:1,http://u:pw@b:2"))
