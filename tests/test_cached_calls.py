"""``@pairio.cached`` in one process: hits, stored results, repairs, modes, controls, logs, stats, a server."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import json
import logging
import os
import pickle
import shutil
import threading
import warnings
from pathlib import Path

import cloudpickle
import pytest
import stored_objects
from server_process import RO_PASSWORD, RW_PASSWORD, ServerProcess, default_settings

import pairio as pa
from pairio.cli import main
from pairio.deferred import drain_all
from pairio.kv.embedded import EmbeddedStore
from pairio.memo import call_stats
from pairio.memo.decorator import seconds_key

# How many times each function body ran. A global of a stdlib type: its state is not part of
# any key, so counting does not change the keys of the functions that count.
runs: collections.Counter[str] = collections.Counter()


@pytest.fixture(autouse=True)
def fresh_counts():
    runs.clear()
    pa.reset_stats()
    yield
    pa.reset_stats()


def _store():
    return pa.content_store(pa.get_config())


def _object_file(sha1: str) -> Path:
    return _store().object_path(sha1)


def _overwrite(path: Path, data: bytes) -> None:
    os.chmod(path, 0o644)  # objects are stored read-only
    path.write_bytes(data)


class MyStr(str):
    pass


@pa.cached
def square(x, offset=0):
    runs["square"] += 1
    return x * x + offset


# --- hits and misses -----------------------------------------------------------------------------


def test_second_call_is_a_hit_and_the_body_runs_once():
    assert square(3) == 9
    assert square(3) == 9
    assert runs["square"] == 1


def test_positional_keyword_and_default_spellings_are_one_call():
    square(3)
    assert square(x=3) == square(3, 0) == square(3, offset=0) == 9
    assert runs["square"] == 1
    assert square.key(3) == square.key(x=3) == square.key(3, offset=0)


def test_different_arguments_are_different_calls():
    assert [square(2), square(3), square(3, offset=1), square(2)] == [4, 9, 10, 4]
    assert runs["square"] == 3
    assert len({square.key(2), square.key(3), square.key(3, 1)}) == 3


@pytest.mark.parametrize(("a", "b"), [(3, "abc"), (True, "abc"), (3.0, "abc"), (-(2**70), ""), ("abc", "abc"),
                                    (None, "x\ud800"), ([1, "a"], (2.5,)), (MyStr("s"), "s")])
def test_a_call_by_position_has_the_key_of_the_call_by_name(a, b):
    # Every argument given by position, the commonest call, is bound and hashed on a path of its own.
    @pa.cached
    def pair(a, b):
        return a, b

    first = pair.key(a, b)
    assert pair.key(a, b) == first  # again: a str's hash is remembered by now
    assert first == pair.key(a=a, b=b) == pair.key(b=b, a=a) == pair.explain(a, b)["key"]


def test_a_missing_argument_is_the_functions_own_type_error():
    with pytest.raises(TypeError):
        square()
    assert runs["square"] == 0


# --- what is stored ------------------------------------------------------------------------------


def test_the_key_maps_to_the_sha1_of_the_pickled_result():
    result = square(4, offset=1)
    sha1 = pa.get(square.key(4, offset=1))
    assert sha1 is not None and len(sha1) == 40
    assert stored_objects.is_row(_store(), sha1)  # a small result: a row, no file to create
    data = stored_objects.raw_bytes(_store(), sha1)
    assert hashlib.sha1(data).hexdigest() == sha1
    assert data[:2] == b"\x80\x05"  # pickle protocol 5
    assert pa.load_pickle("sha1://" + sha1) == result == 17


def test_a_structured_result_round_trips_through_load_pickle():
    @pa.cached
    def table(n):
        return {"n": n, "rows": [(i, str(i)) for i in range(n)], "ok": True}

    expected = table(3)
    assert pa.load_pickle("sha1://" + pa.get(table.key(3))) == expected
    assert table(3) == expected


def test_the_seconds_a_result_took_are_stored_beside_it():
    square(5)
    assert float(pa.get(seconds_key(square.key(5)))) >= 0.0


def test_collection_option_stores_the_pair_in_that_collection():
    @pa.cached(collection="results")
    def double(x):
        return 2 * x

    double(1)
    assert pa.get(double.key(1), collection="results") is not None
    assert pa.get(double.key(1)) is None


# --- Path results --------------------------------------------------------------------------------


def test_a_path_result_comes_back_as_a_path_to_the_stored_content(tmp_path):
    @pa.cached
    def write_report(text):
        runs["write_report"] += 1
        out = tmp_path / "report.txt"
        out.write_text(text)
        return out

    first = write_report("spikes: 12")
    assert first == tmp_path / "report.txt"  # the computed result itself
    first.unlink()  # the stored copy must not depend on the original
    hit = write_report("spikes: 12")
    assert runs["write_report"] == 1
    assert isinstance(hit, Path) and hit != first
    assert hit.read_text() == "spikes: 12"
    assert hit.name == "report.txt"  # named as the function named it
    assert os.path.samefile(hit, _store().path(pa.get_file_hash(hit)))  # a link to the object: no copy


@pytest.mark.parametrize("name", ["report.txt", "data.tar.gz", "no_suffix", "naïve name.csv", ".hidden"])
def test_a_path_result_keeps_its_file_name_and_suffix_on_a_hit(tmp_path, name):
    @pa.cached
    def write(text, name):
        out = tmp_path / "out" / name
        out.parent.mkdir(exist_ok=True)
        out.write_text(text)
        return {"file": out}

    write("x", name)
    (tmp_path / "out" / name).unlink()
    hit = write("x", name)["file"]
    assert hit.name == name and hit.suffixes == Path(name).suffixes
    assert hit.read_text() == "x"
    assert hit.stat().st_mode & 0o222 == 0  # read-only, like the stored object
    assert str(hit).startswith(str(_store().directory))


def test_files_with_one_content_keep_their_own_names(tmp_path):
    @pa.cached
    def two():
        a, b = tmp_path / "a.csv", tmp_path / "b.json"
        a.write_text("same")
        b.write_text("same")
        return a, b

    two()
    a, b = two()
    assert (a.name, b.name) == ("a.csv", "b.json") and a.read_text() == b.read_text() == "same"


def test_restore_paths_writes_the_files_back_where_the_function_wrote_them(tmp_path):
    @pa.cached(restore_paths=True)
    def render(n):
        runs["render"] += 1
        out = tmp_path / "figures" / f"fig{n}.png"
        out.parent.mkdir(exist_ok=True)
        out.write_bytes(b"png" * n)
        return {"figure": out, "n": n}

    first = render(3)
    shutil.rmtree(tmp_path / "figures")
    hit = render(3)
    assert runs["render"] == 1
    assert hit == first and hit["figure"] == tmp_path / "figures" / "fig3.png"
    assert hit["figure"].read_bytes() == b"png" * 3
    hit["figure"].write_bytes(b"edited")  # a writable copy of the user's, not the store's object
    assert render(3)["figure"].read_bytes() == b"png" * 3  # written back again: the result is what was computed
    before = os.stat(hit["figure"])
    render(3)
    assert os.stat(hit["figure"]).st_ino == before.st_ino  # already right: left alone
    assert runs["render"] == 1


def test_restore_paths_follows_a_relative_path_from_the_working_directory(tmp_path, monkeypatch):
    @pa.cached(restore_paths=True)
    def save():
        out = Path("results") / "table.csv"
        out.parent.mkdir(exist_ok=True)
        out.write_text("a,b\n")
        return out

    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    monkeypatch.chdir(tmp_path / "first")
    assert save() == Path("results/table.csv")
    monkeypatch.chdir(tmp_path / "second")
    assert save() == Path("results/table.csv")
    assert (tmp_path / "second" / "results" / "table.csv").read_text() == "a,b\n"


def test_paths_anywhere_in_the_result_are_stored_by_content(tmp_path):
    @dataclasses.dataclass
    class Outputs:
        figure: Path
        note: str

    @pa.cached
    def run(n):
        files = []
        for i in range(n):
            p = tmp_path / f"part{i}.bin"
            p.write_bytes(bytes([i]) * 100)
            files.append(p)
        return {"parts": files, "summary": Outputs(files[0], "first"), "pair": (files[-1], n)}

    run(3)
    for p in tmp_path.glob("part*.bin"):
        p.unlink()
    hit = run(3)
    assert [p.read_bytes() for p in hit["parts"]] == [bytes([i]) * 100 for i in range(3)]
    assert hit["summary"].figure.read_bytes() == bytes([0]) * 100 and hit["summary"].note == "first"
    assert hit["pair"][0].read_bytes() == bytes([2]) * 100 and hit["pair"][1] == 3
    assert all(str(p).startswith(str(_store().directory)) for p in hit["parts"])


def test_load_pickle_of_a_result_with_paths_gives_the_stored_paths(tmp_path):
    @pa.cached
    def make(name):
        p = tmp_path / name
        p.write_text("content of " + name)
        return [p]

    make("a.txt")
    loaded = pa.load_pickle("sha1://" + pa.get(make.key("a.txt")))
    assert loaded[0].read_text() == "content of a.txt"
    assert loaded[0].name == "a.txt" and os.path.samefile(loaded[0], _store().path(pa.get_file_hash(loaded[0])))


def test_paths_that_name_no_file_are_kept_as_plain_paths(tmp_path):
    @pa.cached
    def where():
        return [tmp_path, tmp_path / "does-not-exist"]

    assert where() == where() == [tmp_path, tmp_path / "does-not-exist"]


# --- damaged results are misses, and are repaired ------------------------------------------------


def test_missing_content_is_recomputed_and_repaired_with_a_warning():
    square(6)
    sha1 = pa.get(square.key(6))
    assert _store().remove(sha1)
    assert not square.is_cached(6)
    with pytest.warns(RuntimeWarning, match="content is missing here"):
        assert square(6) == 36
    assert runs["square"] == 2
    assert square.is_cached(6) and _store().verify(sha1)
    assert square(6) == 36 and runs["square"] == 2


@pytest.mark.parametrize("size", [100, 9 << 20], ids=["small", "large"])
def test_corrupt_content_is_quarantined_recomputed_and_repaired(size):
    @pa.cached
    def blob(n):
        runs["blob"] += 1
        return b"\x07" * n

    blob(size)
    sha1 = pa.get(blob.key(size))
    data = bytearray(stored_objects.raw_bytes(_store(), sha1))
    data[-20] ^= 0xFF  # inside the bytes: the pickle still loads, only the hash tells
    stored_objects.overwrite(_store(), sha1, bytes(data))
    with pytest.warns(RuntimeWarning, match="corrupt"):
        assert blob(size) == b"\x07" * size
    assert runs["blob"] == 2
    assert list(_store().quarantine_dir.iterdir())[0].read_bytes() == bytes(data)
    assert _store().verify(sha1) and blob(size) == b"\x07" * size and runs["blob"] == 2


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_large_result_that_cannot_be_unpickled_is_recomputed(damage):
    @pa.cached
    def blob(n):
        runs["blob"] += 1
        return {"data": b"\x01" * n}

    size = 20 << 20  # even half of it is read through the streaming path
    blob(size)
    path = _object_file(pa.get(blob.key(size)))
    data = path.read_bytes()
    # Either the end goes missing, or the opcodes at the start (before the bytes) are overwritten.
    _overwrite(path, data[: len(data) // 2] if damage == "truncated" else b"\xff" * 64 + data[64:])
    with pytest.warns(RuntimeWarning, match="corrupt"):
        assert blob(size) == {"data": b"\x01" * size}
    assert runs["blob"] == 2 and blob.is_cached(size)


def test_a_large_result_whose_class_name_is_damaged_is_recomputed():
    np = pytest.importorskip("numpy")

    @pa.cached
    def array(n):
        runs["array"] += 1
        return np.zeros(n, dtype=np.uint8)

    size = 9 << 20
    array(size)
    path = _object_file(pa.get(array.key(size)))
    data = path.read_bytes()
    start = data.index(b"numpy")
    # A damaged module name fails as an import, not as an unpickling error.
    _overwrite(path, data[:start] + b"nxmpy" + data[start + 5:])
    with pytest.warns(RuntimeWarning, match="corrupt"):
        assert array(size).shape == (size,)
    assert runs["array"] == 2 and array.is_cached(size)


def test_a_stored_file_of_the_result_gone_missing_is_recomputed(tmp_path):
    @pa.cached
    def export(text):
        runs["export"] += 1
        p = tmp_path / "out.txt"
        p.write_text(text)
        return p

    stored = _store().path(pa.get_file_hash(export("abc")))
    stored.unlink()
    with pytest.warns(RuntimeWarning, match="content is missing here"):
        again = export("abc")
    assert runs["export"] == 2 and again.read_text() == "abc"
    assert export("abc").read_text() == "abc" and runs["export"] == 2


@pytest.mark.parametrize("form", ["row", "file"])
@pytest.mark.parametrize("damage", ["truncated", "extended"])
def test_a_small_result_cut_short_or_extended_is_corrupt(damage, form):
    square(8)
    sha1 = pa.get(square.key(8))
    if form == "file":
        _store().path(sha1)  # written out as a file (a path was asked for): read as one from now on
    assert stored_objects.is_row(_store(), sha1) == (form == "row")
    data = stored_objects.raw_bytes(_store(), sha1)
    stored_objects.overwrite(_store(), sha1, data[:-1] if damage == "truncated" else data + b"\0")
    with pytest.warns(RuntimeWarning, match="corrupt"):
        assert square(8) == 64
    assert runs["square"] == 2


@pytest.mark.parametrize("size", [(64 << 10) - 1, 64 << 10, (64 << 10) + 1])
@pytest.mark.parametrize("damage", [None, "first byte", "last byte"])
def test_a_result_about_the_size_of_the_first_read_is_read_whole_and_checked(size, damage):
    # A load reads 64 KiB before asking the file's size: objects just under, at and over that.
    # Each case its own content: content read intact once is then kept in memory by its hash.
    fill = bytes([[None, "first byte", "last byte"].index(damage) + 1])

    @pa.cached
    def blob(n, fill):
        runs["blob"] += 1
        return fill * n

    n = next(n for n in range(size - 64, size) if len(cloudpickle.dumps(fill * n, protocol=5)) == size)
    blob(n, fill)
    path = _object_file(pa.get(blob.key(n, fill)))
    assert path.stat().st_size == size
    if damage is not None:
        data = bytearray(path.read_bytes())
        data[0 if damage == "first byte" else -1] ^= 0xFF
        _overwrite(path, bytes(data))
        with pytest.warns(RuntimeWarning, match="corrupt"):
            assert blob(n, fill) == fill * n
    else:
        assert blob(n, fill) == fill * n  # read from the file: not yet kept in memory
    assert runs["blob"] == (1 if damage is None else 2)


def test_a_value_that_is_not_a_sha1_is_recomputed_with_a_warning():
    pa.set(square.key(7), "not a hash")
    with pytest.warns(RuntimeWarning, match="not a SHA-1"):
        assert square(7) == 49
    assert runs["square"] == 1 and square.is_cached(7)


# --- exceptions ----------------------------------------------------------------------------------


def test_exceptions_propagate_and_are_not_cached():
    @pa.cached
    def flaky(x):
        runs["flaky"] += 1
        if runs["flaky"] == 1:
            raise ValueError("first attempt fails")
        return x

    with pytest.raises(ValueError, match="first attempt fails"):
        flaky(1)
    assert pa.get(flaky.key(1)) is None and not flaky.is_cached(1)
    assert flaky(1) == 1  # computed again, not a cached failure
    assert flaky(1) == 1
    assert runs["flaky"] == 2


def test_an_exception_releases_the_claim_on_the_key():
    @pa.cached
    def fails():
        runs["fails"] += 1
        raise KeyError("nope")

    for _ in range(3):  # each call takes the key's lock again: it was released
        with pytest.raises(KeyError):
            fails()
    assert runs["fails"] == 3
    assert pa.stats().get(fails.name) is None  # a failed call is neither a hit nor a miss


def test_a_result_that_cannot_be_pickled_raises_with_strict_and_stores_nothing():
    @pa.cached(strict=True)
    def opens():
        return {"lock": threading.Lock()}

    with pytest.raises(pa.UnstorableResultError, match="result of .*opens.* cannot be pickled"):
        opens()
    assert pa.get(opens.key()) is None
    assert list(_store().iter_objects()) == []
    assert not _store().temp_dir.exists() or list(_store().temp_dir.iterdir()) == []


def test_each_hit_is_a_fresh_object_that_the_caller_may_change():
    @pa.cached
    def table(n):
        return {"rows": list(range(n))}

    table(3)
    first = table(3)
    first["rows"].append("changed by the caller")
    assert table(3) == {"rows": [0, 1, 2]}


def test_a_hit_is_served_from_memory_only_for_content_that_is_already_verified():
    @pa.cached
    def filler(n):
        return b"x" * n

    n = 40_000  # a file, not a row of the small objects (those are read with the pair, every hit)
    filler(n)
    assert filler(n) == b"x" * n  # a verified read: its bytes are now kept in this process
    sha1 = pa.get(filler.key(n))
    assert not stored_objects.is_row(_store(), sha1)
    stored_objects.overwrite(_store(), sha1, b"rotten")
    # The same content, by its hash: still right; the rotten file is caught by the next reader.
    assert filler(n) == b"x" * n
    assert not _store().verify(sha1)


# --- cache modes ---------------------------------------------------------------------------------


def test_each_call_looks_where_the_config_points_when_it_is_made(tmp_path):
    square(4)
    with pa.config(database_path=str(tmp_path / "other")):
        assert square(4) == square(4) == 16  # another database: one miss there
    assert square(4) == 16 and runs["square"] == 2  # back in the first: its hit
    square(5)  # stored, never read back (so not kept in memory)
    with pa.config(content_dir=str(tmp_path / "content")):
        with pytest.warns(RuntimeWarning, match="content is missing here"):
            assert square(5) == 25  # the pair is found; its content is not in that directory
    assert runs["square"] == 4
    pa.set_config(collection="elsewhere")
    assert square(4) == 16 and runs["square"] == 5
    pa.set_config(collection="default", database_path=str(tmp_path / "other"))
    assert square(4) == 16 and runs["square"] == 5


def test_mode_off_calls_the_function_and_stores_nothing():
    with pa.config(cache="off"):
        assert square(2) == square(2) == 4
    assert runs["square"] == 2
    assert not square.is_cached(2)
    assert pa.stats() == {}


def test_mode_readonly_uses_hits_and_stores_no_misses():
    square(2)
    with pa.config(cache="readonly"):
        assert square(2) == 4  # a hit
        assert square(3) == square(3) == 9  # misses, each computed
    assert runs["square"] == 3
    assert square.is_cached(2) and not square.is_cached(3)


def test_mode_refresh_recomputes_and_overwrites():
    @pa.cached
    def counter():
        runs["counter"] += 1
        return runs["counter"]

    assert counter() == 1
    with pa.config(cache="refresh"):
        assert counter() == 2
        assert counter() == 3
    assert counter() == 3  # the refreshed result was stored
    assert pa.load_pickle("sha1://" + pa.get(counter.key())) == 3


def test_mode_on_is_the_default():
    assert pa.get_config().cache == "on"
    with pa.config(cache="on"):
        square(2)
        square(2)
    assert runs["square"] == 1


def test_a_mode_applies_only_inside_its_block():
    with pa.config(cache="off"):
        square(2)
    square(2)
    square(2)
    assert runs["square"] == 2


@pytest.mark.parametrize(("mode", "body_runs", "stored"),
                         [("on", 1, True), ("off", 3, False), ("readonly", 3, False), ("refresh", 3, True)])
def test_pairio_cache_environment_variable_sets_the_mode(monkeypatch, mode, body_runs, stored):
    monkeypatch.setenv("PAIRIO_CACHE", mode)
    pa.reset_config()
    for _ in range(3):
        assert square(8) == 64
    assert runs["square"] == body_runs
    assert square.is_cached(8) == stored


def test_a_bad_pairio_cache_value_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv("PAIRIO_CACHE", "sometimes")
    with pytest.raises(pa.ConfigurationError, match="cache"):
        pa.reset_config()
    monkeypatch.delenv("PAIRIO_CACHE")  # before the fixture reads the environment again
    with pytest.raises(pa.ConfigurationError, match="cache"):
        with pa.config(cache="sometimes"):
            pass


# --- the controls on the function ----------------------------------------------------------------


def test_key_is_40_hex_and_is_the_key_value_store_key():
    key = square.key(9)
    assert len(key) == 40 and all(c in "0123456789abcdef" for c in key)
    assert pa.get(key) is None
    square(9)
    assert pa.get(key) is not None
    assert runs["square"] == 1  # key() does not call the function


def test_explain_lists_what_went_into_the_key():
    info = square.explain(3)
    assert info["key"] == square.key(3)
    assert info["function"] == square.name == f"{__name__}.square"
    assert set(info["arguments"]) == {"x", "offset"}
    assert info["code"]["source"] and info["code"]["digest"]
    assert info["collection"] == "default"
    assert info["result_sha1"] is None
    square(3)
    assert square.explain(3)["result_sha1"] == pa.get(square.key(3))
    json.dumps(info)  # plain data, printable


def test_is_cached_forget_and_recompute():
    assert not square.is_cached(2)
    square(2)
    assert square.is_cached(2)
    sha1 = pa.get(square.key(2))
    square.forget(2)
    assert not square.is_cached(2)
    assert pa.get(square.key(2)) is None and pa.get(seconds_key(square.key(2))) is None
    assert _store().has(sha1)  # the content stays: another key may share it
    square(2)
    assert runs["square"] == 2
    assert square.recompute(2) == 4
    assert runs["square"] == 3 and square.is_cached(2)


def test_recompute_overwrites_the_stored_result():
    @pa.cached
    def counter(tag):
        runs["counter"] += 1
        return (tag, runs["counter"])

    assert counter("a") == ("a", 1)
    assert counter.recompute("a") == ("a", 2)
    assert counter("a") == ("a", 2)
    assert runs["counter"] == 2


def test_forgetting_an_uncached_call_is_harmless():
    square.forget(123)
    assert not square.is_cached(123)


# --- ignore=, version=, decorator forms ----------------------------------------------------------


def test_ignored_arguments_do_not_change_the_key():
    @pa.cached(ignore=["verbose", "workers"])
    def fit(data, verbose=False, workers=1):
        runs["fit"] += 1
        return sum(data)

    assert fit([1, 2]) == 3
    assert fit([1, 2], verbose=True, workers=8) == 3
    assert runs["fit"] == 1
    assert fit.key([1, 2]) == fit.key([1, 2], True, 4)
    assert fit.key([1, 2]) != fit.key([1, 3])
    assert "verbose" not in fit.explain([1, 2])["arguments"]
    assert fit.explain([1, 2])["not_counted"]["ignored_arguments"] == ["verbose", "workers"]


def test_ignore_accepts_a_single_name():
    @pa.cached(ignore="log")
    def f(x, log=None):
        return x

    assert f.key(1, log="a") == f.key(1, log="b")


def test_ignoring_a_name_that_is_not_a_parameter_fails_at_decoration():
    with pytest.raises(ValueError, match="verbos"):
        @pa.cached(ignore=["verbos"])
        def f(x, verbose=False):
            return x


def test_decorator_with_and_without_parentheses():
    def body(x):
        """Adds one."""
        return x + 1

    plain = pa.cached(body)
    called = pa.cached()(body)
    assert isinstance(plain, pa.CachedFunction) and isinstance(called, pa.CachedFunction)
    assert plain.__name__ == called.__name__ == "body" and plain.__doc__ == "Adds one."
    assert plain.__wrapped__ is body
    assert plain.key(1) == called.key(1)
    assert plain(1) == 2 and called.is_cached(1)  # the same key: one shares the other's result


def test_version_changes_the_key():
    def body(x):
        return x

    assert pa.cached(version="1")(body).key(1) != pa.cached(version="2")(body).key(1)
    assert pa.cached(version="1")(body).key(1) == pa.cached(version="1")(body).key(1)


def test_decorating_something_not_callable_is_a_type_error():
    with pytest.raises(TypeError, match="function"):
        pa.cached(42)


# --- methods -------------------------------------------------------------------------------------


class Sorter:
    """A pipeline step whose state does not change its results: ``self`` is left out of the key."""

    def __init__(self, label):
        self.label = label

    @pa.cached(ignore=["self"])
    def sort(self, values):
        runs["Sorter.sort"] += 1
        return sorted(values)


class Filter:
    """A step whose parameters change results: ``self`` counts through ``__pairio_hash__``."""

    def __init__(self, cutoff, label=""):
        self.cutoff = cutoff
        self.label = label

    def __pairio_hash__(self):
        return ("Filter", self.cutoff)

    @pa.cached
    def apply(self, values):
        runs["Filter.apply"] += 1
        return [v for v in values if v >= self.cutoff]


def test_a_method_with_ignore_self_leaves_self_out():
    assert Sorter("a").sort([3, 1, 2]) == [1, 2, 3]
    assert Sorter("b").sort([3, 1, 2]) == [1, 2, 3]
    assert runs["Sorter.sort"] == 1
    assert Sorter("a").sort.key([1]) == Sorter("b").sort.key([1])
    assert "self" not in Sorter("a").sort.explain([1])["arguments"]


def test_a_method_with_pairio_hash_counts_self_through_it():
    assert Filter(2, "x").apply([1, 2, 3]) == [2, 3]
    assert Filter(2, "y").apply([1, 2, 3]) == [2, 3]  # same __pairio_hash__: a hit
    assert Filter(3).apply([1, 2, 3]) == [3]
    assert runs["Filter.apply"] == 2
    assert Filter(2).apply.key([1]) != Filter(3).apply.key([1])
    assert "self" in Filter(2).apply.explain([1])["arguments"]


def test_a_method_reached_through_the_class_has_the_same_key():
    s = Sorter("a")
    assert Sorter.sort.key(s, [1]) == s.sort.key([1])
    assert Filter.apply.key(Filter(2), [1]) == Filter(2).apply.key([1])
    Sorter.sort(s, [2, 1])
    assert s.sort([2, 1]) == [1, 2] and runs["Sorter.sort"] == 1


def test_a_method_called_by_position_or_by_name_has_one_key():
    s, f = Sorter("a"), Filter(2)
    assert s.sort.key([1]) == s.sort.key(values=[1]) == Sorter.sort.key(s, values=[1]) == s.sort.explain([1])["key"]
    assert f.apply.key([1]) == f.apply.key(values=[1]) == f.apply.explain([1])["key"] != Filter(3).apply.key([1])


def test_the_controls_of_a_bound_method():
    f = Filter(2)
    assert not f.apply.is_cached([5])
    f.apply([5])
    assert f.apply.is_cached([5]) and not Filter(9).apply.is_cached([5])
    assert f.apply.recompute([5]) == [5] and runs["Filter.apply"] == 2
    f.apply.forget([5])
    assert not f.apply.is_cached([5])
    assert isinstance(Sorter.__dict__["sort"], pa.CachedFunction)
    assert isinstance(f.apply, pa.BoundCachedMethod) and f.apply.__self__ is f
    assert f.apply.__name__ == "apply"


def test_a_cached_function_and_method_pickle_by_name():
    assert pickle.loads(pickle.dumps(square)) is square
    assert pickle.loads(pickle.dumps(Sorter.sort)) is Sorter.sort
    bound = pickle.loads(pickle.dumps(Filter(2).apply))
    assert isinstance(bound, pa.BoundCachedMethod) and bound.__self__.cutoff == 2
    assert bound([1, 2, 3]) == [2, 3] and bound.key([1]) == Filter(2).apply.key([1])


def test_cloudpickle_sends_a_local_cached_function_by_value():
    @pa.cached(version="3", ignore=["verbose"])
    def local(x, verbose=False):
        return x + 1

    copy = cloudpickle.loads(cloudpickle.dumps(local))
    assert isinstance(copy, pa.CachedFunction) and copy is not local
    assert copy(1) == 2
    info = copy.explain(1)
    assert info["version"] == "3" and info["not_counted"]["ignored_arguments"] == ["verbose"]


# --- async functions -----------------------------------------------------------------------------


@pa.cached
async def fetch(x):
    runs["fetch"] += 1
    await asyncio.sleep(0)
    return {"x": x}


def test_an_async_function_stays_a_coroutine_function():
    assert asyncio.iscoroutinefunction(fetch)
    coro = fetch(1)
    assert asyncio.iscoroutine(coro)
    assert asyncio.run(coro) == {"x": 1}


def test_an_async_function_is_cached():
    async def main():
        return [await fetch(1), await fetch(1), await fetch(2)]

    assert asyncio.run(main()) == [{"x": 1}, {"x": 1}, {"x": 2}]
    assert runs["fetch"] == 2
    assert fetch.is_cached(1) and pa.load_pickle("sha1://" + pa.get(fetch.key(1))) == {"x": 1}


def test_async_recompute_and_modes():
    asyncio.run(fetch(1))
    assert asyncio.run(fetch.recompute(1)) == {"x": 1}
    assert runs["fetch"] == 2
    with pa.config(cache="off"):
        asyncio.run(fetch(1))
    with pa.config(cache="readonly"):
        asyncio.run(fetch(1))  # a hit
        asyncio.run(fetch(5))
    assert runs["fetch"] == 4 and not fetch.is_cached(5)


def test_an_async_exception_propagates_and_is_not_cached():
    @pa.cached
    async def fails(x):
        runs["fails"] += 1
        raise RuntimeError("boom")

    for _ in range(2):
        with pytest.raises(RuntimeError, match="boom"):
            asyncio.run(fails(1))
    assert runs["fails"] == 2 and not fails.is_cached(1)


def test_an_async_method():
    class Client:
        @pa.cached
        async def get(self, x):
            runs["Client.get"] += 1
            return x * 10

    assert asyncio.iscoroutinefunction(Client().get)
    assert asyncio.run(Client().get(1)) == asyncio.run(Client().get(1)) == 10
    assert runs["Client.get"] == 1


# --- the log, stats() and `pairio stats` ---------------------------------------------------------


def test_one_log_line_per_call(caplog):
    caplog.set_level(logging.INFO, logger="pairio")
    square(11)
    square(11)
    key = square.key(11)
    lines = [r.getMessage() for r in caplog.records if r.name == "pairio"]
    assert len(lines) == 2
    assert lines[0].startswith("miss ") and square.name in lines[0] and key[:8] in lines[0]
    assert "computed" in lines[0] and lines[0].endswith("s")
    assert lines[1].startswith("hit ") and square.name in lines[1] and key[:8] in lines[1]
    assert "saved" in lines[1]


def test_a_miss_with_an_unasked_server_says_only_the_local_store_was_searched(caplog):
    caplog.set_level(logging.INFO, logger="pairio")
    with pa.config(url="http://127.0.0.1:9", channel="lab", password="unused", get_from="local", set_to="local"):
        square(31)
    with pa.config(get_from="local", set_to="local"):
        square(32)
    lines = [r.getMessage() for r in caplog.records if r.name == "pairio"]
    assert "only the local store was searched" in lines[0] and "get_from is 'local'" in lines[0]
    assert "only the local store" not in lines[1]  # no server configured: nothing was left out


def test_verbose_prints_each_calls_line_to_stderr(capsys):
    with pa.config(verbose=True):
        square(12)
        square(12)
    err = capsys.readouterr().err.splitlines()
    assert [line.split()[1] for line in err] == ["miss", "hit"]
    assert all(line.startswith("pairio: ") and square.name in line for line in err)
    square(12)
    assert capsys.readouterr().err == ""


def test_no_log_lines_below_info(caplog):
    caplog.set_level(logging.WARNING, logger="pairio")
    square(12)
    square(12)
    assert [r for r in caplog.records if r.name == "pairio"] == []


def test_stats_counts_hits_misses_and_seconds_per_function():
    square(1)
    square(1)
    square(1)
    square(2)
    counts = pa.stats()[square.name]
    assert counts["hits"] == 2 and counts["misses"] == 2
    stored_seconds = float(pa.get(seconds_key(square.key(1))))
    assert counts["seconds_saved"] < 2 * stored_seconds  # net: the time the hits took to load is subtracted
    assert counts["seconds_computed"] >= 0.0
    pa.reset_stats()
    assert pa.stats() == {}


def test_every_hit_of_one_key_is_counted_in_stats_the_totals_and_the_hourly_counts(pairio_home):
    from pairio.lifecycle import counts

    square(7)
    pa.reset_stats()
    call_stats.clear_persistent(pairio_home)
    for _ in range(3000):  # many hits whose load took the same time to the nanosecond
        square(7)
    assert pa.stats()[square.name]["hits"] == 3000
    assert call_stats.read_persistent(pairio_home)[square.name]["hits"] == 3000
    store = EmbeddedStore(pairio_home)
    assert counts.totals(counts.read(store, 0))["hits"] == 3000


def test_time_saved_is_compute_minus_load_in_logs_and_stats(caplog, capsys):
    import re

    square(41)
    key = square.key(41)
    pa.set(seconds_key(key), "0.5")  # as if computing had taken half a second
    pa.reset_stats()
    call_stats.clear_persistent(pa.get_config().database_dir)
    caplog.set_level(logging.INFO, logger="pairio")
    square(41)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("hit"))
    saved, computed, loaded = map(float, re.search(
        r"saved (-?[\d.]+)s \(computed in ([\d.]+)s, loaded in ([\d.]+)s\)", line).groups())
    assert computed == 0.5 and saved == pytest.approx(computed - loaded, abs=0.011)
    counts = pa.stats()[square.name]
    assert counts["seconds_saved"] < 0.5 and counts["seconds_saved"] == pytest.approx(saved, abs=0.006)
    drain_all()
    assert main(["stats", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)[square.name]
    assert shown["seconds_saved"] == pytest.approx(counts["seconds_saved"])


def test_hits_count_their_computing_seconds_read_after_the_hit(capsys):
    square(43)
    pa.set(seconds_key(square.key(43)), "0.5")
    pa.reset_stats()
    call_stats.clear_persistent(pa.get_config().database_dir)
    square(43)
    square(43)  # not logged: the seconds are read when the counts are
    assert 0.9 < pa.stats()[square.name]["seconds_saved"] < 1.0
    square(43)
    drain_all()
    assert main(["stats", "--json"]) == 0
    assert 1.4 < json.loads(capsys.readouterr().out)[square.name]["seconds_saved"] < 1.5


def test_counting_the_seconds_of_hits_never_makes_a_removed_database_again(tmp_path):
    home = tmp_path / "gone"
    with pa.config(database_path=str(home)):
        square(12)
        square(12)
    shutil.rmtree(home)
    call_stats.flush()
    assert not home.exists()


def test_a_hit_slower_to_load_than_to_compute_saves_negative_time():
    square(42)
    pa.set(seconds_key(square.key(42)), "0")  # computing took no time at all
    pa.reset_stats()
    square(42)
    assert pa.stats()[square.name]["seconds_saved"] < 0


def test_a_forked_child_never_writes_the_counts_its_parent_has_not_written_yet(pairio_home):
    import multiprocessing

    drain_all()
    square(31)  # a miss: counted in memory, not yet written
    child = multiprocessing.get_context("fork").Process(target=call_stats.flush)
    child.start()
    child.join(60)
    assert child.exitcode == 0
    # The child wrote nothing of its parent's: the one miss is counted once.
    assert call_stats.read_persistent(pairio_home)[square.name]["misses"] == 1


def test_counts_reach_the_table_without_a_flush_and_without_a_call_waiting_for_it(pairio_home):
    import sqlite3
    import time

    drain_all()
    square(41)
    square(41)

    def written():
        path = pairio_home / call_stats.FILENAME
        if not path.exists():
            return None
        with sqlite3.connect(path) as conn:
            try:
                return conn.execute("SELECT hits, misses FROM cache_stats WHERE function = ?",
                                    (square.name,)).fetchone()
            except sqlite3.OperationalError:  # the file is made before its table
                return None

    deadline = time.monotonic() + 60
    while written() != (1, 1) and time.monotonic() < deadline:  # the writer thread's, once a second
        time.sleep(0.05)
    assert written() == (1, 1)


def test_saving_counts_never_makes_a_removed_database_again(tmp_path):
    home = tmp_path / "gone"
    with pa.config(database_path=str(home)):
        square(11)
    call_stats.flush()
    shutil.rmtree(home)
    with pa.config(database_path=str(home)):
        call_stats.record("x", "0" * 40, True, 1.0, pa.get_config().database_dir)
    call_stats.flush()
    assert not home.exists()


def test_pairio_stats_command_prints_the_totals(capsys):
    assert main(["stats"]) == 0
    assert "no cached calls recorded" in capsys.readouterr().out
    square(1)
    square(1)
    Sorter("a").sort([1])
    assert main(["stats"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["function", "hits", "misses"]
    row = next(line for line in out if line.startswith(square.name + " "))
    assert row.split()[1:3] == ["1", "1"]
    assert any(line.startswith(f"{__name__}.Sorter.sort ") for line in out)


def test_pairio_stats_json_and_clear(capsys):
    square(1)
    square(1)
    assert main(["stats", "--json"]) == 0
    totals = json.loads(capsys.readouterr().out)
    assert totals[square.name]["hits"] == 1 and totals[square.name]["misses"] == 1
    assert main(["stats", "--clear"]) == 0
    capsys.readouterr()
    assert main(["stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {}


def test_pairio_stats_totals_add_up_across_reset_of_process_counts(capsys):
    square(1)
    pa.reset_stats()  # the process's counts restart; the database's totals do not
    square(1)
    assert main(["stats", "--json"]) == 0
    totals = json.loads(capsys.readouterr().out)[square.name]
    assert (totals["hits"], totals["misses"]) == (1, 1)


# --- against a pairio server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("server"), default_settings()) as s:
        yield s


@pytest.fixture(scope="module")
def server_store(server):
    return EmbeddedStore(server.directory / "store")


@pytest.fixture
def remote(server):
    pa.set_config(url=server.url, channel="lab-rw", password=RW_PASSWORD, collection="spikes",
                  get_from="remote", set_to="remote")


@pa.cached
def spike_count(recording, threshold):
    runs["spike_count"] += 1
    return {"recording": recording, "count": len(recording) * threshold}


def _tag(request) -> str:
    # The server outlives each test's database: arguments unique to the test keep keys apart.
    return request.node.name


def test_remote_modes_keep_the_pair_on_the_server_and_the_content_here(remote, server_store, request):
    tag = _tag(request)
    result = spike_count(tag, 3)
    key = spike_count.key(tag, 3)
    sha1 = server_store.get("spikes", key)
    assert sha1 is not None and _store().has(sha1)
    assert pa.get(key, get_from="local") is None
    assert spike_count(tag, 3) == result and runs["spike_count"] == 1
    assert spike_count.is_cached(tag, 3)
    spike_count.forget(tag, 3)
    assert server_store.get("spikes", key) is None


def test_local_then_remote_copies_a_server_hit_locally(remote, server_store, request):
    tag = _tag(request)
    spike_count(tag, 2)
    key = spike_count.key(tag, 2)
    with pa.config(get_from="local_then_remote"):
        assert pa.get(key, get_from="local") is None
        spike_count(tag, 2)
        assert pa.get(key, get_from="local") == server_store.get("spikes", key)
    assert runs["spike_count"] == 1


def test_local_and_remote_writes_both(remote, server_store, request):
    tag = _tag(request)
    with pa.config(set_to="local_and_remote", get_from="local"):
        spike_count(tag, 1)
        key = spike_count.key(tag, 1)
        assert pa.get(key) == server_store.get("spikes", key) is not None
        spike_count(tag, 1)
    assert runs["spike_count"] == 1


def test_a_server_hit_whose_content_is_not_here_is_downloaded(remote, server_store, request, tmp_path):
    tag = _tag(request)
    spike_count(tag, 5)
    # Another machine: the same server, its own content store.
    with pa.config(database_path=str(tmp_path / "elsewhere")):
        assert spike_count(tag, 5)["count"] == len(tag) * 5
        assert spike_count.is_cached(tag, 5)
    assert runs["spike_count"] == 1


def test_a_server_hit_whose_content_is_on_no_reachable_store_is_said_once_and_recomputed(
        remote, server_store, request, tmp_path):
    tag = _tag(request)
    with pa.config(set_to="local"):
        spike_count(tag, 6)  # the content stays here
    key = spike_count.key(tag, 6)
    server_store.set("spikes", key, pa.get(key, get_from="local"))  # the server knows the key only
    with pa.config(database_path=str(tmp_path / "elsewhere")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert spike_count(tag, 6)["count"] == len(tag) * 6
    said = [str(w.message) for w in caught]
    assert len(said) == 1 and "the server knows key" in said[0] and "no reachable store" in said[0]
    assert runs["spike_count"] == 2


def test_a_read_only_channel_gets_the_result_with_a_warning_and_nothing_recorded(server, request):
    tag = _tag(request)
    with pa.config(url=server.url, channel="public-ro", password=RO_PASSWORD, collection="spikes",
                   get_from="remote", set_to="remote"):
        with pytest.warns(RuntimeWarning, match="not recorded on the server"):
            assert spike_count(tag, 4)["count"] == len(tag) * 4
        assert not spike_count.is_cached(tag, 4)
    assert runs["spike_count"] == 1


def test_remote_mode_without_a_server_fails_before_computing():
    with pa.config(get_from="remote"):
        with pytest.raises(pa.ConfigurationError, match="url"):
            square(1)
    assert runs["square"] == 0


def test_stats_of_an_older_table_gain_the_remote_columns(pairio_home):
    import sqlite3

    pairio_home.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(pairio_home / call_stats.FILENAME) as conn:  # as pairio made it before remote hits
        conn.execute("CREATE TABLE cache_stats (function TEXT PRIMARY KEY, hits INTEGER NOT NULL, misses INTEGER "
                     "NOT NULL, seconds_saved REAL NOT NULL, seconds_computed REAL NOT NULL, last_used REAL NOT NULL)")
        conn.execute("INSERT INTO cache_stats VALUES ('old.f', 3, 1, 2.0, 1.0, 0.0)")
    call_stats.record("old.f", "0" * 40, False, 1.0, pairio_home, uploaded=10)
    totals = call_stats.read_persistent(pairio_home)["old.f"]
    assert (totals["hits"], totals["misses"], totals["remote_hits"], totals["bytes_uploaded"]) == (3, 2, 0, 10)
