"""Smaller findings of the fault trial (issue 21, item 9): each a warning or a count that was wrong."""

from __future__ import annotations

import os
import warnings

import pairio as pa


def runtime_warnings(f, *args, **kwargs) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = f(*args, **kwargs)
    return result, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def test_an_unknown_pairio_variable_is_warned_about_once_naming_the_closest_known_one(monkeypatch):
    monkeypatch.setenv("PAIRIO_CAHCE", "off")
    monkeypatch.setenv("PAIRIO_URLL", "http://127.0.0.1:1")
    _, said = runtime_warnings(pa.reset_config)
    _, again = runtime_warnings(pa.reset_config)
    assert len(said) == 2 and again == []
    typo = next(m for m in said if "PAIRIO_CAHCE" in m)
    assert "PAIRIO_CACHE" in typo and "ignored" in typo
    assert "PAIRIO_URL?" in next(m for m in said if "PAIRIO_URLL" in m)


def test_known_and_test_suite_variables_are_not_warned_about(monkeypatch):
    monkeypatch.setenv("PAIRIO_CACHE", "on")
    monkeypatch.setenv("PAIRIO_SERVE_DIRECTORY", "/tmp")
    monkeypatch.setenv("PAIRIO_TEST_ANYTHING", "1")
    _, said = runtime_warnings(pa.reset_config)
    assert said == []


@pa.cached
def outage_step(tag: str, x: int) -> int:
    return x * 2


def test_with_the_server_down_a_missing_content_is_not_said_to_be_on_no_reachable_store():
    import hashlib
    import uuid

    from server_process import RW_PASSWORD, free_port

    from pairio.memo import remote

    remote.forget_health()
    tag = uuid.uuid4().hex
    for x in (1, 2):  # pairs stored here whose content is not (it may be on the server)
        pa.set(outage_step.key(tag, x), hashlib.sha1(f"{tag}{x}".encode()).hexdigest())
    with pa.config(url=f"http://127.0.0.1:{free_port()}", channel="lab-rw", password=RW_PASSWORD,
                   get_from="local_then_remote", set_to="local_and_remote"):
        first, said_first = runtime_warnings(outage_step, tag, 1)  # finds the server down
        second, said_second = runtime_warnings(outage_step, tag, 2)  # while it is skipped
    assert (first, second) == (2, 4)
    assert len(said_first) == 1 and "unreachable" in said_first[0]
    assert len(said_second) == 1 and "could not be asked" in said_second[0]
    assert not any("no reachable store" in m for m in said_first + said_second)


def test_an_unstorable_result_is_returned_with_one_warning_naming_its_type_and_what_to_return():
    import threading

    @pa.cached
    def lazy(n):
        return (i * i for i in range(n))

    @pa.cached
    def holding(n):
        return {"n": n, "guard": threading.Lock()}

    result, said = runtime_warnings(lazy, 4)
    assert list(result) == [0, 1, 4, 9]
    assert len(said) == 1 and "generator" in said[0] and "list(" in said[0] and "not cached" in said[0]
    result, said = runtime_warnings(holding, 2)
    assert result["n"] == 2 and isinstance(result["guard"], type(threading.Lock()))
    assert len(said) == 1 and "type dict" in said[0] and "lock" in said[0] and "leave the lock out" in said[0]
    assert pa.get(lazy.key(4)) is None and pa.get(holding.key(2)) is None


def test_an_unstorable_result_raises_with_strict():
    @pa.cached(strict=True)
    def lazy(n):
        return (i for i in range(n))

    import pytest

    with pytest.raises(pa.UnstorableResultError, match="generator.*list"):
        lazy(3)


def test_a_result_larger_than_max_size_is_warned_about_once_and_never_stored(caplog):
    import logging
    import os

    calls = []

    @pa.cached
    def big(n):
        calls.append(n)
        return os.urandom(20_000)

    caplog.set_level(logging.INFO, logger="pairio")
    with pa.config(max_size="10kB"):
        _, said = runtime_warnings(big, 1)
        _, again = runtime_warnings(big, 1)
        _, other = runtime_warnings(big, 2)
    said = [w for w in said if "global state" not in w]  # os.urandom is named (and warned about) as global state
    assert calls == [1, 1, 2]
    assert len(said) == 1 and again == [] and other == []
    assert "20 kB" in said[0] and "max_size (10 kB)" in said[0] and "never be kept" in said[0]
    assert pa.get(big.key(1)) is None and pa.entries() == []
    assert list(pa.content_store(pa.get_config()).iter_objects()) == []
    assert "evicted" not in caplog.text  # not stored, so not evicted either


def test_the_eviction_log_line_names_function_key_size_and_worth_in_readable_units(caplog):
    import logging
    import os

    @pa.cached
    def chunk(n):
        return os.urandom(4_000)

    caplog.set_level(logging.INFO, logger="pairio")
    with pa.config(max_size="10kB"):
        keys = [chunk.key(n)[:8] for n in range(3)]
        for n in range(3):
            chunk(n)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("evicted"))
    assert any(f"chunk {k} (4.0" in line for k in keys)
    assert " kB, saves " in line and ("ms a use" in line or " s a use" in line) and "0 hits" in line
    assert "within 10 kB" in line


def _age_object(sha1: str) -> None:
    import stored_objects

    stored_objects.age(pa.content_store(pa.get_config()), sha1, 3 * 86400)


def test_gc_dry_run_counts_only_what_the_real_run_removes_and_says_what_it_keeps_and_why(tmp_path, capsys):
    import fcntl

    from pairio.cli import main
    from pairio.lifecycle import gc

    store = pa.content_store(pa.get_config())
    data = tmp_path / "inside.bin"
    data.write_bytes(os.urandom(300_000))  # a file object inside the result

    @pa.cached
    def keeps_a_file():
        return data

    keeps_a_file()
    [entry] = pa.entries()
    for sha1 in (entry.sha1, *entry.objects):
        _age_object(sha1)
    store.remove(entry.sha1)  # the result is gone: gc removes its pair, and then its file is unreferenced
    held = pa.parse_uri(pa.store_bytes(os.urandom(300_000))).sha1  # unreferenced, but a reader holds it
    _age_object(held)
    kept = pa.parse_uri(pa.store_text("named by a pair")).sha1
    pa.set("k", kept)
    _age_object(kept)
    fd = os.open(store.object_file(held), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        dry = gc.collect(pa.get_config(), dry_run=True)
        assert main(["gc", "--dry-run"]) == 0
        out = capsys.readouterr().out
        real = gc.collect(pa.get_config())
    finally:
        os.close(fd)
    assert (dry.objects, dry.object_bytes, dry.pairs) == (real.objects, real.object_bytes, real.pairs) == (
        1, 300_000, 1)
    assert dry.objects_in_use == real.objects_in_use == 1
    assert "would remove 1 unreferenced object(s)" in out
    assert "kept: 1 a pair or record refers to" in out and "1 a reader holds open" in out


def test_gc_removes_partial_downloads_whose_object_is_complete_and_counts_them(capsys):
    from pairio.cli import main

    store = pa.content_store(pa.get_config())
    complete = pa.parse_uri(pa.store_bytes(b"x" * 5000)).sha1
    absent = "0" * 40
    store.partial_dir.mkdir(parents=True, exist_ok=True)
    (store.partial_dir / complete).write_bytes(b"x" * 1000)  # left by a download cut short
    (store.partial_dir / absent).write_bytes(b"y" * 700)
    assert main(["gc", "--temp", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would remove 1 abandoned temporary file(s), 1 kB (1 partial download(s) whose object is complete)" in out
    assert "kept: 1 partial download(s) of absent objects, 700 B" in out
    assert (store.partial_dir / complete).exists()
    assert main(["gc", "--temp"]) == 0
    assert not (store.partial_dir / complete).exists() and (store.partial_dir / absent).exists()


def smooth(x):
    return x


def sharpen(x):
    return -x


def test_a_miss_caused_by_a_changed_callable_argument_names_it_never_by_address(caplog):
    import functools
    import logging
    import re

    @pa.cached
    def apply(data, transform):
        return [transform(d) for d in data]

    first = lambda x: x + 1  # noqa: E731
    second = lambda x: x + 2  # noqa: E731
    line = first.__code__.co_firstlineno
    caplog.set_level(logging.INFO, logger="pairio")
    for transform in (smooth, sharpen, first, second, functools.partial(pow, exp=2)):
        apply([1, 2], transform)
    said = [r.getMessage() for r in caplog.records if "missed because" in r.getMessage()]
    assert len(said) == 4
    assert not any(re.search(r"0x[0-9a-f]{6,}", m) for m in said)
    assert "argument `transform` differs (function test_smaller_findings.smooth -> " \
           "function test_smaller_findings.sharpen)" in said[0]
    assert f"(<lambda> at test_smaller_findings.py:{line} -> <lambda> at test_smaller_findings.py:{line + 1})" \
        in said[2]
    assert "partial(function pow, exp=2)" in said[3]
