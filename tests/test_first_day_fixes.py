"""Small things a new user trips over: configuration case, JSON keys, forget(), binding errors, warnings."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pairio as pa
from pairio.cli import main

# --- PAIRIO_CACHE and the other choices, in any case ------------------------------------------


@pytest.mark.parametrize("var,field,written,meant", [
    ("PAIRIO_CACHE", "cache", "OFF", "off"), ("PAIRIO_CACHE", "cache", " ReadOnly ", "readonly"),
    ("PAIRIO_GET_FROM", "get_from", "LOCAL", "local"), ("PAIRIO_SET_TO", "set_to", "Local", "local"),
])
def test_a_choice_is_accepted_in_any_case(monkeypatch, var, field, written, meant):
    monkeypatch.setenv(var, written)
    assert getattr(pa.reset_config(), field) == meant
    assert getattr(pa.Config(**{field: written}), field) == meant


def test_cache_off_in_capitals_turns_caching_off(monkeypatch):
    monkeypatch.setenv("PAIRIO_CACHE", "OFF")
    pa.reset_config()
    calls = []

    @pa.cached
    def step(x):
        calls.append(x)
        return x

    step(1)
    step(1)
    assert calls == [1, 1]


def test_a_bad_choice_is_refused_where_the_step_is_defined(monkeypatch):
    import importlib

    monkeypatch.setattr(importlib.import_module("pairio.config"), "_default", None)  # as in a new process: the environment not read yet
    monkeypatch.setenv("PAIRIO_CACHE", "sometimes")
    try:
        with pytest.raises(pa.ConfigurationError, match="PAIRIO_CACHE.*on, off, readonly, refresh"):
            @pa.cached
            def step(x):
                return x
    finally:
        monkeypatch.delenv("PAIRIO_CACHE")


# --- keys: NaN and infinity are not JSON; a tuple is a list --------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("shape", [lambda v: {"a": v}, lambda v: [1, v], lambda v: {"a": [{"b": v}]},
                                   lambda v: (v,)])
def test_nan_and_infinity_are_refused_in_keys(bad, shape):
    with pytest.raises(pa.InvalidKeyError, match="NaN or infinity"):
        pa.set(shape(bad), "v")
    with pytest.raises(pa.InvalidKeyError, match="NaN or infinity"):
        pa.get_many([shape(bad)])


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                           allow_infinity=False) | st.text(), lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(), inner, max_size=3), max_leaves=8)


@given(st.lists(json_values, max_size=4))
def test_a_tuple_key_is_the_list_key(items):
    assert pa.key_string(tuple(items)) == pa.key_string(items)


def test_tuple_keys_store_and_load_like_lists():
    pa.set(("add", 12, 30), "42")
    assert pa.get(["add", 12, 30]) == "42"
    assert pa.get_many([("add", 12, 30)]) == {pa.key_string(["add", 12, 30]): "42"}


# --- forget() says whether there was something to forget ----------------------------------------


def test_forget_returns_whether_an_entry_was_removed():
    @pa.cached
    def double(x):
        return 2 * x

    assert double.forget(3) is False
    double(3)
    assert double.forget(3) is True
    assert double.forget(3) is False
    assert not double.is_cached(3)


# --- a binding error names the function -----------------------------------------------------------


@pytest.mark.parametrize("args,kwargs", [((), {}), ((1, 2, 3), {}), ((1,), {"nope": 2}), ((1,), {"x": 1})])
def test_a_binding_error_names_the_function(args, kwargs):
    @pa.cached
    def scale(x, factor=2):
        return x * factor

    for call in (scale, scale.key, scale.explain, scale.is_cached, scale.forget):
        with pytest.raises(TypeError, match=r"scale\(\)"):
            call(*args, **kwargs)


# --- warnings point at the user's line -------------------------------------------------------------


class Maker:
    @pa.cached
    def make(self, x):
        return [x] * 10


def make_function(x):
    return [x] * 10


@pytest.mark.parametrize("how", ["function", "method", "async"])
def test_a_warning_about_an_unusable_result_points_at_the_call(tmp_path, how):
    import asyncio

    async def make_async(x):
        return [x] * 10

    cached_async = pa.cached(make_async)

    async def pipeline(x):
        return await cached_async(x)  # the line a warning should name

    make = {"function": pa.cached(make_function), "method": Maker().make,
            "async": lambda x: asyncio.run(pipeline(x))}[how]
    make(1)
    store = pa.content_store(pa.get_config())
    for sha1 in list(store.iter_objects()):
        path = store.path(sha1)
        path.chmod(0o644)
        path.write_bytes(b"garbage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make(1)
    assert caught and all(w.filename == __file__ for w in caught), [(w.filename, str(w.message)) for w in caught]


# --- cat --start past the end -----------------------------------------------------------------------


@pytest.mark.parametrize("start,end,code", [(6, None, 2), (100, None, 2), (5, None, 0), (0, 5, 0), (3, 2, 2)])
def test_cat_start_past_the_end_is_an_error(start, end, code, capsysbinary):
    uri = pa.store_text("hello")
    args = ["cat", uri, "--start", str(start)] + ([] if end is None else ["--end", str(end)])
    assert main(args) == code
    out = capsysbinary.readouterr()
    if code:
        assert out.out == b"" and b"--" in out.err
    else:
        assert out.out == b"hello"[start:end]


# --- the README's server example keeps the password out of code -------------------------------------


def test_the_readme_never_puts_a_password_in_code():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "password=" not in readme
    assert "PAIRIO_PASSWORD" in readme.split("## Sharing through a server")[1].split("##")[0]


def test_python_minus_c_with_cache_off_in_capitals_runs():
    done = subprocess.run([sys.executable, "-c", "import pairio\n@pairio.cached\ndef f(x):\n    return x\nprint(f(2))"],
                          env={**__import__("os").environ, "PAIRIO_CACHE": "OFF"}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout == "2\n", done.stderr


def test_a_warning_about_an_unreachable_server_points_at_the_call():
    from server_process import free_port

    from pairio.memo import remote

    remote.forget_health()
    pa.set_config(url=f"http://127.0.0.1:{free_port()}", channel="lab-rw", password="pw-0123456789",
                  get_from="local_then_remote", set_to="local_and_remote", timeout=2)

    @pa.cached
    def triple(x):
        return 3 * x

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert triple(2) == 6
        assert caught and all(w.filename == __file__ for w in caught), [(w.filename, str(w.message)) for w in caught]
    finally:
        remote.forget_health()
