"""The pairs kept beside a cached result (its seconds, argument digest and types): under keys
next to the result's own in key order, so a miss writes one page of the pairs table; and those a
store written by an earlier pairio version keeps under its own keys still read, moved and removed."""

from __future__ import annotations

import logging
import re
import sqlite3

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from server_process import RW_PASSWORD, ServerProcess, default_settings

import pairio as pa
from pairio.kv import local_store
from pairio.lifecycle import eviction
from pairio.result_keys import argument_key, earlier_key, seconds_key, side_keys, types_key

SIDES = (seconds_key, argument_key, types_key)


@pa.cached
def square(x: int) -> int:
    return x * x


@pa.cached
def ramp(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64)


def as_written_before(store, collection: str, key: str) -> dict[str, str]:
    """Move the side pairs of ``key`` where an earlier pairio kept them; returns them there."""
    found = store.get_many(collection, [side(key) for side in SIDES])
    earlier = {earlier_key(side, key): found[side(key)] for side in SIDES if side(key) in found}
    store.set_many(collection, {**dict.fromkeys(side(key) for side in SIDES), **earlier})
    return earlier


@given(st.text("0123456789abcdef", min_size=40, max_size=40))
def test_a_results_side_keys_share_its_first_32_hex_digits_and_no_other_key(key):
    near = [side(key) for side in SIDES]
    assert all(k[:32] == key[:32] and re.fullmatch("[0-9a-f]{40}", k) for k in near)
    everything = [key, *near, *(earlier_key(side, key) for side in SIDES)]
    assert len(set(everything)) == 7
    assert set(side_keys(key)) == set(everything) - {key}


def test_a_miss_writes_its_pair_and_its_side_pairs_side_by_side_in_the_table(tmp_path):
    with pa.config(database_path=str(tmp_path / "db")):
        keys = [ramp.key(n) for n in range(3, 40)]
        for n in range(3, 40):
            ramp(n)
        square(5)
        database = pa.get_config().database_dir / "kv.sqlite3"
    with sqlite3.connect(database) as connection:
        in_order = [k for (k,) in connection.execute("SELECT key FROM pairs WHERE collection = 'default' ORDER BY key")]
    for key in keys:
        rows = [i for i, k in enumerate(in_order) if k[:32] == key[:32]]
        assert len(rows) == 4  # the pair, its seconds, its argument digest and its types
        assert rows == list(range(rows[0], rows[0] + 4))  # one after another: on one page of the b-tree


def test_a_hit_of_a_result_stored_by_an_earlier_version_reads_its_seconds_there(caplog):
    square(41)
    key = square.key(41)
    store = local_store(pa.get_config())
    as_written_before(store, "default", key)
    store.set("default", earlier_key(seconds_key, key), "0.5")  # computing took half a second
    caplog.set_level(logging.INFO, logger="pairio")
    assert square(41) == 1681
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("hit"))
    assert "computed in 0.50s" in line


def test_a_ref_of_a_result_stored_by_an_earlier_version_has_its_size_digest_and_types():
    made = ramp.ref(1000)
    assert made.digest is not None and made.types == "numpy:ndarray"
    earlier = as_written_before(local_store(pa.get_config()), "default", made.key)
    assert len(earlier) == 3
    found = ramp.ref(1000)
    assert (found.sha1, found.size, found.digest, found.types) == (made.sha1, made.size, made.digest, made.types)


def test_forget_clear_and_eviction_remove_the_side_pairs_an_earlier_version_kept():
    store = local_store(pa.get_config())
    for remove in [lambda: ramp.forget(500), lambda: ramp.clear(),
                   lambda: eviction.evict(pa.get_config(), max_size=1)]:
        ramp(500)
        key = ramp.key(500)
        earlier = as_written_before(store, "default", key)
        assert store.get_many("default", list(earlier)) == earlier
        remove()
        assert store.get_many("default", [key, *side_keys(key)]) == {}


def test_a_teammate_hits_a_result_an_earlier_version_stored_on_the_server_with_its_seconds_and_digest(
        tmp_path, caplog):
    with ServerProcess(tmp_path / "server", default_settings()) as server:
        shared = {"url": server.url, "channel": "lab-rw", "password": RW_PASSWORD, "collection": "spikes"}
        with pa.config(**shared, database_path=str(tmp_path / "a"), set_to="local_and_remote"):
            made = ramp.ref(700)
            with pa.config(get_from="remote", set_to="remote"):
                found = pa.get_many([side(made.key) for side in SIDES], "spikes")
                pairs = {side(made.key): None for side in SIDES}
                pairs.update({earlier_key(side, made.key): found[side(made.key)] for side in SIDES})
                pairs[earlier_key(seconds_key, made.key)] = "0.5"
                pa.set_many(pairs, "spikes")
        with pa.config(**shared, database_path=str(tmp_path / "b"), get_from="remote"):
            caplog.set_level(logging.INFO, logger="pairio")
            np.testing.assert_array_equal(ramp(700), np.arange(700, dtype=np.float64))
            line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("hit"))
            assert "computed in 0.50s" in line
            found = ramp.ref(700)
            assert (found.size, found.digest, found.types) == (made.size, made.digest, made.types)


def test_pairio_sync_sends_the_side_pairs_an_earlier_version_kept_so_a_teammate_sees_the_seconds(tmp_path, caplog):
    with ServerProcess(tmp_path / "server", default_settings()) as server:
        shared = {"url": server.url, "channel": "lab-rw", "password": RW_PASSWORD, "collection": "spikes"}
        with pa.config(database_path=str(tmp_path / "a"), collection="spikes"):  # recorded, no server
            np.testing.assert_array_equal(ramp(900), np.arange(900, dtype=np.float64))
            key = ramp.key(900)
            store = local_store(pa.get_config())
            earlier = as_written_before(store, "spikes", key)
            store.set("spikes", earlier_key(seconds_key, key), "0.5")
        with pa.config(**shared, database_path=str(tmp_path / "a"), set_to="local_and_remote"):
            assert pa.sync().pushed == 1
            with pa.config(get_from="remote"):
                sent = pa.get_many(list(earlier), "spikes")
            assert {k: v for k, v in sent.items() if v is not None} == {**earlier, earlier_key(seconds_key, key): "0.5"}
        with pa.config(**shared, database_path=str(tmp_path / "b"), get_from="remote"):
            caplog.set_level(logging.INFO, logger="pairio")
            np.testing.assert_array_equal(ramp(900), np.arange(900, dtype=np.float64))
            line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("hit"))
            assert "computed in 0.50s" in line
