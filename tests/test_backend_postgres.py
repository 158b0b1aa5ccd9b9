"""What only the PostgreSQL backends do: schema versions, sharing between replicas, errors."""

from __future__ import annotations

import threading

import psycopg
import pytest

import pairio as pa
from pairio.server.backends.postgres import (
    SCHEMA_VERSION,
    PostgresCoordination,
    PostgresDatabase,
    PostgresStore,
    migrate,
)


def test_the_schema_is_created_on_first_use_with_its_version(postgres_url):
    database = PostgresDatabase(postgres_url)
    assert database.schema_version() == SCHEMA_VERSION
    PostgresStore(database).set("c", "k", "v")
    again = PostgresStore(PostgresDatabase(postgres_url))
    assert again.get("c", "k") == "v"
    again.close()
    database.close()


def test_a_newer_pairio_upgrades_an_older_schema_keeping_the_pairs(postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        assert migrate(connection, target=1) == 0
        connection.execute("INSERT INTO pairio_pairs VALUES ('c', 'k', 'kept')")
    database = PostgresDatabase(postgres_url)
    assert PostgresStore(database).get("c", "k") == "kept"
    assert database.schema_version() == SCHEMA_VERSION
    assert PostgresCoordination(database).add_nonce("lab", "n" * 20, 2e9)
    database.close()


def test_schema_4_with_the_index_on_created_is_migrated_without_it_and_keeps_its_records(postgres_url):
    from pairio.server.backends.postgres import PostgresRecords
    from pairio.server.backends.records import ServerRecord

    def record(key: str, created: float) -> ServerRecord:
        return ServerRecord("c", key, "f", "", {}, {}, 10, 1.0, "h", created, "lab")

    with psycopg.connect(postgres_url, autocommit=True) as connection:
        assert migrate(connection, target=4) == 0
        assert connection.execute("SELECT to_regclass('pairio_records_by_created') IS NOT NULL").fetchone()[0]
    old = PostgresDatabase(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as connection:  # a record written at schema 4
        connection.execute("INSERT INTO pairio_records (collection, key, function, code, dependencies, arguments, "
                           "size, seconds, host, created, channel, last_used) VALUES "
                           "('c', 'a', 'f', '', '{}', '{}', 10, 1.0, 'h', 100.0, 'lab', 0)")
    records = PostgresRecords(old)
    records.set_with_records("c", {"b": "w"}, [record("b", 200.0)])
    assert old.schema_version() == SCHEMA_VERSION == 5
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        assert not connection.execute("SELECT to_regclass('pairio_records_by_created') IS NOT NULL").fetchone()[0]
    assert records.get("c", "a") == record("a", 100.0)
    assert [r.key for r in records.records(["c"])] == ["b", "a"]  # newest first, without the index
    old.close()


def test_an_older_pairio_refuses_a_newer_schema_and_changes_nothing(postgres_url):
    first = PostgresStore(postgres_url)
    first.set("c", "k", "v")
    first.close()
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("UPDATE pairio_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(pa.StoreUnavailableError,
                       match=f"schema is version {SCHEMA_VERSION + 1}, newer than this pairio supports"
                             f" \\(version {SCHEMA_VERSION}\\).*[Uu]pgrade this pairio"):
        PostgresStore(postgres_url).get("c", "k")
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        assert connection.execute("SELECT version FROM pairio_schema").fetchone()[0] == SCHEMA_VERSION + 1


def test_replicas_starting_together_create_the_schema_once(postgres_url):
    errors = []

    def start() -> None:
        store = PostgresStore(PostgresDatabase(postgres_url))
        try:
            store.get("c", "k")
        except Exception as exc:  # collected and re-raised in the main thread
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_two_replicas_share_nonces_buckets_and_leases(postgres_url):
    one, two = PostgresCoordination(postgres_url), PostgresCoordination(postgres_url)
    assert one.add_nonce("lab", "nonce-" * 4, 2e9)
    assert not two.add_nonce("lab", "nonce-" * 4, 2e9)
    assert one.take_tokens(("lab", "c", "get"), 10, 6) == 0.0
    assert two.take_tokens(("lab", "c", "get"), 10, 6) > 0.0  # only about 4 are left
    assert one.acquire_lease("key", "owner-1", {"host": "a"}, ttl=60).owner == "owner-1"
    assert two.acquire_lease("key", "owner-2", {"host": "b"}, ttl=60).owner == "owner-1"
    assert [lease.name for lease in two.leases()] == ["key"]
    assert two.release_lease("key", "owner-1")
    assert one.leases() == []
    one.close()
    two.close()


def test_racing_threads_never_take_more_tokens_than_the_bucket_holds(postgres_url):
    # Both replicas' rows sit behind one UPSERT: of 40 racing takes from a bucket of 20,
    # 20 pass at most (plus what refills meanwhile, a token every 3 s here).
    coordinations = [PostgresCoordination(postgres_url) for _ in range(4)]
    granted = []

    def take(coordination) -> None:
        for _ in range(10):
            granted.append(coordination.take_tokens(("lab", "c", "set"), 20, 1) == 0.0)

    threads = [threading.Thread(target=take, args=(c,)) for c in coordinations]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 20 <= sum(granted) <= 22
    for coordination in coordinations:
        coordination.close()


def test_an_unreachable_database_is_a_clear_error_without_the_password():
    store = PostgresStore(PostgresDatabase("postgresql://pairio:s3cret-pw@127.0.0.1:1/pairio",
                                           connect_timeout=2))
    with pytest.raises(pa.StoreUnavailableError, match=r"pairio database postgresql://pairio:\*\*\*@127.0.0.1:1") \
            as info:
        store.get("c", "k")
    assert "s3cret-pw" not in str(info.value)


def test_a_database_that_is_not_a_postgresql_url_is_refused():
    with pytest.raises(pa.ConfigurationError, match="must be a URL starting with postgresql://"):
        PostgresDatabase("mysql://host/db")
