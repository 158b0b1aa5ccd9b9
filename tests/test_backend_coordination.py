"""The coordination contract (nonces, token buckets, upload quotas, leases), run against every backend."""

from __future__ import annotations

import pytest

from pairio.server.backends import Coordination, MemoryCoordination

T0 = 1_800_000_000.0  # a fixed wall-clock time, mid-day UTC is not assumed


@pytest.fixture(params=["memory", "postgresql"])
def coordination(request) -> Coordination:
    if request.param == "memory":
        backend = MemoryCoordination()
    else:
        from pairio.server.backends.postgres import PostgresCoordination

        backend = PostgresCoordination(request.getfixturevalue("postgres_url"))
    yield backend
    backend.close()


@pytest.fixture(params=["memory", "postgresql", "directory"])
def leases(request, tmp_path):
    """What keeps leases: the coordination backends, and the directory store's leases (files)."""
    if request.param == "directory":
        from pairio.kv.directory import DirectoryLeases

        backend = DirectoryLeases(tmp_path / "store")
    elif request.param == "memory":
        backend = MemoryCoordination()
    else:
        from pairio.server.backends.postgres import PostgresCoordination

        backend = PostgresCoordination(request.getfixturevalue("postgres_url"))
    yield backend
    backend.close()


def test_a_nonce_is_accepted_once_per_channel(coordination):
    assert coordination.add_nonce("lab", "n" * 20, T0 + 300, T0)
    assert not coordination.add_nonce("lab", "n" * 20, T0 + 300, T0 + 1)
    assert coordination.add_nonce("other", "n" * 20, T0 + 300, T0 + 1)


def test_tokens_are_taken_until_the_bucket_is_empty(coordination):
    bucket = ("lab", "spikes", "get")
    assert coordination.take_tokens(bucket, 60, 59) == 0.0
    assert coordination.take_tokens(bucket, 60, 1) == 0.0
    assert coordination.take_tokens(bucket, 60, 1) > 0.0
    assert coordination.take_tokens(("lab", "spikes", "set"), 60, 1) == 0.0


def test_upload_quota_counts_per_channel_and_day(coordination):
    day_start = (T0 // 86_400) * 86_400
    now = day_start + 100
    assert coordination.add_upload_bytes("lab", 600, 1000, now) == 0.0
    wait = coordination.add_upload_bytes("lab", 500, 1000, now)
    assert wait == pytest.approx(86_400 - 100)
    assert coordination.uploaded_today("lab", now) == 600  # a refused upload counts nothing
    assert coordination.add_upload_bytes("other", 1000, 1000, now) == 0.0
    assert coordination.add_upload_bytes("lab", 1000, 1000, day_start + 86_400) == 0.0
    assert coordination.uploaded_today("lab", day_start + 86_400) == 1000


def test_a_lease_is_held_by_one_owner_until_it_expires(leases):
    mine = leases.acquire_lease("k", "a", {"host": "h1", "pid": 1}, ttl=10, now=T0)
    assert mine.owner == "a" and mine.expires_at == T0 + 10 and mine.info["host"] == "h1"
    theirs = leases.acquire_lease("k", "b", {"host": "h2"}, ttl=10, now=T0 + 5)
    assert theirs.owner == "a"
    assert leases.renew_lease("k", "b", 10, now=T0 + 5) is None
    renewed = leases.renew_lease("k", "a", 10, now=T0 + 5)
    assert renewed.expires_at == T0 + 15 and renewed.acquired_at == T0
    taken = leases.acquire_lease("k", "b", {"host": "h2"}, ttl=10, now=T0 + 16)
    assert taken.owner == "b"
    assert leases.renew_lease("k", "a", 10, now=T0 + 16) is None
    assert not leases.release_lease("k", "a")
    assert leases.release_lease("k", "b")
    assert leases.acquire_lease("k", "c", {}, ttl=10, now=T0 + 17).owner == "c"


def test_leases_lists_only_unexpired_leases_oldest_first(leases):
    leases.acquire_lease("x", "a", {}, ttl=100, now=T0)
    leases.acquire_lease("y", "b", {}, ttl=1, now=T0 + 1)
    leases.acquire_lease("z", "c", {}, ttl=100, now=T0 + 2)
    assert [lease.name for lease in leases.leases(now=T0 + 3)] == ["x", "z"]
