"""What a miss spares: the second look for a result (after the key's lock is taken) reads the bare
pair, and the full lookup runs only if one is there; a result stored meanwhile by another writer
is still found and not computed again."""

from __future__ import annotations

import threading
import time

import pytest

import pairio as pa
from pairio.config import get_config
from pairio.content import content_store
from pairio.kv import EmbeddedStore
from pairio.memo import decorator, flight
from pairio.memo.values import store_result
from pairio.result_keys import seconds_key

RUNS: list[int] = []


def doubled(x):
    RUNS.append(x)
    return 2 * x


def _offset():
    return 1


def offset_step(x, label="a"):
    return x + _offset()


@pytest.fixture
def lookups(monkeypatch):
    """The full lookups of cached calls from now on (the real ones, counted)."""
    seen = []
    real = decorator.CachedFunction._lookup

    def counted(self, cfg, key, *args, **kwargs):
        seen.append(key)
        return real(self, cfg, key, *args, **kwargs)

    monkeypatch.setattr(decorator.CachedFunction, "_lookup", counted)
    return seen


def test_a_miss_looks_its_result_up_in_full_once(lookups):
    RUNS.clear()
    step = pa.cached(doubled)
    assert step(3) == 6 and RUNS == [3]
    assert lookups == [step.key(3)]  # the look under the lock read the bare pair: none
    assert step(3) == 6 and RUNS == [3] and len(lookups) == 2  # a hit


def test_a_result_stored_by_another_writer_between_the_lookup_and_the_lock_is_found(lookups, monkeypatch):
    RUNS.clear()
    step = pa.cached(doubled)
    key = step.key(5)
    real_claim = flight.claim

    def claim_after_another_writer(database_dir, claimed, *args, **kwargs):
        # Another process (its own connection to the store) stores the result now.
        cfg = get_config()
        other = EmbeddedStore(cfg.database_dir)
        sha1 = store_result(content_store(cfg), 10)
        other.set_many(cfg.collection, {claimed: sha1, seconds_key(claimed): "1"})
        other.close()
        return real_claim(database_dir, claimed, *args, **kwargs)

    monkeypatch.setattr(flight, "claim", claim_after_another_writer)
    assert step(5) == 10
    assert RUNS == []  # found under the lock, not computed
    assert lookups == [key, key]


def test_a_holder_is_listed_with_its_names_as_given_however_they_must_be_escaped(tmp_path):
    from pairio.key_lock_files import holders

    key = "ab" * 20
    with flight.claim(tmp_path, key, 'mod.step "quoted" é\\', collection="c\u0000\n"):
        (held,) = holders(tmp_path)
    assert (held["key"], held["function"], held["collection"]) == (key, 'mod.step "quoted" é\\', "c\u0000\n")


def test_a_small_result_is_stored_inline_as_the_inline_writer_stores_it():
    store = content_store(get_config())
    sha1 = store.put_inline(b"small result")
    assert store.small.get(sha1) == b"small result" and not store.object_path(sha1).exists()
    with store.writer(durable=False, inline=True) as w:
        w.write(b"small result")
    assert w.sha1 == sha1
    # Stored before as a file: kept as it is (no row beside it).
    as_file = store.put_bytes(b"kept as a file")
    assert store.put_inline(b"kept as a file") == as_file
    assert store.small.info(as_file) is None and store.object_path(as_file).is_file()
    # Too large for a row: a file.
    large = b"x" * (store.inline_max + 1)
    big = store.put_inline(large)
    assert store.object_path(big).read_bytes() == large and store.small.info(big) is None


def test_the_record_made_after_a_miss_of_plain_arguments_is_that_of_the_call_as_it_was(monkeypatch):
    from pairio import deferred

    step = pa.cached(offset_step)
    before = step.explain(4)
    assert step(4) == 5
    monkeypatch.setitem(globals(), "_offset", lambda: 2)  # the helper replaced before the record is written
    deferred.drain_all()
    (entry,) = step.entries()
    assert entry.key == before["key"] and entry.code["digest"] == before["code"]["digest"]
    assert entry.arguments == before["arguments"] and entry.summary == {"x": "4", "label": "'a'"}
    assert entry.inputs == [] and entry.hits == 0
    assert step(4) == 6 and len(step.entries()) == 2  # the new code: a new key


@pytest.mark.skipif(not flight._USE_RANGES, reason="byte-range locks of one file: Linux only")
def test_a_key_lock_through_a_threads_kept_descriptor_excludes_other_threads_and_a_removed_file(tmp_path):
    import threading

    from pairio.key_lock_files import key_is_locked

    key = "cd" * 20
    ranges = tmp_path / "locks" / "keys.ranges"
    outcome = []

    def other_thread_tries():
        lock = flight._lock(tmp_path, key, kept=True)
        outcome.append(lock.try_acquire())
        if outcome[-1]:
            lock.release()

    for _ in range(2):  # the second claim goes through the descriptor kept by the first
        with flight.claim(tmp_path, key, "step"):
            assert key_is_locked(tmp_path, key)
            thread = threading.Thread(target=other_thread_tries)
            thread.start()
            thread.join()
            assert outcome[-1] is False
        assert not key_is_locked(tmp_path, key)
    other_thread_tries()
    assert outcome[-1] is True
    ranges.unlink()  # removed (by hand) between claims: the next one locks the file made in its place
    with flight.claim(tmp_path, key, "step"):
        assert ranges.exists() and key_is_locked(tmp_path, key)
    assert not key_is_locked(tmp_path, key)


@pytest.mark.skipif(not flight._USE_RANGES, reason="byte-range locks of one file: Linux only")
def test_a_forked_child_does_not_share_its_parents_kept_key_locks(tmp_path):
    import os

    key = "ef" * 20
    with flight.claim(tmp_path, key, "step"):  # the parent holds it, through its kept descriptor
        pid = os.fork()
        if pid == 0:  # the child: the key is the parent's, not its own
            code = 1
            try:
                code = 0 if flight._lock(tmp_path, key, kept=True).try_acquire() is False else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def quickly_doubled(x):
    return 2 * x


def slowly_doubled(x):
    import time

    time.sleep(0.03)  # over the quick limit
    return 2 * x


@pytest.fixture
def claims(monkeypatch):
    """What each cached miss from now on did under its key's lock: (listed as a holder, looked again)."""
    seen = []
    real_claim, real_still = flight.claim, decorator.CachedFunction._still_missing

    def claim(database_dir, key, label, collection="", listed=True):
        seen.append([listed, False])
        return real_claim(database_dir, key, label, collection, listed)

    def still_missing(self, cfg, key):
        seen[-1][1] = True
        return real_still(self, cfg, key)

    monkeypatch.setattr(flight, "claim", claim)
    monkeypatch.setattr(decorator.CachedFunction, "_still_missing", still_missing)
    return seen


def test_a_step_whose_last_computation_was_quick_is_not_listed_nor_looked_up_again(claims, pairio_home):
    from pairio.key_lock_files import holders

    step = pa.cached(quickly_doubled)
    assert step(1) == 2  # its first miss: nothing is known of its time yet
    assert step(2) == 4 and step(3) == 6
    assert claims == [[True, True], [False, False], [False, False]]
    assert holders(pairio_home) == []
    assert step(3) == 6 and len(claims) == 3  # a hit claims nothing


_GATE = threading.Event()


def doubled_unless_held(x):
    if x < 0:
        _GATE.wait(60)  # runs until the test lets it go
    return 2 * x


def test_a_quick_step_that_runs_long_is_listed_in_flight_while_it_runs(claims, pairio_home):
    from pairio.key_lock_files import holders

    step = pa.cached(doubled_unless_held)
    assert step(1) == 2 and step(2) == 4  # quick: its claims are not listed at once
    runner = threading.Thread(target=step, args=(-1,))
    before = time.time()
    runner.start()
    try:
        waited_until = time.monotonic() + 30
        while not holders(pairio_home):  # listed by the background lister once held past 10 ms
            assert time.monotonic() < waited_until, "the long call was never listed in flight"
            time.sleep(0.005)
        (held,) = holders(pairio_home)
        assert held["key"] == step.key(-1) and held["function"] == step.name
        assert before <= held["started"] <= time.time()  # since it took the lock, not since listed
    finally:
        _GATE.set()
        runner.join()
    assert claims[-1] == [False, False] and holders(pairio_home) == []


def test_a_slow_step_stays_listed_in_flight_and_looked_up_again_under_its_lock(claims):
    step = pa.cached(slowly_doubled)
    assert step(1) == 2 and step(2) == 4
    assert claims == [[True, True], [True, True]]


def test_a_quick_step_waiting_for_another_holder_still_finds_its_result(lookups):
    import threading

    RUNS.clear()
    step = pa.cached(doubled)
    assert step(1) == 2  # quick from now on
    key = step.key(7)
    cfg = get_config()
    holding, done = threading.Event(), threading.Event()

    def another_computer():
        # Its own lock (a thread's descriptor locks as another process's does) and its own connection.
        with flight.claim(cfg.database_dir, key, "elsewhere"):
            holding.set()
            done.wait(0.2)  # the step is waiting now, for as long as this holds the lock
            other = EmbeddedStore(cfg.database_dir)
            other.set_many(cfg.collection, {key: store_result(content_store(cfg), 14), seconds_key(key): "1"})
            other.close()

    thread = threading.Thread(target=another_computer)
    thread.start()
    holding.wait()
    try:
        assert step(7) == 14
    finally:
        done.set()
        thread.join()
    assert RUNS == [1]  # found after the wait, not computed
    assert lookups[-2:] == [key, key]


def _scale(x):
    return 10 * x


def _other_scale(x):
    return 100 * x


def scaled_then_swapped(x):
    global _scale
    result = _scale(x)
    _scale = _other_scale  # the next call reads the new helper: a new key
    return result


@pytest.fixture
def scale_restored(monkeypatch):
    """``_scale`` set back after the test to what it is now (:func:`scaled_then_swapped` changes it)."""
    monkeypatch.setitem(globals(), "_scale", _scale)


def test_a_miss_records_the_code_its_key_was_made_of_though_a_helper_changed_while_it_ran(pairio_home, scale_restored):
    from pairio.deferred import drain_all

    step = pa.cached(scaled_then_swapped)
    code = step.explain(1)["code"]["digest"]
    assert step(1) == 10
    drain_all()
    (entry,) = pa.entries()
    assert entry.code["digest"] == code  # not the code with the new helper
    assert step.explain(1)["code"]["digest"] != code and step(1) == 100


def scaled_by_default(x, factor=2):
    return x * factor


def test_a_miss_records_the_defaults_of_its_call_though_they_are_rebound_before_the_record_is_written(
        monkeypatch):
    # The record of a call of immutable arguments is made by the background writer, later: it
    # binds the call with the defaults the function had when it ran.
    step = pa.cached(scaled_by_default)
    assert step(3) == 6
    monkeypatch.setattr(scaled_by_default, "__defaults__", (5,))
    (entry,) = step.entries()
    assert entry.summary == {"x": "3", "factor": "2"}
    assert step(3) == 15 and step.key(3) != entry.key  # the new default counts in the key


def test_a_call_with_a_mutable_default_is_recorded_as_it_ran():
    def total(x, extra=[1]):  # noqa: B006 (the mutable default is the point)
        return x + sum(extra)

    step = pa.cached(total)
    assert step(1) == 2
    total.__defaults__[0].append(10)  # mutated in place after the call
    (entry,) = step.entries()
    assert entry.summary["extra"] == "[1]"


def test_a_pair_set_after_a_hit_of_it_in_this_thread_is_read_with_its_new_value():
    # The one-statement set of a few pairs runs on the connection the thread's hits read through:
    # what that reader keeps of pairs it found must go with the write (no other connection's
    # commit tells it).
    cfg = get_config()
    store = EmbeddedStore(cfg.database_dir)
    content = content_store(cfg)
    first, second = store_result(content, 1), store_result(content, 2)
    key = "ab" * 20
    store.set_many("c", {key: first})
    for _ in range(3):  # found more than once: kept by the reader
        assert store.get_with_object("c", key, content.small)[0] == first
    store.set_many("c", {key: second, seconds_key(key): "1"})
    assert store.get_with_object("c", key, content.small)[0] == second
    assert store.get("c", key) == second
