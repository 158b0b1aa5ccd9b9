"""The records contract (RecordStore), run against every implementation the server can use: the
embedded store's database and PostgreSQL."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from pairio.kv.embedded import EmbeddedStore
from pairio.lifecycle.counts import KEEP_S, hour_of
from pairio.server.backends.records import CountRow, EmbeddedRecords, RecordStore, ServerRecord, miss_counts

NOW = 1_800_000_000.0
HOUR = hour_of(NOW)


@pytest.fixture(params=["embedded", "postgresql"])
def records(request, tmp_path) -> RecordStore:
    if request.param == "embedded":
        backend: RecordStore = EmbeddedRecords(EmbeddedStore(tmp_path / "store"))
    else:
        from pairio.server.backends.postgres import PostgresRecords

        backend = PostgresRecords(request.getfixturevalue("postgres_url"))
    yield backend
    backend.close()


def record(key: str, collection: str = "c", function: str = "steps.clean", size: int = 10,
           seconds: float = 2.0, created: float = NOW) -> ServerRecord:
    return ServerRecord(collection=collection, key=key, function=function, code="d" * 40,
                        dependencies={"numpy": "2.0.1"}, arguments={"x": "int 3"}, size=size, seconds=seconds,
                        host="lab-1", created=created, channel="lab-rw")


def test_a_record_put_is_read_back_with_every_field(records):
    records.put([record("k1")], now=NOW)
    got = records.get("c", "k1")
    assert got == record("k1")
    assert got.dependencies == {"numpy": "2.0.1"} and got.arguments == {"x": "int 3"}
    assert records.get("c", "absent") is None
    assert records.get("other", "k1") is None


def test_a_record_put_again_replaces_it_and_its_hits(records):
    records.put([record("k1", seconds=1.0)], now=NOW)
    records.add_hits({("c", "k1"): 3}, now=NOW)
    records.put([record("k1", seconds=5.0)], now=NOW)
    got = records.get("c", "k1")
    assert (got.seconds, got.hits) == (5.0, 0)


def test_hits_count_on_records_and_in_the_hour_with_seconds_saved(records):
    records.put([record("k1", seconds=2.0), record("k2", function="steps.fit", seconds=10.0)], now=NOW)
    records.add_hits({("c", "k1"): 3, ("c", "k2"): 1, ("c", "no-record"): 5}, now=NOW + 60)
    assert records.get("c", "k1").hits == 3
    assert records.get("c", "k1").last_used == NOW + 60
    rows = {r["function"]: r for r in records.counts(["c"], NOW - 3600)}
    assert rows["steps.clean"]["hits"] == 3 and rows["steps.clean"]["seconds_saved"] == pytest.approx(6.0)
    assert rows["steps.clean"]["misses"] == 1 and rows["steps.clean"]["seconds_computed"] == pytest.approx(2.0)
    assert rows["steps.fit"]["hits"] == 1 and rows["steps.fit"]["seconds_saved"] == pytest.approx(10.0)
    assert all(r["hour"] == HOUR for r in rows.values())
    assert set(rows) == {"steps.clean", "steps.fit"}  # a key without a record counts nowhere


def test_counts_by_collection_and_by_hour_only(records):
    records.put([record("k1"), record("k2", collection="d")], now=NOW)
    records.add_counts([CountRow(HOUR, "c", "", bytes_up=100, bytes_down=7)])
    by_collection = {r["collection"]: r for r in records.counts(["c", "d"], NOW - 10, by="collection")}
    assert by_collection["c"]["misses"] == 1 and by_collection["c"]["bytes_up"] == 100
    assert by_collection["d"]["misses"] == 1 and by_collection["d"]["bytes_down"] == 0
    hourly = records.counts(["c", "d"], NOW - 10, by=None)
    assert hourly == [{"hour": HOUR, "hits": 0, "misses": 2, "seconds_saved": 0.0, "seconds_computed": 4.0,
                       "bytes_up": 100, "bytes_down": 7}]


def test_counts_and_records_are_read_only_for_the_collections_asked(records):
    records.put([record("k1"), record("k2", collection="secret")], now=NOW)
    assert [r.key for r in records.records(["c"])] == ["k1"]
    assert {r["function"] for r in records.counts(["c"], NOW - 10)} == {"steps.clean"}
    assert sum(r["misses"] for r in records.counts(["c"], NOW - 10)) == 1
    assert records.records([]) == [] and records.counts([], NOW - 10) == []


def test_counts_are_kept_in_hours_and_read_between_since_and_until(records):
    records.add_counts([CountRow(HOUR - 7200, "c", "f", hits=1), CountRow(HOUR - 3600, "c", "f", hits=2),
                        CountRow(HOUR, "c", "f", hits=4)])
    assert [r["hits"] for r in records.counts(["c"], HOUR - 3600)] == [2, 4]
    assert [r["hits"] for r in records.counts(["c"], HOUR - 7200, until=HOUR)] == [1, 2]
    assert [r["hour"] for r in records.counts(["c"], HOUR - 7200 + 1800)] == [HOUR - 7200, HOUR - 3600, HOUR]


def test_hours_older_than_ninety_days_are_dropped(records):
    now = time.time()
    old, recent = hour_of(now - KEEP_S - 7200), hour_of(now - KEEP_S + 7200)
    records.add_counts([CountRow(old, "c", "f", hits=1), CountRow(recent, "c", "f", hits=2)])
    assert [r["hits"] for r in records.counts(["c"], 0)] == [2]


@pytest.mark.parametrize("sort", ["created", "size", "seconds", "hits"])
def test_records_are_listed_most_first_by_the_sort(records, sort):
    records.put([record("a", size=30, seconds=1.0, created=NOW - 20), record("b", size=10, seconds=9.0, created=NOW),
                 record("c", size=20, seconds=5.0, created=NOW - 10)], now=NOW)
    records.add_hits({("c", "c"): 5, ("c", "a"): 1}, now=NOW)
    expected = {"created": ["b", "c", "a"], "size": ["a", "c", "b"], "seconds": ["b", "c", "a"],
                "hits": ["c", "a", "b"]}[sort]
    assert [r.key for r in records.records(["c"], sort=sort)] == expected
    assert [r.key for r in records.records(["c"], sort=sort, limit=2)] == expected[:2]


def test_records_are_filtered_by_function_name_tail_or_glob(records):
    records.put([record("a", function="steps.clean"), record("b", function="steps.fit"),
                 record("c", function="other.clean")], now=NOW)
    assert {r.key for r in records.records(["c"], function="clean")} == {"a", "c"}
    assert {r.key for r in records.records(["c"], function="steps.*")} == {"a", "b"}
    assert [r.key for r in records.records(["c"], function="steps.fit")] == ["b"]
    with pytest.raises(ValueError, match="sort must be one of"):
        records.records(["c"], sort="colour")


def test_counts_by_an_unknown_group_is_refused(records):
    from pairio.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="by must be one of function, collection"):
        records.counts(["c"], 0, by="host")


def test_hits_added_by_four_threads_at_once_are_all_counted(records):
    records.put([record("k1", seconds=1.0)], now=NOW)

    def add() -> None:
        for _ in range(25):
            records.add_hits({("c", "k1"): 1}, now=NOW)
            records.add_counts([CountRow(HOUR, "c", "", bytes_down=1)])

    threads = [threading.Thread(target=add) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert records.get("c", "k1").hits == 100
    rows = {r["function"]: r for r in records.counts(["c"], NOW - 10)}
    assert rows["steps.clean"]["hits"] == 100 and rows[""]["bytes_down"] == 100


def test_non_ascii_collection_names_and_keys_survive(records):
    records.put([record("k\u00e9", collection="coll\u00e9ction")], now=NOW)
    assert records.get("coll\u00e9ction", "k\u00e9").key == "k\u00e9"
    assert records.counts(["coll\u00e9ction"], NOW - 10, by="collection")[0]["collection"] == "coll\u00e9ction"


def test_check_passes_on_a_usable_backend(records):
    records.check()


# --- a set with records: one transaction ---------------------------------------------------------


def pairs_of(records: RecordStore):
    """The pairs store beside ``records`` (the same database), opened directly."""
    if isinstance(records, EmbeddedRecords):
        return records.store
    from pairio.server.backends.postgres import PostgresStore

    return PostgresStore(records.pairs)


def drop_records_table(records: RecordStore) -> None:
    """A real fault: the records' table is gone, so a record cannot be written."""
    if isinstance(records, EmbeddedRecords):
        with records.store.transaction(immediate=True) as connection:
            connection.execute("DROP TABLE server_records")
    else:
        records.database.run(lambda c: c.execute("DROP TABLE pairio_records"))


def test_a_set_with_records_writes_the_pairs_and_the_records_and_the_caller_counts_the_misses(records):
    pairs = pairs_of(records)
    pairs.set("c", "gone", "old")
    written = [record("k1"), record("k2", seconds=3.0)]
    records.set_with_records("c", {"k1": "v1", "k2": "v2", "gone": None}, written)
    assert pairs.get_many("c", ["k1", "k2", "gone"]) == {"k1": "v1", "k2": "v2"}
    assert records.get("c", "k1") == record("k1")
    assert records.get("c", "k2").seconds == 3.0
    assert records.counts(["c"], NOW - 10) == []  # not counted in the set's transaction
    records.add_counts(miss_counts(written, NOW))  # the server's batch (Recorder) does this
    (row,) = records.counts(["c"], NOW - 10)
    assert (row["misses"], row["seconds_computed"]) == (2, pytest.approx(5.0))
    records.set_with_records("c", {"k3": "v3"}, [])  # no records: the pairs alone
    assert pairs.get("c", "k3") == "v3"


def test_a_set_with_records_replaces_the_records_of_keys_set_again(records):
    records.set_with_records("c", {"k1": "v1"}, [record("k1", seconds=1.0)])
    records.add_hits({("c", "k1"): 3}, now=NOW)
    linked = dataclasses.replace(record("k2"), dependencies={"caf\u00e9": "1 \u2192 2"},
                                 inputs=({"argument": "x", "collection": "c", "key": "k1"},
                                         {"argument": "raw", "uri": "sha1://" + "a" * 40}))
    records.set_with_records("c", {"k1": "v2", "k2": "v3"}, [record("k1", seconds=4.0), linked])
    assert pairs_of(records).get_many("c", ["k1", "k2"]) == {"k1": "v2", "k2": "v3"}
    assert (records.get("c", "k1").seconds, records.get("c", "k1").hits) == (4.0, 0)
    assert records.get("c", "k2") == linked


def test_a_set_whose_record_cannot_be_written_sets_nothing(records):
    from pairio import PairioError

    pairs = pairs_of(records)
    pairs.set("c", "k1", "old")
    records.get("c", "k1")  # the tables exist (PostgreSQL makes them on first use)
    drop_records_table(records)
    with pytest.raises(PairioError):
        records.set_with_records("c", {"k1": "new", "k2": "v2"}, [record("k1"), record("k2")])
    assert pairs.get_many("c", ["k1", "k2"]) == {"k1": "old"}  # neither pair without its record


def test_an_embedded_store_made_with_the_index_on_created_opens_without_it_and_keeps_its_records(tmp_path):
    import sqlite3

    from pairio.server.backends import records as server_records

    # A database as pairio made it before version 3 of the records: the index on created, a record.
    (tmp_path / "store").mkdir()
    old = sqlite3.connect(tmp_path / "store" / "kv.sqlite3", isolation_level=None)
    old.execute("CREATE TABLE pairs (collection TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, "
                "PRIMARY KEY (collection, key)) WITHOUT ROWID")
    for step in server_records.MIGRATIONS[:2]:
        for statement in step:
            old.execute(statement)
    old.execute("CREATE TABLE schema_versions (family TEXT PRIMARY KEY, version INTEGER NOT NULL) WITHOUT ROWID")
    old.execute("INSERT INTO schema_versions VALUES ('server_records', 2)")
    old.execute("INSERT INTO pairs VALUES ('c', 'a', 'v')")
    old.execute(f"INSERT INTO server_records ({', '.join(server_records.COLUMNS)}) VALUES "
                f"({', '.join('?' * len(server_records.COLUMNS))})", server_records.record_row(record("a", created=NOW - 5)))
    assert old.execute("SELECT 1 FROM sqlite_master WHERE name = 'server_records_by_created'").fetchone()
    old.close()

    store = EmbeddedStore(tmp_path / "store")
    records = EmbeddedRecords(store)
    assert records.get("c", "a") == record("a", created=NOW - 5)
    records.set_with_records("c", {"b": "w"}, [record("b", created=NOW)])
    assert [r.key for r in records.records(["c"])] == ["b", "a"]  # newest first, without the index
    with store.transaction() as connection:
        assert connection.execute("SELECT version FROM schema_versions WHERE family = 'server_records'"
                                  ).fetchone() == (3,)
        assert connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'server_records_by_created'"
                                  ).fetchone() is None
    assert store.get("c", "a") == "v"
