"""Machines sharing one server: a result computed on one is a hit on the others, and each step is
computed once cluster-wide. Real processes, each "machine" with its own database and content
directories, one real server on loopback.

No assertion depends on timing; every wait is bounded so that a bug fails instead of hanging.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import cluster_steps
import pytest
from cluster_steps import executions
from server_process import RW_PASSWORD, ServerProcess, default_settings

import pairio as pa
from pairio.content import ContentStore
from pairio.kv.embedded import EmbeddedStore

TESTS = Path(__file__).parent
WAIT_S = 120.0
LEASE_TTL = 2.0


@pytest.fixture
def server(tmp_path):
    with ServerProcess(tmp_path / "server", default_settings()) as s:
        yield s


@pytest.fixture
def runs(tmp_path, monkeypatch):
    path = tmp_path / "runs.txt"
    monkeypatch.setenv("PAIRIO_TEST_RUNS", str(path))
    return path


def machine(server, home: Path, **fields) -> str:
    """The config of one machine: its own database (and content) directory, the shared server."""
    return json.dumps({"url": server.url, "channel": "lab-rw", "password": RW_PASSWORD, "collection": "spikes",
                       "database_path": str(home), "get_from": "local_then_remote",
                       "set_to": "local_and_remote", "lease_ttl": LEASE_TTL, **fields})


def start(config: str, *args: str, env: dict | None = None, stderr: Path | None = None) -> subprocess.Popen:
    err = open(stderr, "wb") if stderr else subprocess.PIPE  # noqa: SIM115 - the child owns it
    return subprocess.Popen([sys.executable, str(TESTS / "cluster_steps.py"), config, *args],
                            stdout=subprocess.PIPE, stderr=err, env={**os.environ, **(env or {})})


def finish(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=WAIT_S)
    assert process.returncode == 0, (err or b"").decode(errors="replace")[-3000:]
    return json.loads(out)


def run(config: str, *args: str) -> dict:
    return finish(start(config, *args))


def stats(answer: dict, name: str) -> dict:
    return next(v for k, v in answer["stats"].items() if k.endswith(name))


# --- two machines --------------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["small", "big", "paths"])
def test_a_result_computed_on_one_machine_is_a_hit_on_another(server, runs, tmp_path, what):
    args = {"small": ["7"], "big": [], "paths": ["hello", str(tmp_path / "out")]}[what]
    a = run(machine(server, tmp_path / "a"), what, *args)
    # Machine B never sees A's directories: they are gone before it runs.
    shutil.rmtree(tmp_path / "a")
    if what == "paths":
        shutil.rmtree(tmp_path / "out")
    b = run(machine(server, tmp_path / "b"), what, *args)
    assert len(executions(runs)) == 1  # A computed; B did not call the function
    name = {"small": "slow", "big": "big", "paths": "with_paths"}[what]
    assert stats(a, name)["misses"] == 1 and stats(a, name)["bytes_uploaded"] > 0
    b_stats = stats(b, name)
    assert b_stats["hits"] == b_stats["remote_hits"] == 1 and b_stats["misses"] == 0
    assert b_stats["bytes_downloaded"] == stats(a, name)["bytes_uploaded"]
    if what == "paths":
        for field in ("a", "b"):
            assert b["result"][field]["sha1"] == a["result"][field]["sha1"]
            assert b["result"][field]["path"].startswith(str(tmp_path / "b"))  # kept in B's content store
    else:
        assert b["result"] == a["result"]
    # Kept locally: B's next call needs nothing from the server.
    again = run(machine(server, tmp_path / "b"), what, *args)
    assert stats(again, name)["hits"] == 1 and stats(again, name)["bytes_downloaded"] == 0
    assert stats(again, name)["remote_hits"] == 0


def test_a_small_remote_hit_is_one_request(server, runs, tmp_path):
    run(machine(server, tmp_path / "a"), "small", "8")
    before = request_count(server)
    b = run(machine(server, tmp_path / "b"), "small", "8")
    assert stats(b, "slow")["remote_hits"] == 1
    assert request_count(server) - before == 1  # get_many with the content inline


def request_count(server) -> int:
    """Requests the server has answered, from its /metrics."""
    import requests

    text = requests.get(f"{server.url}/metrics", timeout=10).text
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("pairio_requests_total{") and "/metrics" not in line))


# --- one computation per key ---------------------------------------------------------------------


def test_four_processes_on_two_machines_compute_each_of_20_keys_once(server, runs, tmp_path):
    go = tmp_path / "go"
    keys = [str(x) for x in range(20)]
    # All in the same order: every key is asked for by the four at about the same time.
    processes = [start(machine(server, tmp_path / m), "many", *keys, env={"PAIRIO_TEST_GO_FILE": str(go)})
                 for m in ("a", "a", "b", "b")]
    go.write_text("go")
    answers = [finish(p) for p in processes]
    assert Counter(executions(runs)) == {f"slow-{x}": 1 for x in range(20)}
    expected = {x: {"x": x, "square": x * x, "text": "x" * 100} for x in range(20)}
    for answer in answers:
        assert all(r == expected[r["x"]] for r in answer["result"])
    assert sum(stats(a, "slow")["misses"] for a in answers) == 20


def test_a_killed_leaseholder_is_taken_over_by_a_waiter(server, runs, tmp_path):
    started = tmp_path / "started"
    holder = start(machine(server, tmp_path / "a"), "one", "42", env={"PAIRIO_TEST_HANG_FILE": str(started)})
    waiter = None
    try:
        wait_for(started.exists, "the holder to start computing")
        log = tmp_path / "waiter.log"
        waiter = start(machine(server, tmp_path / "b"), "one", "42", stderr=log)
        wait_for(lambda: "waiting for" in log.read_text(), "the waiter to wait for the holder")
        assert f"pid {holder.pid}" in log.read_text()
        killed_at = time.monotonic()
        holder.send_signal(signal.SIGKILL)
        holder.wait(WAIT_S)
        answer = finish(waiter)
        taken_over_in = time.monotonic() - killed_at
    finally:
        for p in (holder, waiter):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert answer["result"]["result"] == {"x": 42, "square": 1764, "text": "x" * 100}
    assert executions(runs) == ["slow-42", "slow-42"]  # the killed one, then the waiter
    assert taken_over_in < LEASE_TTL + 30  # the lease expired; a generous margin for a busy machine
    # Nothing stored twice or torn: the key on the server points to a whole object, the server's
    # content store holds whole objects only, and no partial upload is left anywhere.
    sha1 = EmbeddedStore(server.directory / "store").get("spikes", cluster_steps.slow.key(42))
    content = ContentStore(server.directory / "content")
    assert sha1 is not None and content.verify(sha1)
    assert not content.fsck().corrupt
    assert not [p for p in (server.directory / "content").rglob("*") if p.is_file() and "tmp" in p.name]
    assert ContentStore(tmp_path / "b" / "content").verify(sha1)


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            if condition():
                return
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {WAIT_S:.0f} s waiting for {what}")
        time.sleep(0.02)


# --- a real distributed engine -------------------------------------------------------------------


DASK_CLIENT = """
import json, sys
from distributed import Client
import cluster_steps
address, go, worker = sys.argv[1], sys.argv[2], sys.argv[3]
import os, time
while not os.path.exists(go):
    time.sleep(0.005)
with Client(address) as client:
    # Each client's tasks on its own worker: without the server's leases, each input would be
    # computed on both "machines".
    futures = client.map(cluster_steps.slow, range(40), [0.05] * 40, pure=False, workers=[worker])
    print(json.dumps(client.gather(futures)))
"""


def _configure_worker(config: str, base: str) -> None:
    """On each worker process: its own database and content directories, the shared server."""
    import json as _json
    import os as _os

    import pairio

    fields = _json.loads(config)
    fields["database_path"] = _os.path.join(base, f"worker-{_os.getpid()}")
    pairio.set_config(**fields)


def test_a_dask_cluster_computes_each_input_once(server, runs, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PAIRIO_TEST_RUNS", str(runs))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            client.run(_configure_worker, machine(server, tmp_path / "unused"), str(tmp_path / "workers"))
            workers = sorted(client.scheduler_info()["workers"])
            assert len(workers) == 2 and len(set(client.run(os.getpid).values())) == 2
            go = tmp_path / "go"
            clients = [subprocess.Popen([sys.executable, "-c", DASK_CLIENT, cluster.scheduler_address, str(go), w],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE) for w in workers]
            go.write_text("go")
            results = []
            for c in clients:
                out, err = c.communicate(timeout=WAIT_S)
                assert c.returncode == 0, err.decode(errors="replace")[-3000:]
                results.append(json.loads(out))
    assert Counter(executions(runs)) == {f"slow-{x}": 1 for x in range(40)}
    assert results[0] == results[1] == [{"x": x, "square": x * x, "text": "x" * 100} for x in range(40)]
    assert len(list((tmp_path / "workers").iterdir())) == 2  # two machines' worth of local directories


# --- small results with their pairs --------------------------------------------------------------


def test_get_many_returns_small_objects_inline_when_asked_and_allowed(tmp_path):
    from pairio.content.remote import RemoteContent
    from pairio.kv.remote import RemoteStore

    settings = default_settings()
    settings["channels"][1]["readContent"] = False  # public-ro: pairs only
    with ServerProcess(tmp_path / "server", settings) as server:
        rw = RemoteStore(server.url, "lab-rw", RW_PASSWORD)
        local = ContentStore(tmp_path / "content")
        small, large = b"s" * 100, b"l" * (64 * 1024 + 1)
        uploads = RemoteContent(rw, local)
        sha1s = [local.put_bytes(small), local.put_bytes(large)]
        uploads.upload_missing(sha1s)
        rw.set_many("spikes", {"k-small": sha1s[0], "k-large": sha1s[1], "k-other": "not-a-hash"})
        keys = ["k-small", "k-large", "k-other", "k-absent"]
        values, content = rw.get_many_inline("spikes", keys, 64 * 1024)
        assert values == {"k-small": sha1s[0], "k-large": sha1s[1], "k-other": "not-a-hash"}
        assert content == {sha1s[0]: small}
        assert rw.get_many_inline("spikes", keys, 50)[1] == {}
        assert rw.get_many("spikes", keys) == values  # not asked: no content
        ro = RemoteStore(server.url, "public-ro", "ro-password-0123456789")
        assert ro.get_many_inline("spikes", keys, 64 * 1024) == (values, {})
        for inline in (64 * 1024 + 1, -1, True, "1"):
            with pytest.raises(pa.BadRequestError, match="inline"):
                rw.get_many_inline("spikes", keys, inline)
