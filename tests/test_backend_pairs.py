"""The pairs contract (KeyValueStore), run against every implementation the server can use."""

from __future__ import annotations

import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pairio.kv.base import KeyValueStore
from pairio.kv.directory import DirectoryStore
from pairio.kv.embedded import EmbeddedStore


@pytest.fixture(params=["embedded", "directory", "postgresql"])
def store(request, tmp_path) -> KeyValueStore:
    if request.param == "embedded":
        backend = EmbeddedStore(tmp_path / "store")
    elif request.param == "directory":
        backend = DirectoryStore(tmp_path / "store")
    else:
        from pairio.server.backends.postgres import PostgresStore

        backend = PostgresStore(request.getfixturevalue("postgres_url"))
    yield backend
    backend.close()


def test_an_absent_key_is_none(store):
    assert store.get("c", "k") is None
    assert store.get_many("c", ["k"]) == {}


def test_a_set_is_read_back_and_replaced(store):
    store.set("c", "k", "v1")
    assert store.get("c", "k") == "v1"
    store.set("c", "k", "v2")
    assert store.get("c", "k") == "v2"


def test_collections_are_separate(store):
    store.set("a", "k", "in-a")
    store.set("b", "k", "in-b")
    assert (store.get("a", "k"), store.get("b", "k")) == ("in-a", "in-b")
    store.delete("a", "k")
    assert (store.get("a", "k"), store.get("b", "k")) == (None, "in-b")


def test_deleting_an_absent_key_is_not_an_error(store):
    store.delete("c", "never-set")
    assert store.get("c", "never-set") is None


def test_get_many_returns_only_present_keys_once(store):
    store.set_many("c", {"a": "1", "b": "2"})
    assert store.get_many("c", ["a", "x", "b", "a"]) == {"a": "1", "b": "2"}
    assert store.get_many("c", []) == {}
    assert store.get_many("c", iter(["b"])) == {"b": "2"}


def test_set_many_upserts_and_none_deletes(store):
    store.set_many("c", {"a": "1", "b": "2", "c": "3"})
    store.set_many("c", {"a": "one", "b": None, "d": "4"})
    assert store.get_many("c", ["a", "b", "c", "d"]) == {"a": "one", "c": "3", "d": "4"}
    store.set_many("c", {})


def test_a_batch_of_ten_thousand_pairs_round_trips(store):
    pairs = {f"{i:040x}": f"value-{i}" for i in range(10_000)}
    store.set_many("c", pairs)
    assert store.get_many("c", list(pairs)) == pairs


def test_nul_and_non_ascii_characters_survive(store):
    # PostgreSQL text cannot hold NUL: the backend must still keep such keys and values.
    key, value = "a\x00b\u00e9\U0001f600", "v\x00\u4e2d"
    store.set("coll\x00ection", key, value)
    assert store.get("coll\x00ection", key) == value
    assert store.get("coll", key) is None
    assert store.get_many("coll\x00ection", [key, "a"]) == {key: value}
    store.set_many("coll\x00ection", {key: None})
    assert store.get("coll\x00ection", key) is None


def test_threads_write_and_read_at_once(store):
    errors = []

    def worker(n: int) -> None:
        try:
            for i in range(50):
                store.set("c", f"t{n}-{i}", f"v{i}")
                store.set_many("c", {f"m{n}-{i}": f"w{i}", "shared": f"{n}"})
                assert store.get("c", f"t{n}-{i}") == f"v{i}"
        except Exception as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.get_many("c", [f"m{n}-{i}" for n in range(4) for i in range(50)])) == 200
    assert store.get("c", "shared") in {"0", "1", "2", "3"}


text = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=80)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(text, st.none() | st.text(st.characters(exclude_categories=["Cs"]), max_size=80)),
                max_size=20))
def test_a_sequence_of_batches_agrees_with_a_dict(store, batches):
    collection = "hypothesis"
    model = {k: v for k, v in store.get_many(collection, [k for k, _ in batches]).items()}
    for i in range(0, len(batches), 5):
        batch = dict(batches[i : i + 5])
        store.set_many(collection, batch)
        for k, v in batch.items():
            if v is None:
                model.pop(k, None)
            else:
                model[k] = v
    keys = [k for k, _ in batches]
    assert store.get_many(collection, keys) == {k: model[k] for k in keys if k in model}
    for k in keys:
        assert store.get(collection, k) == model.get(k)
