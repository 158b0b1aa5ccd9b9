"""pairio.Ref: chains of cached steps resolved by content hash, moving only the bytes read.

Two "machines" (each its own database and content directories) share one real server on
loopback; bytes and requests moved are counted by the server's /metrics. Steps are in
ref_steps.py (importable by name, as a Ref's recomputation needs).
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import ref_steps
import requests
from cluster_steps import executions
from server_process import RW_PASSWORD, ServerObjects, ServerProcess, default_settings, free_port

import pairio as pa
from pairio.memo import numeric

TESTS = Path(__file__).parent
N = 400_000  # float64: 3.2 MB loaded, 2.1 MB filtered


@pytest.fixture
def server(tmp_path):
    with ServerProcess(tmp_path / "server", default_settings()) as s:
        yield s


@pytest.fixture
def runs(tmp_path, monkeypatch):
    path = tmp_path / "runs.txt"
    monkeypatch.setenv("PAIRIO_TEST_RUNS", str(path))
    return path


def machine(server, home: Path, **fields) -> dict:
    """One machine's config: its own database (and content) directory, the shared server."""
    return {"url": server.url, "channel": "lab-rw", "password": RW_PASSWORD, "collection": "spikes",
            "database_path": str(home), "get_from": "local_then_remote", "set_to": "local_and_remote", **fields}


def metric(server, name: str) -> float:
    """The sum of a counter of the server's /metrics over its labels (the /metrics route excluded)."""
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and "/metrics" not in line)


def sent(server) -> float:
    return metric(server, "pairio_sent_bytes_total")


def requests_answered(server) -> float:
    return metric(server, "pairio_requests_total")


def test_a_chain_rerun_on_another_machine_through_refs_downloads_only_the_final_result(server, runs, tmp_path):
    with pa.config(**machine(server, tmp_path / "a")):
        expected = ref_steps.summary(ref_steps.filter_rows(ref_steps.load(N)))
    assert sorted(executions(runs)) == ["filter", f"load-{N}", "summary"]
    before, asked = sent(server), requests_answered(server)
    with pa.config(**machine(server, tmp_path / "b")):
        ref = ref_steps.summary.ref(ref_steps.filter_rows.ref(ref_steps.load.ref(N)))
        looked_up = requests_answered(server) - asked
        assert ref.load() == expected
    assert len(executions(runs)) == 3  # three hits on B
    assert looked_up == 3  # one request per step: the pair, the size and the argument digest together
    # Only the float moved (and the answers to the lookups): not the 5 MB of intermediates.
    assert sent(server) - before < 4096
    assert ref.size is not None and ref.function.endswith("summary") and ref.uri == f"sha1://{ref.sha1}"
    assert pickle.loads(pickle.dumps(ref)) == ref
    assert "summary" in repr(ref) and ref.key[:8] in repr(ref)


def test_refs_of_many_calls_are_looked_up_in_one_request(server, runs, tmp_path):
    with pa.config(**machine(server, tmp_path / "a")):
        made = [ref_steps.load.ref(N + 20 + i) for i in range(5)]
    asked = requests_answered(server)
    with pa.config(**machine(server, tmp_path / "b")):
        refs = ref_steps.load.ref_many([(N + 20 + i,) for i in range(5)])
        assert requests_answered(server) - asked == 1
        assert refs == made and [r.size for r in refs] == [m.size for m in made]
        assert ref_steps.load.ref_many([]) == []
        (more,) = ref_steps.load.ref_many([(7,)])  # a miss: computed
        assert executions(runs).count("load-7") == 1 and more.load()[-1] == 6.0


def test_a_ref_and_its_value_give_the_same_key_in_both_directions(server, runs, tmp_path):
    with pa.config(**machine(server, tmp_path / "a")):  # A: values
        a_value = ref_steps.filter_rows(ref_steps.load(N + 1))
        ref_steps.summary(a_value)
    with pa.config(**machine(server, tmp_path / "b")):  # B: Refs, hits of what A computed by values
        ref_steps.summary.ref(ref_steps.filter_rows.ref(ref_steps.load.ref(N + 1)))
    assert sorted(executions(runs)) == ["filter", f"load-{N + 1}", "summary"]
    with pa.config(**machine(server, tmp_path / "c")):  # C: Refs first
        loaded = ref_steps.load.ref(N + 2)
        ref_steps.summary.ref(ref_steps.filter_rows.ref(loaded))
        ref_steps.total.ref({"x": loaded, "y": ref_steps.load.ref(N + 1)})
    with pa.config(**machine(server, tmp_path / "d")):  # D: values, hits of what C computed by Refs
        value = ref_steps.load(N + 2)
        assert ref_steps.summary.key(ref_steps.filter_rows(value)) == ref_steps.summary.key(
            ref_steps.filter_rows.ref(loaded))
        ref_steps.summary(ref_steps.filter_rows(value))
        ref_steps.total({"x": value, "y": ref_steps.load(N + 1)})  # a Ref inside a dict: the value's key
        assert ref_steps.filter_rows.key(value) == ref_steps.filter_rows.key(loaded)
    assert sorted(executions(runs)) == sorted(["filter", f"load-{N + 1}", "summary", "filter", f"load-{N + 2}",
                                               "summary", "total"])


def test_a_ref_argument_is_loaded_once_on_a_miss_and_never_for_a_hit(server, runs, tmp_path):
    with pa.config(**machine(server, tmp_path / "a")):
        loaded = ref_steps.load.ref(N + 3)
    with pa.config(**machine(server, tmp_path / "b")):
        before = sent(server)
        ref_steps.filter_rows.key(loaded)  # keyed without its bytes
        assert sent(server) == before
        out = ref_steps.filter_rows(loaded)  # a miss: the function gets the value
        assert isinstance(out, np.ndarray) and len(out) == len(np.arange(N + 3)[np.arange(N + 3) % 3 != 0])
        assert sent(server) - before >= (N + 3) * 8  # loaded once...
        assert sent(server) - before < 2 * (N + 3) * 8  # ...not twice
    with pa.config(**machine(server, tmp_path / "c")):
        before = sent(server)
        ref_steps.filter_rows.ref(loaded)  # a hit: a key lookup
        assert sent(server) - before < 4096


def test_lost_content_is_recomputed_once_from_its_call(server, runs, tmp_path):
    with pa.config(**machine(server, tmp_path / "a")):
        filtered = ref_steps.filter_rows.ref(ref_steps.load.ref(N + 4))
        sha1 = filtered.sha1
        pa.content_store(pa.get_config()).remove(sha1)
    objects = ServerObjects(server)  # evicted on the server: its object removed from its directory
    assert objects.store.remove(sha1) and not objects.has(sha1)
    assert executions(runs).count("filter") == 1
    moved = pickle.loads(pickle.dumps(filtered))  # as another process gets it: by the function's name
    with pa.config(**machine(server, tmp_path / "b")):
        with pytest.warns(RuntimeWarning, match="computing it again"):
            first = moved.load()
        second = moved.load()
        np.testing.assert_array_equal(first, second)
    assert executions(runs).count("filter") == 2  # once
    assert ServerObjects(server).has(moved.sha1)  # stored again, for the others


def test_lost_content_of_a_step_that_cannot_be_imported_names_the_step_and_key(tmp_path):
    with pa.config(database_path=str(tmp_path / "a")):
        ref = pa.Ref("0" * 40, 10, "no_such_module.step", "default", "1" * 40)
        with pytest.raises(pa.PairioError, match=r"no_such_module\.step.*key 1{40}"):
            ref.load()


def test_a_mutated_value_is_never_keyed_by_its_old_digest(tmp_path, runs):
    with pa.config(database_path=str(tmp_path / "a"), mmap=True):
        ref = ref_steps.load.ref(N + 5)
        value = ref_steps.load(N + 5)  # a hit, memory-mapped and read-only: known by its stored digest
        assert not value.flags.writeable
        assert numeric.frozen_digest(value) == ref.digest  # remembered at the hit, without hashing it
        assert ref_steps.filter_rows.key(value) == ref_steps.filter_rows.key(ref)
        changed = value.copy()
        changed[0] = -1.0
        assert ref_steps.filter_rows.key(changed) != ref_steps.filter_rows.key(ref)
    with pa.config(database_path=str(tmp_path / "a"), mmap=False):
        writable = ref_steps.load(N + 5)
        assert writable.flags.writeable and numeric.frozen_digest(writable) is None
        assert ref_steps.filter_rows.key(writable) == ref_steps.filter_rows.key(ref)
        writable[1] = 7.5  # changed in place: hashed again, never by its old digest
        assert ref_steps.filter_rows.key(writable) != ref_steps.filter_rows.key(ref)
        loaded = ref.load()
        loaded += 1
        assert ref_steps.filter_rows.key(loaded) != ref_steps.filter_rows.key(ref)


def test_provenance_follows_refs(tmp_path, runs):
    with pa.config(database_path=str(tmp_path / "a")):
        loaded = ref_steps.load.ref(N + 6)
        final = ref_steps.summary.ref(ref_steps.filter_rows.ref(loaded))
        tree = ref_steps.summary.provenance(ref_steps.filter_rows.ref(loaded))
        assert pa.why(final.uri) == pa.why(final.key) == tree  # as `pairio why` shows it
    (step,) = tree["inputs"]
    assert step["function"].endswith("filter_rows") and step["argument"] == "a"
    assert step["inputs"][0]["function"].endswith("load") and step["inputs"][0]["key"] == loaded.key


def _configure_worker(config: dict, base: str) -> None:
    import os as _os

    import pairio

    pairio.set_config(**{**config, "database_path": _os.path.join(base, f"worker-{_os.getpid()}")})


def test_refs_travel_through_a_dask_cluster_and_workers_resolve_them_from_the_server(
        server, runs, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    with pa.config(**machine(server, tmp_path / "a")):
        loaded = [ref_steps.load.ref(N + 10 + i) for i in range(2)]
        expected = [ref_steps.summary(ref_steps.filter_rows(ref_steps.load(N + 10 + i))) for i in range(2)]
    assert executions(runs).count("filter") == 2
    before = sent(server)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster, distributed.Client(cluster) as client:
        client.run(_configure_worker, machine(server, tmp_path / "unused"), str(tmp_path / "workers"))
        refs = client.gather(client.map(ref_steps.summary_ref, loaded, pure=False))
    assert [type(r) for r in refs] == [pa.Ref, pa.Ref]
    assert executions(runs).count("filter") == 2 and executions(runs).count("summary") == 2  # hits on workers
    assert sent(server) - before < 16 << 10  # keys only: no array went to the workers
    with pa.config(**machine(server, tmp_path / "b")):
        assert [r.load() for r in refs] == expected


def test_a_result_hashed_only_by_pickling_has_no_digest_and_its_ref_is_keyed_by_its_value(tmp_path, runs):
    with pa.config(database_path=str(tmp_path / "a")):
        ref = ref_steps.make_opaque.ref(3)
        assert ref.digest is None  # not pickled a second time at the miss
        assert ref_steps.unwrap.key(ref) == ref_steps.unwrap.key(ref_steps.make_opaque(3))
        assert ref_steps.unwrap(ref) == 3 and ref_steps.unwrap(ref_steps.make_opaque(3)) == 3
    assert executions(runs).count("unwrap") == 1


def test_a_ref_of_a_bound_method_call(tmp_path):
    class Scaler:
        def __init__(self, k: float) -> None:
            self.k = k

        @pa.cached
        def scale(self, a: np.ndarray) -> np.ndarray:
            return a * self.k

    with pa.config(database_path=str(tmp_path / "a")):
        base = ref_steps.load.ref(10)
        scaled = Scaler(2.0).scale.ref(base)
        np.testing.assert_array_equal(scaled.load(), np.arange(10) * 2.0)
        assert Scaler(2.0).scale.key(base) == Scaler(2.0).scale.key(ref_steps.load(10))


def test_the_pairs_beside_a_result_go_with_it(tmp_path):
    from pairio.kv import local_store
    from pairio.result_keys import argument_key, types_key

    with pa.config(database_path=str(tmp_path / "a")):
        store = local_store(pa.get_config())
        for i, remove in enumerate([lambda: ref_steps.load.forget(N + 30), lambda: ref_steps.load.clear()]):
            ref = ref_steps.load.ref(N + 30)
            side = [argument_key(ref.key), types_key(ref.key)]
            assert store.get_many("default", side).keys() == set(side), i
            assert store.get("default", types_key(ref.key)) == "numpy:ndarray"
            remove()
            assert store.get_many("default", [ref.key, *side]) == {}, i


def test_pairio_sync_sends_every_pair_beside_a_result_so_a_teammate_hits_through_refs(server, runs, tmp_path):
    """The outbox (a server unreachable) and recorded entries (stored with no server): after
    `pairio sync` the server has each result's seconds, argument digest and types, so machine B
    resolves the chain through Refs without moving or hashing the intermediates."""
    from pairio.kv import local_store
    from pairio.result_keys import side_keys

    n = N + 40
    a = machine(server, tmp_path / "a")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the server is unreachable: the result waits in the outbox
        with pa.config(**{**a, "url": f"http://127.0.0.1:{free_port()}"}):
            loaded = ref_steps.load(n)
    # Recorded here only, with no server configured (a configured one would take the outbox in the
    # background of this call's lookup, racing the sync below).
    with pa.config(database_path=a["database_path"], collection="spikes"):
        filtered = ref_steps.filter_rows(loaded)
        expected = ref_steps.summary(filtered)
        keys = [ref_steps.load.key(n), ref_steps.filter_rows.key(loaded), ref_steps.summary.key(filtered)]
    with pa.config(**a):
        report = pa.sync()
        assert report.pushed == 3 and report.outbox_left == 0
        mine = local_store(pa.get_config()).get_many("spikes", [k for key in keys for k in side_keys(key)])
        assert len(mine) == 3 * 2 + 2  # seconds and argument for each, types for the two arrays
    with pa.config(**{**a, "get_from": "remote"}):
        assert pa.get_many(list(mine), collection="spikes") == mine
    assert len(executions(runs)) == 3
    before = sent(server)
    with pa.config(**machine(server, tmp_path / "b")):
        chain = ref_steps.filter_rows.ref(ref_steps.load.ref(n))
        ref = ref_steps.summary.ref(chain)
        explained = ref_steps.summary.explain(chain)
        assert sent(server) - before < 4096  # no intermediate moved, none hashed
        assert ref.key == keys[2] and explained["key"] == keys[2]
        assert ref.load() == expected
    assert len(executions(runs)) == 3  # every step a hit on B
