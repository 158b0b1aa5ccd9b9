"""One computation per key across clients: the server's lease routes, and ``@pairio.cached`` using them.

Processes and machines are in test_cached_shared.py; here one process plays the other
client through the lease routes themselves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
import warnings

import pytest
from server_process import (
    RO_PASSWORD,
    RW_PASSWORD,
    WO_PASSWORD,
    ServerProcess,
    default_settings,
    signed_request,
)

import pairio as pa
from pairio.content import content_store
from pairio.kv.remote import RemoteStore
from pairio.memo.values import store_result

WAIT_S = 60.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("server"), default_settings()) as s:
        yield s


@pytest.fixture
def rw(server):
    return RemoteStore(server.url, "lab-rw", RW_PASSWORD)


@pytest.fixture
def remote(server):
    pa.set_config(url=server.url, channel="lab-rw", password=RW_PASSWORD, collection="spikes",
                  get_from="local_then_remote", set_to="local_and_remote", lease_ttl=2.0)


def key() -> str:
    return hashlib.sha1(uuid.uuid4().bytes).hexdigest()


def owner() -> str:
    return secrets.token_hex(16)


@pytest.fixture
def pairio_log():
    logger = logging.getLogger("pairio")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {WAIT_S:.0f} s waiting for {what}")
        time.sleep(0.02)


def messages(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records]


# --- the routes ----------------------------------------------------------------------------------


def test_a_lease_is_held_by_one_owner_and_shows_who_holds_it(rw):
    k, mine, theirs = key(), owner(), owner()
    got = rw.acquire_lease("spikes", k, mine, 30, {"host": "h1", "pid": 11, "function": "f"})
    assert got["held"] and got["value"] is None
    other = rw.acquire_lease("spikes", k, theirs, 30, {"host": "h2"})
    assert not other["held"] and other["lease"]["info"] == {"host": "h1", "pid": 11, "function": "f"}
    assert other["lease"]["channel"] == "lab-rw" and other["lease"]["key"] == k
    assert mine not in json.dumps(other)  # the owner token is never shown
    assert rw.renew_lease("spikes", k, mine, 30) and not rw.renew_lease("spikes", k, theirs, 30)
    assert not rw.release_lease("spikes", k, theirs)
    assert rw.release_lease("spikes", k, mine)
    assert rw.acquire_lease("spikes", k, theirs, 30, {})["held"]
    rw.release_lease("spikes", k, theirs)


def test_a_lease_is_scoped_by_collection(rw):
    k = key()
    assert rw.acquire_lease("spikes", k, owner(), 30, {})["held"]
    assert rw.acquire_lease("other", k, owner(), 30, {})["held"]


def test_a_key_with_a_value_is_not_leased_and_its_value_is_returned(rw):
    k = key()
    rw.set("spikes", k, "done")
    got = rw.acquire_lease("spikes", k, owner(), 30, {})
    assert got == {"held": False, "value": "done", "lease": None}


def test_an_expired_lease_goes_to_the_next_asker(rw):
    k, first = key(), owner()
    assert rw.acquire_lease("spikes", k, first, 0.5, {})["held"]
    leases = rw.leases()["leases"]
    assert any(lease["key"] == k for lease in leases)
    time.sleep(0.6)  # the lease's own expiry: the behaviour under test, not a race
    assert rw.acquire_lease("spikes", k, owner(), 30, {})["held"]
    assert not rw.renew_lease("spikes", k, first, 30)


def test_leasing_needs_the_right_to_set_and_listing_the_right_to_get(server):
    ro = RemoteStore(server.url, "public-ro", RO_PASSWORD)
    with pytest.raises(pa.PermissionDeniedError, match="may not write"):
        ro.acquire_lease("spikes", key(), owner(), 30, {})
    wo = RemoteStore(server.url, "drop-box", WO_PASSWORD)
    k = key()
    assert wo.acquire_lease("spikes", k, owner(), 30, {})["held"]
    assert wo.leases()["leases"] == []  # it may not read the collection: it sees no leases there
    assert any(lease["key"] == k for lease in ro.leases()["leases"])
    with pytest.raises(pa.BadRequestError, match="not available"):
        ro.acquire_lease("other", key(), owner(), 30, {})


@pytest.mark.parametrize("field, value, message", [
    ("owner", "short", "owner"), ("owner", "x" * 65, "owner"), ("owner", "not/alnum-0123456789", "owner"),
    ("ttl", 0.1, "ttl"), ("ttl", 7200, "ttl"), ("ttl", True, "ttl"), ("ttl", "5", "ttl"),
    ("info", [1], "info"), ("info", {"host": {"nested": 1}}, "info.host"), ("info", {"key": "x"}, "info.key"),
    ("info", {"host": "h" * 2000}, "1024 bytes"), ("key", "", "key"),
])
def test_malformed_lease_requests_are_refused_naming_the_field(server, field, value, message):
    body = {"collection": "spikes", "key": key(), "owner": owner(), "ttl": 30, "info": {}, field: value}
    response = signed_request(server.url, "lab-rw", RW_PASSWORD, "/api/v1/lease/acquire", body)
    assert response.status_code == 400 and message in response.json()["error"]
    assert RemoteStore(server.url, "lab-rw", RW_PASSWORD).acquire_lease(
        "spikes", body["key"] or key(), owner(), 30, {})["held"]  # nothing was leased


def test_lease_routes_are_signed(server):
    import requests

    response = requests.post(server.url + "/api/v1/lease/acquire", json={"collection": "spikes"}, timeout=10)
    assert response.status_code == 401
    assert requests.get(server.url + "/api/v1/leases", timeout=10).status_code == 401


def test_pairio_leases_lists_the_held_leases(server, rw):
    k = key()
    rw.acquire_lease("spikes", k, owner(), 60, {"host": "node-7", "pid": 4242, "function": "pipeline.sort"})
    env = {**os.environ, "PAIRIO_URL": server.url, "PAIRIO_CHANNEL": "lab-rw", "PAIRIO_PASSWORD": RW_PASSWORD}
    out = subprocess.run([sys.executable, "-m", "pairio", "leases"], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if k[:8] in line)
    assert "pipeline.sort" in line and "node-7" in line and "4242" in line
    out = subprocess.run([sys.executable, "-m", "pairio", "leases", "--json"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert any(lease["key"] == k for lease in json.loads(out.stdout))


# --- @pairio.cached takes, renews and releases the lease ----------------------------------------


runs: dict[str, int] = {}


@pa.cached(ignore=["gate"])
def slow_square(tag: str, x: int, gate: threading.Event | None = None) -> int:
    runs[tag] = runs.get(tag, 0) + 1
    if gate is not None:
        assert gate.wait(WAIT_S)
    return x * x


@pa.cached(ignore=["fail"])
def failing(tag: str, fail: bool) -> int:
    runs[tag] = runs.get(tag, 0) + 1
    if fail:
        raise ValueError("boom")
    return 1


def held_keys(rw: RemoteStore) -> set[str]:
    return {lease["key"] for lease in rw.leases()["leases"]}


def test_a_computation_holds_the_lease_renews_it_and_releases_it(remote, rw):
    tag = uuid.uuid4().hex
    gate = threading.Event()
    k = slow_square.key(tag, 3)
    with pa.config(lease_ttl=0.6):
        thread = threading.Thread(target=slow_square, args=(tag, 3, gate))
        thread.start()
        try:
            wait_until(lambda: k in held_keys(rw), "the lease to be taken")
            first = next(le for le in rw.leases()["leases"] if le["key"] == k)
            assert first["info"]["pid"] == os.getpid() and first["info"]["function"].endswith("slow_square")
            # Renewed every ttl/3: the lease outlives its first expiry while the body runs.
            wait_until(lambda: next((le["expires_at"] for le in rw.leases()["leases"] if le["key"] == k), 0)
                       > first["expires_at"] + 0.6, "the lease to be renewed past its first expiry")
            assert runs[tag] == 1
        finally:
            gate.set()
            thread.join()
    assert k not in held_keys(rw)
    assert slow_square(tag, 3) == 9 and runs[tag] == 1


def test_the_lease_is_released_when_the_computation_raises(remote, rw):
    tag = uuid.uuid4().hex
    with pytest.raises(ValueError, match="boom"):
        failing(tag, True)
    assert failing.key(tag, True) not in held_keys(rw)
    assert failing(tag, False) == 1 and runs[tag] == 2


def test_a_waiter_logs_whom_it_waits_for_and_takes_over_an_expired_lease(remote, rw, pairio_log):
    tag = uuid.uuid4().hex
    k = slow_square.key(tag, 4)
    # Another client took the lease and died: it never renews.
    rw.acquire_lease("spikes", k, owner(), 1.0, {"host": "node-9", "pid": 777, "function": "other"})
    assert slow_square(tag, 4) == 16 and runs[tag] == 1
    waiting = [m for m in messages(pairio_log) if m.startswith("waiting for")]
    assert waiting and "node-9" in waiting[0] and "pid 777" in waiting[0] and k[:8] in waiting[0]
    assert k not in held_keys(rw)


def test_a_waiter_finds_the_result_the_holder_stored(remote, rw, pairio_log):
    tag = uuid.uuid4().hex
    k = slow_square.key(tag, 5)
    theirs = owner()
    rw.acquire_lease("spikes", k, theirs, 30, {"host": "node-1", "pid": 1})
    result: list[int] = []
    waiter = threading.Thread(target=lambda: result.append(slow_square(tag, 5)))
    waiter.start()
    try:
        wait_until(lambda: any(m.startswith("waiting for") for m in messages(pairio_log)), "the waiter to wait")
        # Play the holder: the result into the content store, the key on the server, the lease given up.
        sha1 = store_result(content_store(pa.get_config()), 25)
        rw.set("spikes", k, sha1)
    finally:
        rw.release_lease("spikes", k, theirs)
        waiter.join(WAIT_S)
    assert result == [25] and tag not in runs


def test_max_wait_lets_a_waiter_give_up_and_compute(remote, rw, pairio_log):
    tag = uuid.uuid4().hex
    k = slow_square.key(tag, 6)
    theirs = owner()
    rw.acquire_lease("spikes", k, theirs, 600, {"host": "stuck-node", "pid": 1})
    try:
        with pa.config(max_wait=0.3):
            assert slow_square(tag, 6) == 36
    finally:
        rw.release_lease("spikes", k, theirs)
    assert runs[tag] == 1
    gave_up = [m for m in messages(pairio_log) if "gave up waiting" in m]
    assert len(gave_up) == 1 and "stuck-node" in gave_up[0] and "max_wait" in gave_up[0]


def test_without_a_server_no_lease_is_asked_for(tmp_path):
    tag = uuid.uuid4().hex
    # A server URL that nothing answers: were a lease asked for, the call would warn.
    with pa.config(url="http://127.0.0.1:9", channel="c", password="p" * 8):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert slow_square(tag, 7) == 49
    assert runs[tag] == 1


@pa.cached
async def async_square(tag: str, x: int) -> int:
    runs[tag] = runs.get(tag, 0) + 1
    return x * x


def test_a_coroutine_waits_for_the_lease_without_blocking_its_event_loop(remote, rw):
    import asyncio

    tag = uuid.uuid4().hex
    k = async_square.key(tag, 9)
    theirs = owner()
    rw.acquire_lease("spikes", k, theirs, 1.0, {"host": "node-2", "pid": 2})  # a holder that dies

    async def both():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        t = asyncio.ensure_future(ticker())
        result = await async_square(tag, 9)
        t.cancel()
        return result, ticks

    result, ticks = asyncio.run(both())
    assert result == 81 and runs[tag] == 1
    assert ticks > 5  # the loop kept running while the call waited for the lease to expire
    assert k not in held_keys(rw)
