"""A teammate's result can never run code here: content from a server is loaded as data only.

Two "machines" (separate database and content directories) share one real server on loopback.
Machine A, who holds the channel's password, stores pickles that would run a command (os.system,
subprocess.Popen, builtins.eval, importlib.import_module, getattr chains), in every protocol,
hidden inside containers, an object numpy array, a pandas object column, a dataclass field and a
directory, and points cached keys at them. On machine B nothing runs (a marker file proves it): a
cached call computes the right value instead and warns, ``load_pickle`` raises
UntrustedContentError naming the refused callable. Plain results stay remote hits.
"""

from __future__ import annotations

import builtins
import collections
import dataclasses
import datetime
import decimal
import enum
import fractions
import importlib
import io
import json
import os
import pathlib
import pickle
import subprocess
import sys
import uuid
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from server_process import RW_PASSWORD, ServerProcess, default_settings

import pairio as pa
from pairio.content import ContentStore
from pairio.content.safe_pickle import SafeUnpickler, safe_loads
from pairio.content.trust import forget_warnings

MARKER_ENV = "PAIRIO_TEST_MARKER"


# --- payloads: each would create the marker file when unpickled --------------------------------


def _marker() -> str:
    return os.environ[MARKER_ENV]


class OsSystem:
    def __reduce__(self):
        return os.system, (f"touch {_marker()}",)


class Popen:
    def __reduce__(self):
        return subprocess.Popen, (["touch", _marker()],)


class Eval:
    def __reduce__(self):
        return builtins.eval, (f"open({_marker()!r}, 'w').close()",)


class ImportModule:
    """Imports a module whose import creates the marker (a module file the writer planted)."""

    def __reduce__(self):
        return importlib.import_module, ("pairio_test_planted",)


class _ImportOs:
    def __reduce__(self):
        return builtins.__import__, ("os",)


class _SystemFunction:
    def __call__(self, *args):  # (only pickled: a reduce's callable must be callable)
        raise AssertionError("never called here")

    def __reduce__(self):
        return getattr, (_ImportOs(), "system")


class GetattrChain:
    """getattr(__import__("os"), "system")("touch marker"): no global names os.system."""

    def __reduce__(self):
        return _SystemFunction(), (f"touch {_marker()}",)


PAYLOADS = [OsSystem, Popen, Eval, ImportModule, GetattrChain]


@dataclasses.dataclass
class Holder:
    name: str
    field: object


def hidden(payload: object, where: str) -> object:
    if where == "bare":
        return payload
    if where == "nested":
        return {"a": [1, (2, {"b": payload})]}
    if where == "object-array":
        arr = np.empty(3, dtype=object)
        arr[:] = [1, "x", payload]
        return arr
    if where == "pandas-column":
        return pd.DataFrame({"n": [1, 2], "o": ["x", payload]})
    if where == "dataclass-field":
        return Holder("h", payload)
    raise AssertionError(where)


WHERE = ["bare", "nested", "object-array", "pandas-column", "dataclass-field"]


# --- values returned by the safe loader --------------------------------------------------------


class Color(enum.Enum):
    RED = 1
    BLUE = 2


@dataclasses.dataclass(frozen=True)
class Point:
    x: float
    y: float


class Reduces:
    """A class whose pickle calls a function of this module: runs only for a trusted writer."""

    def __init__(self, v):
        self.v = v

    def __reduce__(self):
        return make_reduces, (self.v,)


def make_reduces(v):
    return Reduces(v)


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("server"), default_settings()) as s:
        yield s


@pytest.fixture(autouse=True)
def _warnings_said_again():
    forget_warnings()


@pytest.fixture
def marker(tmp_path, monkeypatch):
    path = tmp_path / "marker"
    monkeypatch.setenv(MARKER_ENV, str(path))
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "pairio_test_planted.py").write_text(f"open({str(path)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(planted))
    yield path
    sys.modules.pop("pairio_test_planted", None)


def machine(server, home, **fields):
    return {"url": server.url, "channel": "lab-rw", "password": RW_PASSWORD, "collection": "spikes",
            "database_path": str(home), "get_from": "local_then_remote", "set_to": "local_and_remote",
            "writer_name": f"{home.name}@lab", **fields}


CALLS: list[int] = []


@pa.cached
def add(n):
    CALLS.append(n)
    return n + 1000


def plant(server, home, key: str, value: object, protocol: int = 5) -> str:
    """Machine A: points ``key`` at a pickle of ``value`` (written by hand, as an attacker would)."""
    with pa.config(**machine(server, home)):
        uri = pa.store_bytes(pickle.dumps(value, protocol=protocol), name="evil.pkl")
        sha1 = pa.parse_uri(uri).sha1
        pa.set(key, sha1)
    return uri


# --- the cached call ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", range(6))
@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.__name__)
def test_a_planted_result_never_runs_and_the_call_computes_the_right_value(server, tmp_path, marker, payload,
                                                                          protocol):
    n = 100 * protocol + PAYLOADS.index(payload)
    with pa.config(**machine(server, tmp_path / "a")):
        key = add.key(n)
    plant(server, tmp_path / "a", key, hidden(payload(), "nested"), protocol)
    CALLS.clear()
    with pa.config(**machine(server, tmp_path / "b")), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert add(n) == n + 1000
        assert add(n) == n + 1000  # now B's own result: a local hit
    assert not marker.exists()
    assert CALLS == [n]
    assert any("not trusted here" in str(w.message) for w in caught)


@pytest.mark.parametrize("where", WHERE)
def test_a_payload_hidden_inside_data_never_runs(server, tmp_path, marker, where):
    for i, payload in enumerate(PAYLOADS):
        n = 1000 + 10 * WHERE.index(where) + i
        with pa.config(**machine(server, tmp_path / "a")):
            key = add.key(n)
        plant(server, tmp_path / "a", key, hidden(payload(), where))
        with pa.config(**machine(server, tmp_path / "b")), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert add(n) == n + 1000
    assert not marker.exists()


def test_the_warning_names_the_refused_callable_once(server, tmp_path, marker):
    with pa.config(**machine(server, tmp_path / "a")):
        keys = [add.key(n) for n in (2001, 2002)]
    for key in keys:
        plant(server, tmp_path / "a", key, OsSystem())
    with pa.config(**machine(server, tmp_path / "b")), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        add(2001)
        add(2002)
    said = [str(w.message) for w in caught if "not trusted here" in str(w.message)]
    assert len(said) == 1
    assert f"{os.system.__module__}.system" in said[0] and "a@lab (ed25519:" in said[0]


def test_plain_results_of_a_teammate_stay_remote_hits(server, tmp_path):
    values = {3001: np.arange(1_000_000, dtype=np.float32),  # large: out of band, downloaded
              3002: pd.DataFrame({"a": [1, 2], "b": ["x", None], "t": pd.to_datetime(["2020-01-01", "2021-06-01"])}),
              3003: {"d": decimal.Decimal("1.5"), "u": uuid.UUID(int=7), "p": pathlib.PurePosixPath("/a/b"),
                     "c": Color.BLUE, "pt": Point(1.0, 2.0), "f": fractions.Fraction(1, 3),
                     "t": datetime.datetime(2020, 1, 2, tzinfo=datetime.timezone.utc), "s": {1, 2}, "b": b"\x00"},
              3004: Holder("h", np.array([Point(0, 1), "x", None], dtype=object))}

    @pa.cached
    def step(n):
        CALLS.append(n)
        return values[n]

    CALLS.clear()
    with pa.config(**machine(server, tmp_path / "a")):
        for n in values:
            step(n)
    with pa.config(**machine(server, tmp_path / "b")), warnings.catch_warnings():
        warnings.simplefilter("error")
        got = {n: step(n) for n in values}
    assert CALLS == list(values)  # computed on A only
    np.testing.assert_array_equal(got[3001], values[3001])
    pd.testing.assert_frame_equal(got[3002], values[3002])
    assert got[3003] == values[3003]
    assert got[3004].field[0] == Point(0, 1) and list(got[3004].field[1:]) == ["x", None]


def test_trust_all_runs_a_teammates_arbitrary_class(server, tmp_path):
    @pa.cached
    def make(n):
        CALLS.append(n)
        return Reduces(n)

    CALLS.clear()
    with pa.config(**machine(server, tmp_path / "a")):
        make(4001)
    with pa.config(**machine(server, tmp_path / "b")), warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert make(4001).v == 4001  # untrusted: refused (make_reduces is a function), computed here
        assert CALLS == [4001, 4001]
    with pa.config(**machine(server, tmp_path / "c"), trust="all"), warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert make(4001).v == 4001
    assert CALLS == [4001, 4001]  # C ran A's pickle: a hit


def test_add_safe_globals_allows_a_function(server, tmp_path):
    @pa.cached
    def make2(n):
        CALLS.append(n)
        return Reduces(n)

    CALLS.clear()
    with pa.config(**machine(server, tmp_path / "a")):
        make2(4101)
    with pa.config(**machine(server, tmp_path / "b"), safe_globals=[f"{__name__}.make_reduces"]):
        assert make2(4101).v == 4101
    assert CALLS == [4101]


# --- load_pickle of a URI a teammate posted ----------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.__name__)
def test_load_pickle_of_a_teammates_uri_raises_untrusted_content_error(server, tmp_path, marker, payload):
    with pa.config(**machine(server, tmp_path / "a")):
        uri = pa.store_pickle(hidden(payload(), "dataclass-field"))
    with pa.config(**machine(server, tmp_path / "b")):
        with pytest.raises(pa.UntrustedContentError) as info:
            pa.load_pickle(uri)
        with pytest.raises(pa.UntrustedContentError):
            pa.load_pickle(uri)  # now in the local store: still foreign
    assert not marker.exists()
    assert info.value.refused and info.value.refused in str(info.value)


def test_a_pickle_inside_a_teammates_directory_is_data_only(server, tmp_path, marker):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "evil.pkl").write_bytes(pickle.dumps(Holder("x", OsSystem())))
    (tree / "ok.pkl").write_bytes(pickle.dumps({"plain": [1, 2.5]}))
    with pa.config(**machine(server, tmp_path / "a")):
        uri = pa.store_dir(tree)
    with pa.config(**machine(server, tmp_path / "b")):
        assert pa.load_pickle(f"{uri}/ok.pkl") == {"plain": [1, 2.5]}
        with pytest.raises(pa.UntrustedContentError):
            pa.load_pickle(f"{uri}/sub/evil.pkl")
    assert not marker.exists()


def test_own_pickles_of_any_class_load(tmp_path):
    with pa.config(database_path=str(tmp_path / "me")):
        uri = pa.store_pickle(Reduces(5))
        assert pa.load_pickle(uri).v == 5


def test_an_object_downloaded_then_made_here_is_own(server, tmp_path):
    with pa.config(**machine(server, tmp_path / "a")):
        uri = pa.store_pickle(Reduces(6))
    with pa.config(**machine(server, tmp_path / "b")):
        with pytest.raises(pa.UntrustedContentError):
            pa.load_pickle(uri)
        assert pa.store_pickle(Reduces(6)) == uri  # the same bytes, pickled here
        assert pa.load_pickle(uri).v == 6


# --- the safe loader itself --------------------------------------------------------------------


@pytest.mark.parametrize("protocol", range(6))
@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.__name__)
@pytest.mark.parametrize("where", WHERE)
def test_the_safe_loader_refuses_every_payload(marker, payload, protocol, where):
    with pytest.raises(pa.UntrustedContentError):
        safe_loads(pickle.dumps(hidden(payload(), where), protocol=protocol))
    assert not marker.exists()


def test_a_class_called_with_arguments_is_refused():
    with pytest.raises(pa.UntrustedContentError, match="with arguments"):
        safe_loads(pickle.dumps(_CallsItself(1)))


class _CallsItself:
    def __init__(self, v):
        self.v = v

    def __reduce__(self):
        return _CallsItself, (self.v,)


@pytest.mark.parametrize("name", ["posix.system", "os.system", "builtins.exec",
                                  "builtins.__import__", "builtins.type", "subprocess.Popen", "pickle.loads",
                                  "functools.partial", "operator.attrgetter", "numpy.load", "pandas.read_pickle",
                                  "pandas.HDFStore", "numpy.memmap"])
def test_dangerous_globals_are_refused(name):
    module, attr = name.rsplit(".", 1)
    data = f"c{module}\n{attr}\n(tR.".encode()  # GLOBAL, then call it with no arguments
    with pytest.raises(pa.UntrustedContentError, match=attr):
        safe_loads(data)


@pytest.mark.parametrize("data", [
    b"cbuiltins\ngetattr\n(ccollections\nOrderedDict\nV__init__\ntR.",  # getattr beyond enum members
    b"cbuiltins\ngetattr\n(cbuiltins\nobject\nV__subclasses__\ntR.",
    b"ccopyreg\n_reconstructor\n(csubprocess\nPopen\ncbuiltins\nobject\nNtR.",  # a refused class
    b"ccopyreg\n_reconstructor\n(ccollections\nOrderedDict\ncdatetime\ntimezone\nNtR.",  # an odd base
    b"c_codecs\nencode\n(Vx\nVrot13\ntR.",  # codecs beyond text
    b"cbuiltins\nobject.__subclasses__\n.",  # an attribute chain
    b"cpandas.core.indexes.base\n_new_Index\n(cbuiltins\ndict\n(dtR.",  # a pandas helper on a non-pandas class
], ids=["getattr-init", "getattr-subclasses", "reconstructor-popen", "reconstructor-base", "codec", "chain",
        "pandas-helper"])
def test_the_helpers_pickles_need_are_held_to_their_use(data):
    with pytest.raises(pa.UntrustedContentError):
        safe_loads(data)


def test_modules_are_not_imported_on_a_pickles_say(marker):
    data = b"cpairio_test_planted\nanything\n."
    with pytest.raises(pa.UntrustedContentError, match="not imported"):
        safe_loads(data)
    assert "pairio_test_planted" not in sys.modules and not marker.exists()


def test_the_restricted_loader_is_the_c_unpickler():
    assert issubclass(SafeUnpickler, pickle.Unpickler) and pickle.Unpickler is not pickle._Unpickler


PLAIN_VALUES = [np.arange(12).reshape(3, 4), np.array(["a", None, 1.5], dtype=object), np.float64(2.5),
                np.datetime64("2020-01-01"), pd.Series([1.0, None], index=["a", "b"]), pd.Categorical(["a", "b", "a"]),
                pd.date_range("2020", periods=3, tz="Europe/Paris"), pd.MultiIndex.from_tuples([(1, "a"), (2, "b")]),
                pd.period_range("2020-01", periods=2, freq="M"), pd.Series([1, None], dtype="Int64"),
                pd.Timestamp("2021-01-01"), pd.Timedelta("1h"), pd.Interval(0, 1),
                collections.OrderedDict(a=1), collections.defaultdict(list, a=[1]), collections.Counter("abca"),
                collections.deque([1, 2]), complex(1, 2), range(3, 9), slice(1, 5, 2), frozenset({1, "a"}),
                bytearray(b"xy"), Color.RED, Point(1.5, -2.0), Holder("a", [1, {"b": Point(0, 0)}]),
                pathlib.PurePosixPath("/x/y"), datetime.date(2020, 5, 6), datetime.timedelta(seconds=5)]


@pytest.mark.parametrize("protocol", range(6))
@pytest.mark.parametrize("value", PLAIN_VALUES, ids=lambda v: type(v).__name__)
def test_plain_values_load_as_pickle_loads_them(value, protocol):
    data = pickle.dumps(value, protocol=protocol)
    got, expected = safe_loads(data), pickle.loads(data)
    assert type(got) is type(expected)
    assert pickle.dumps(got, protocol=protocol) == pickle.dumps(expected, protocol=protocol)


_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary()
            | st.decimals(allow_nan=False) | st.datetimes() | st.dates() | st.uuids() | st.fractions()
            | st.complex_numbers(allow_nan=False))
_data = st.recursive(_scalars, lambda inner: st.lists(inner) | st.tuples(inner, inner)
                     | st.dictionaries(st.text() | st.integers(), inner) | st.frozensets(st.integers() | st.text())
                     | st.builds(Point, st.floats(allow_nan=False), st.floats(allow_nan=False))
                     | st.builds(Holder, st.text(), inner), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(_data, st.integers(0, 5))
def test_random_plain_data_round_trips_through_the_safe_loader(value, protocol):
    data = pickle.dumps(value, protocol=protocol)
    assert safe_loads(data) == value
    assert pickle.dumps(safe_loads(data), protocol=protocol) == pickle.dumps(pickle.loads(data), protocol=protocol)


def test_add_safe_globals_names_are_checked():
    with pytest.raises(TypeError, match="add_safe_globals"):
        pa.add_safe_globals("os.system")
    with pytest.raises(TypeError, match="module.name"):
        pa.add_safe_globals(["system"])


def test_foreign_marks_are_kept_until_made_here(tmp_path):
    store = ContentStore(tmp_path / "c")
    sha1 = "a" * 40
    assert not store.is_foreign(sha1)
    store.mark_foreign(sha1)
    assert store.is_foreign(sha1)
    store.mark_own(sha1)
    assert not store.is_foreign(sha1)


# --- signed pairs ------------------------------------------------------------------------------


def public_key(home) -> str:
    from pairio.identity import load_identity

    return load_identity(home / "identity", f"{home.name}@lab").public_key


def raw_store(server):
    """The channel as an attacker holding its password uses it: pairs set unsigned, as they please."""
    from pairio.kv.remote import RemoteStore

    return RemoteStore(server.url, "lab-rw", RW_PASSWORD)


@pa.cached
def make_class(n):
    CALLS.append(n)
    return Reduces(n)


def test_a_trusted_writers_arbitrary_class_loads_as_a_remote_hit(server, tmp_path):
    CALLS.clear()
    with pa.config(**machine(server, tmp_path / "a")):
        make_class(5001)
    for fields in ({"trusted_writers": [public_key(tmp_path / "a")]},):
        with pa.config(**machine(server, tmp_path / "b", **fields)), warnings.catch_warnings():
            warnings.simplefilter("error")
            assert make_class(5001).v == 5001
            assert make_class(5001).v == 5001  # then a local hit: still trusted
    assert CALLS == [5001]


def test_trust_by_environment_and_by_the_projects_file(server, tmp_path, monkeypatch):
    CALLS.clear()
    with pa.config(**machine(server, tmp_path / "a")):
        make_class(5101)
        make_class(5102)
    monkeypatch.setenv("PAIRIO_TRUSTED_WRITERS", public_key(tmp_path / "a"))
    pa.reset_config()  # the default now reads the variable
    try:
        with pa.config(**machine(server, tmp_path / "b")):
            assert make_class(5101).v == 5101
    finally:
        monkeypatch.delenv("PAIRIO_TRUSTED_WRITERS")
        pa.reset_config()
    project = tmp_path / "project" / "notebooks"
    project.mkdir(parents=True)
    (tmp_path / "project" / ".pairio-trusted").write_text(f"# the lab's CI\n{public_key(tmp_path / 'a')} ci@lab\n")
    monkeypatch.chdir(project)
    with pa.config(**machine(server, tmp_path / "c")):
        assert make_class(5102).v == 5102
    assert CALLS == [5101, 5102]


def _untrusted_after(server, tmp_path, n, tamper):
    """A's trusted result of ``n``, then ``tamper``; B (trusting A) must compute ``n`` itself."""
    CALLS.clear()
    with pa.config(**machine(server, tmp_path / "a")):
        key = make_class.key(n)
        make_class(n)
    tamper(key)
    with pa.config(**machine(server, tmp_path / "b", trusted_writers=[public_key(tmp_path / "a")])), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert make_class(n).v == n
    assert CALLS == [n, n], "the tampered pair was trusted"
    return [str(w.message) for w in caught]


def test_a_pair_replayed_onto_another_key_is_refused(server, tmp_path):
    from pairio.identity import signature_key

    with pa.config(**machine(server, tmp_path / "a")):
        other = make_class.key(5200)
        make_class(5200)  # A's signed result of another call

    def replay(key):
        store = raw_store(server)
        found = store.get_many("spikes", [other, signature_key(other)])
        # The other call's result and A's signed record of it, under this key.
        store.set_many("spikes", {key: found[other], signature_key(key): found[signature_key(other)]})

    _untrusted_after(server, tmp_path, 5201, replay)


def test_a_signature_replayed_for_another_value_is_refused(server, tmp_path):
    def swap(key):
        store = raw_store(server)
        with pa.config(**machine(server, tmp_path / "m")):
            evil = pa.parse_uri(pa.store_pickle(Reduces(-1))).sha1
        store.set_many("spikes", {key: evil})  # A's record stays: it names A's value, not this one

    said = _untrusted_after(server, tmp_path, 5301, swap)
    assert any("make_reduces" in s for s in said)


def test_a_forged_record_is_refused(server, tmp_path):
    import json

    from pairio.identity import signature_key

    def forge(key):
        store = raw_store(server)
        found = store.get_many("spikes", [key, signature_key(key)])
        with pa.config(**machine(server, tmp_path / "m")):
            record = json.loads(pa.load_bytes(f"sha1://{found[signature_key(key)]}"))
            evil = pa.parse_uri(pa.store_pickle(Reduces(-2))).sha1
            record["pairs"][key] = evil  # A's signature kept, the value changed (as a server operator could)
            forged = pa.parse_uri(pa.store_bytes(json.dumps(record).encode())).sha1
        store.set_many("spikes", {key: evil, signature_key(key): forged})

    _untrusted_after(server, tmp_path, 5401, forge)


def test_a_pair_re_signed_by_another_writer_is_refused_whatever_name_it_gives(server, tmp_path):
    def re_sign(key):
        with pa.config(**machine(server, tmp_path / "m", writer_name="a@lab")):  # A's name, not A's key
            evil = pa.parse_uri(pa.store_pickle(Reduces(-3))).sha1
            pa.set(key, evil, collection="spikes")

    said = _untrusted_after(server, tmp_path, 5501, re_sign)
    assert any("a@lab (ed25519:" in s and public_key(tmp_path / "m")[:20] in s for s in said)


def test_the_private_key_is_private_and_made_once(tmp_path):
    from pairio.identity import KEY_DIR, PRIVATE_KEY_FILE, load_identity

    first = load_identity(tmp_path / "home" / KEY_DIR)
    path = tmp_path / "home" / KEY_DIR / PRIVATE_KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    from pairio import identity

    identity._identities.clear()
    assert load_identity(tmp_path / "home" / KEY_DIR).public_key == first.public_key


# --- the command line --------------------------------------------------------------------------


def cli(home, *args, **env):
    import subprocess

    return subprocess.run([sys.executable, "-m", "pairio", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PAIRIO_DB_PATH": str(home), **env})


def test_identity_and_trust_add_list_remove(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    shown = cli(a, "identity", "--json")
    assert shown.returncode == 0, shown.stderr
    key = json.loads(shown.stdout)["public_key"]
    assert key == public_key(a)
    assert cli(b, "trust", "add", key, "alice").returncode == 0
    listed = json.loads(cli(b, "trust", "list", "--json").stdout)
    assert {"public_key": key, "name": "alice", "listed_in": "pairio trust add"} in listed
    assert cli(b, "trust", "add", "ed25519:not-a-key").returncode == 2
    assert cli(b, "trust", "remove", key).returncode == 0
    assert key not in cli(b, "trust", "list").stdout
    assert cli(b, "trust", "remove", key).returncode == 1


def test_trust_add_makes_a_writers_results_run_and_adopt_signs_old_pairs(server, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    CALLS.clear()
    with pa.config(**machine(server, a)):
        key = make_class.key(6001)
        make_class(6001)
    # An old pair: written before writers signed (its signature pair gone), then adopted by B, who has it.
    from pairio.identity import signature_key

    raw_store(server).set_many("spikes", {signature_key(key): None})
    with pa.config(**machine(server, b)), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pa.config(trust="all"):
            assert make_class(6001).v == 6001  # B ran it once, knowingly: a hit, copied to B's store
    env = {"PAIRIO_URL": server.url, "PAIRIO_CHANNEL": "lab-rw", "PAIRIO_PASSWORD": RW_PASSWORD,
           "PAIRIO_WRITER_NAME": "b@lab"}
    adopted = cli(b, "trust", "adopt", "--collection", "spikes", "--json", **env)
    assert adopted.returncode == 0, adopted.stderr
    assert json.loads(adopted.stdout)["signed"] >= 1
    assert cli(c, "trust", "add", public_key(b), "bob").returncode == 0
    with pa.config(**machine(server, c)), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert make_class(6001).v == 6001
    assert CALLS == [6001]
    shown = cli(c, "show", key, "--json", PAIRIO_COLLECTION="spikes")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["written_by"] == {"writer": "b@lab", "public_key": public_key(b), "trusted": True}


def test_trust_all_warns_once_per_process(server, tmp_path):
    with pa.config(**machine(server, tmp_path / "a")):
        uris = [pa.store_pickle(Reduces(i)) for i in (1, 2)]
    with pa.config(**machine(server, tmp_path / "b"), trust="all"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [pa.load_pickle(u).v for u in uris] == [1, 2]
    assert sum("trust='all'" in str(w.message) for w in caught) == 1


# --- a class's own methods never run on untrusted content ---------------------------------------

RAN: list[str] = []


class _SetsState:
    def __init__(self, v):
        self.v = v

    def __setstate__(self, state):
        RAN.append("__setstate__")
        self.__dict__.update(state)


class _LooksUp:
    def __init__(self, v):
        self.v = v

    def __getattr__(self, name):
        RAN.append(f"__getattr__ {name}")
        raise AttributeError(name)


class _Appends(list):
    def append(self, item):
        RAN.append("append")
        super().append(item)


class _Hashes:
    def __init__(self, v):
        self.v = v

    def __hash__(self):
        RAN.append("__hash__")
        return 1


@dataclasses.dataclass(frozen=True)
class _Frozen:
    x: int
    y: list


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("value", [_SetsState(1), _LooksUp(2), _Appends([3]), {_Hashes(4): 1}, [{_Hashes(5)}]],
                         ids=["setstate", "getattr", "append", "hash-key", "hash-member"])
def test_a_class_whose_own_methods_loading_would_run_is_refused(value, protocol):
    data = pickle.dumps(value, protocol=protocol)
    RAN.clear()  # (what the writer's pickling ran)
    with pytest.raises(pa.UntrustedContentError, match="test_untrusted_content._"):
        safe_loads(data)
    assert RAN == []  # none of its code ran
    pa.add_safe_globals([type(value) if not isinstance(value, (dict, list)) or isinstance(value, _Appends)
                         else _Hashes])  # the reader's own choice: then it loads, methods and all, in every protocol
    try:
        loaded = safe_loads(data)
        assert type(loaded) is type(value)  # (by copyreg._reconstructor in protocols 0 and 1)
    finally:
        from pairio.content.safe_pickle import _added

        _added.clear()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_dataclass_is_still_restored_by_state(protocol):
    loaded = safe_loads(pickle.dumps(_Frozen(1, [2]), protocol=protocol))
    assert loaded == _Frozen(1, [2]) and type(loaded) is _Frozen


# --- a tiny pickle never allocates gigabytes -----------------------------------------------------


class _Calls:
    """Pickles as a call of ``function(*args)`` (what a hostile writer can put in any pickle)."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


class _Bytes(bytes):
    pass


class _HugeBytes(bytes):
    def __reduce_ex__(self, protocol):
        import copyreg

        return copyreg.__newobj__, (type(self), 10**10)


def _huge_array():
    from numpy._core.multiarray import _reconstruct

    return _Calls(_reconstruct, np.ndarray, (10**6, 10**6), b"b")


_HUGE_PICKLES = {"bytearray": lambda: _Calls(bytearray, 10**10), "bytes": lambda: _Calls(bytes, 10**10),
                 "list-range": lambda: _Calls(list, range(10**10)), "set-range": lambda: _Calls(set, range(10**9)),
                 "bytearray-range": lambda: _Calls(bytearray, range(10**10)), "array": _huge_array,
                 "bytes-subclass": lambda: _HugeBytes(b"")}
# copyreg.__newobj__ (how a bytes subclass pickles) exists from protocol 2 on.
_FIRST_PROTOCOL = {"bytes-subclass": 2}


@pytest.mark.parametrize(("make", "protocol"), [
    pytest.param(make, protocol, id=f"{name}-{protocol}")
    for name, make in _HUGE_PICKLES.items()
    for protocol in range(_FIRST_PROTOCOL.get(name, 0), pickle.HIGHEST_PROTOCOL + 1)])
def test_a_tiny_pickle_that_would_allocate_gigabytes_is_refused_naming_the_limit(make, protocol):
    data = pickle.dumps(make(), protocol=protocol)
    assert len(data) < 200
    with pytest.raises(pa.UntrustedContentError, match="more than the limit of"):
        safe_loads(data)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_bytes_ranges_and_arrays_within_the_limits_still_load(protocol):
    value = [bytearray(b"x" * 3000), b"y" * 3000, range(0, 10**6, 3), _Bytes(b"z" * 10),
             np.zeros((300, 200)), {1, 2, 3}, b""]
    loaded = safe_loads(pickle.dumps(value, protocol=protocol))
    assert loaded[:4] == value[:4] and type(loaded[3]) is _Bytes and loaded[5:] == value[5:]
    assert (loaded[4] == value[4]).all()


def test_a_teammates_result_of_a_class_with_its_own_setstate_is_a_miss_that_runs_none_of_it(server, tmp_path):
    @pa.cached
    def make3(n):
        CALLS.append(n)
        return _SetsState(n)

    CALLS.clear()
    with pa.config(**machine(server, tmp_path / "a")):
        make3(4201)
    RAN.clear()
    with pa.config(**machine(server, tmp_path / "b")), warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert make3(4201).v == 4201
    assert CALLS == [4201, 4201] and RAN == []  # computed again on B; the class's __setstate__ never ran
    assert any("_SetsState" in str(w.message) for w in said)


# --- one allocation budget per load; classes whose calls are charged load as themselves ----------


@pytest.fixture
def small_limits(monkeypatch):
    """Limits of 256 KiB a call and 1 MiB a load, so the tests allocate little."""
    from pairio.content import safe_pickle

    monkeypatch.setattr(safe_pickle, "MAX_ALLOCATION_BYTES", 1 << 18)
    monkeypatch.setattr(safe_pickle, "MAX_LOAD_ALLOCATION_BYTES", 1 << 20)


def _copies(function, shared, n):
    """``n`` calls of ``function`` on one memoized ``shared`` (each reference to it is a memo lookup)."""
    return [_Calls(function, shared) for _ in range(n)]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("function, shared", [(bytearray, _Calls(bytes, 200_000)), (list, _Calls(range, 3000)),
                                              (bytes, _Calls(bytearray, 200_000)), (set, _Calls(range, 3000)),
                                              (tuple, list(range(3000))), (pathlib.PurePosixPath, "x" * 50_000),
                                              (decimal.Decimal, "1" * 50_000)],
                         ids=["bytearray-of-bytes", "list-of-range", "bytes-of-bytearray", "set-of-range",
                              "tuple-of-list", "path-of-text", "decimal-of-text"])
def test_many_calls_on_one_memoized_value_share_one_budget_per_load(small_limits, function, shared, protocol):
    assert safe_loads(pickle.dumps(_copies(function, shared, 3), protocol=protocol))  # within the budget
    data = pickle.dumps(_copies(function, shared, 40), protocol=protocol)
    with pytest.raises(pa.UntrustedContentError, match="per load"):
        safe_loads(data)
    with pytest.raises(pa.UntrustedContentError, match="per load"):  # holding the class too changes nothing
        safe_loads(pickle.dumps([function, *_copies(function, shared, 40)], protocol=protocol))
    assert safe_loads(pickle.dumps(_copies(function, shared, 3), protocol=protocol))  # each load its own budget


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_an_array_larger_than_the_budget_that_the_pickle_carries_loads(small_limits, protocol):
    array = np.arange(1 << 18, dtype=np.float64)  # 2 MiB: more than the load's budget
    assert (safe_loads(pickle.dumps(array, protocol=protocol)) == array).all()
    buffers = []
    head = pickle.dumps([array, array + 1], protocol=5, buffer_callback=buffers.append)
    loaded = safe_loads(head, buffers=[b.raw() for b in buffers])  # out of band, as pairio stores arrays
    assert (loaded[0] == array).all() and (loaded[1] == array + 1).all()


def _huge_masked_array():
    from numpy.ma.core import _mareconstruct

    return _Calls(_mareconstruct, np.ndarray, np.ndarray, (10**6, 10**6), np.dtype("f8"))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("make", [lambda: _Calls(np.ndarray, (10**6, 10**6)),
                                  lambda: _Calls(np.ndarray, (10**5,), np.dtype(("f8", (10**5,)))),
                                  _huge_masked_array, lambda: _Calls(np.ma.MaskedArray, [1] * 5),
                                  lambda: _Calls(str, [b"x" * 100] * 10**5)],
                         ids=["ndarray-shape", "ndarray-subarray-dtype", "mareconstruct", "maskedarray-call",
                              "str-of-a-list"])
def test_arrays_made_by_shape_and_text_made_of_containers_are_bounded(make, protocol):
    with pytest.raises(pa.UntrustedContentError, match="more than the limit of|makes text of|calls numpy.ma"):
        safe_loads(pickle.dumps(make(), protocol=protocol))


def test_ndarray_made_by_newobj_is_refused():
    shape = b"J\x40\x42\x0f\x00J\x40\x42\x0f\x00\x86"  # (10**6, 10**6)
    for data in (b"\x80\x02cnumpy\nndarray\n" + shape + b"\x81.",
                 b"\x80\x04\x8c\x05numpy\x8c\x07ndarray\x93" + shape + b"\x81.",
                 b"\x80\x02ccopyreg\n__newobj__\ncnumpy\nndarray\n" + shape + b"\x87R."):
        with pytest.raises((pa.UntrustedContentError, pickle.UnpicklingError)):
            safe_loads(data)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_classes_whose_calls_are_charged_load_as_themselves(protocol):
    value = {"kinds": [bytes, bytearray, range, list, tuple, set, frozenset, dict, str, decimal.Decimal,
                       collections.OrderedDict, collections.Counter, collections.deque, np.ndarray,
                       np.ma.MaskedArray, pathlib.Path, pathlib.PurePosixPath],
             "paths": [pathlib.Path("a/b"), pathlib.PurePosixPath("/c")],
             "factory": collections.defaultdict(bytes, {"a": b"x"}), "made": [bytes(3), bytearray(b"ab"), range(5), b""],
             "point": Point(bytes, [range]), "dtype": np.dtype("f8"), "array": np.arange(3),
             "masked": np.ma.array([1.0, 2.0], mask=[False, True])}
    loaded = safe_loads(pickle.dumps(value, protocol=protocol))
    assert all(a is b for a, b in zip(loaded["kinds"], value["kinds"], strict=True))
    assert loaded["factory"].default_factory is bytes and loaded["factory"] == value["factory"]
    assert loaded["made"] == value["made"] and loaded["point"].x is bytes and loaded["point"].y[0] is range
    assert loaded["dtype"] == value["dtype"] and (loaded["array"] == value["array"]).all()
    assert loaded["paths"] == value["paths"]
    assert loaded["masked"].mask.tolist() == [False, True] and loaded["masked"][0] == 1.0


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_long_range_loads_and_only_making_items_of_it_is_bounded(protocol):
    assert safe_loads(pickle.dumps([range(10**12), range(-5, 10**30, 7)], protocol=protocol)) == [
        range(10**12), range(-5, 10**30, 7)]
    for function in (list, set, tuple, frozenset, bytes, bytearray, collections.deque):
        with pytest.raises(pa.UntrustedContentError, match="more than the limit of"):
            safe_loads(pickle.dumps(_Calls(function, range(10**12)), protocol=protocol))
    with pytest.raises(pa.UntrustedContentError, match="more than the limit of"):
        safe_loads(pickle.dumps(_Calls(list, range(10**30)), protocol=protocol))


# --- opcodes that copy an object into itself or copy a memoized object are charged or refused ----


_SLICE = b"cbuiltins\nslice\nK\x00K\x00\x86R"  # slice(0, 0), by REDUCE


def _self_doubling(target: bytes, n: int, setitems: bool = False, protocol: int = 2) -> bytes:
    """A pickle making ``target`` (opcodes pushing one object) then ``target[0:0] = target`` ``n``
    times: the object doubles each time, 5 bytes of pickle a doubling."""
    step = b"(h\x01h\x00u" if setitems else b"h\x01h\x00s"  # SETITEMS or SETITEM on the memoized target
    return bytes([0x80, protocol]) + target + b"q\x00" + _SLICE + b"q\x010" + step * n + b"."


class _ListBased(list):
    pass


_DOUBLING_TARGETS = {"list": b"]K\x01a", "bytearray": b"cbuiltins\nbytearray\nC\x01x\x85R",
                     "list-subclass": b"c" + __name__.encode() + b"\n_ListBased\n)\x81K\x01a"}


@pytest.mark.parametrize("setitems", [False, True], ids=["setitem", "setitems"])
@pytest.mark.parametrize("target", list(_DOUBLING_TARGETS), ids=list(_DOUBLING_TARGETS))
def test_an_object_assigned_into_a_slice_of_itself_is_refused_naming_the_operation(small_limits, target, setitems):
    data = _self_doubling(_DOUBLING_TARGETS[target], 22, setitems)  # 2**22 items from ~130 bytes
    assert len(data) < 250
    with pytest.raises(pa.UntrustedContentError, match="slice"):
        safe_loads(data)
    with pytest.raises(pa.UntrustedContentError):  # the C unpickler alone refuses it too
        SafeUnpickler(io.BytesIO(data)).load()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_slices_and_dicts_keyed_by_slices_still_load(protocol):
    value = {"s": slice(1, 9, 2), "t": [slice(None)], "l": [1, 2], "b": bytearray(b"ab")}
    assert safe_loads(pickle.dumps(value, protocol=protocol)) == value


def _array_builds(state: bytes, n: int) -> bytes:
    """A pickle of ``n`` arrays each rebuilt (BUILD, ndarray.__setstate__) from one memoized ``state``."""
    new = b"cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
    return (b"\x80\x02(" + new + state + b"q\x00b" + (new + b"h\x00b") * (n - 1) + b"l.")


def _state(dtype: str, raw: object) -> bytes:
    """``(1, shape, dtype, False, raw)`` pickled, ``raw`` a bytes or a list."""
    shape = (len(raw) // np.dtype(dtype).itemsize if isinstance(raw, bytes) else len(raw),)
    return pickle.dumps((1, shape, np.dtype(dtype), False, raw), protocol=2)[2:-1]


@pytest.mark.parametrize("dtype, raw", [(">f8", b"\x00" * 80_000), ("O", [None] * 10_000)],
                         ids=["byteswapped-bytes", "object-list"])
def test_many_arrays_rebuilt_from_one_memoized_state_are_charged_per_copy(small_limits, dtype, raw):
    assert len(safe_loads(_array_builds(_state(dtype, raw), 3))) == 3  # within the budget
    data = _array_builds(_state(dtype, raw), 40)  # 40 copies of 80 kB
    with pytest.raises(pa.UntrustedContentError, match="per load"):
        safe_loads(data)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_large_object_array_the_pickle_carries_loads_uncharged(small_limits, protocol):
    value = np.array([str(i) for i in range(200_000)], dtype=object)  # 1.6 MB of pointers: over the budget
    assert (safe_loads(pickle.dumps(value, protocol=protocol)) == value).all()


def test_setting_items_of_numpy_and_pandas_objects_is_refused_naming_the_operation():
    frame = pickle.dumps(pd.DataFrame({"a": [1.0, 2.0]}), protocol=2)[:-1]
    for data in (frame + b"U\x01bK\x01s.", frame + b"(U\x01bK\x01u.",
                 pickle.dumps(np.zeros(3), protocol=2)[:-1] + b"K\x00K\x01s."):
        with pytest.raises(pa.UntrustedContentError, match="SETITEM"):
            safe_loads(data)


def _new_index(data, **more):
    from pandas.core.indexes.base import _new_Index

    return _Calls(_new_Index, pd.Index, {"data": data, **more})


_SHARED_INTS = np.arange(10_000)  # 80 kB, memoized once in each pickle
_PANDAS_COPIES = {"new-index-converting-dtype": lambda: _new_index(_SHARED_INTS, dtype="float64"),
                  "new-index-copy": lambda: _new_index(_SHARED_INTS, dtype=_SHARED_INTS.dtype, copy=True),
                  "new-index-of-a-list": lambda: _new_index(_SHARED_LIST, dtype=object),
                  "index-call-copy": lambda: _Calls(pd.Index, _SHARED_INTS, None, True),
                  "series-call-copy": lambda: _Calls(pd.Series, _SHARED_INTS, None, None, None, True)}
_SHARED_LIST = list(range(10_000))


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("make", list(_PANDAS_COPIES.values()), ids=list(_PANDAS_COPIES))
def test_pandas_rebuilds_that_copy_one_memoized_array_are_charged_per_copy(small_limits, make, protocol):
    assert len(safe_loads(pickle.dumps([make() for _ in range(3)], protocol=protocol))) == 3  # within the budget
    with pytest.raises(pa.UntrustedContentError, match="per load"):
        safe_loads(pickle.dumps([make() for _ in range(40)], protocol=protocol))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_large_pandas_objects_the_pickle_carries_load_uncharged(small_limits, protocol):
    frame = pd.DataFrame({"x": np.arange(300_000.0), "s": [str(i) for i in range(300_000)]},
                         index=pd.Index(np.arange(300_000) * 2))
    frame["t"] = pd.date_range("2020-01-01", periods=300_000, freq="s")
    multi = pd.MultiIndex.from_arrays([np.arange(300_000) % 7, np.arange(300_000)])
    loaded = safe_loads(pickle.dumps({"frame": frame, "multi": multi, "period": pd.period_range("2020", periods=99)},
                                     protocol=protocol))
    pd.testing.assert_frame_equal(loaded["frame"], frame)
    assert loaded["multi"].equals(multi) and len(loaded["period"]) == 99


class _TextBased(str):
    pass


class _FrozenBased(frozenset):
    pass


class _NewOf:
    """Pickles as ``copyreg.__newobj__(cls, shared)``: a bare instance of ``cls`` made of ``shared``."""

    def __init__(self, cls, shared):
        self.cls, self.shared = cls, shared

    @property
    def __class__(self):  # (the pickler checks that __newobj__'s class is the object's)
        return self.cls

    def __reduce__(self):
        import copyreg

        return copyreg.__newobj__, (self.cls, self.shared)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("cls, shared", [(_TextBased, "x" * 50_000), (_FrozenBased, tuple(range(3000)))],
                         ids=["str-based", "frozenset-based"])
def test_instances_made_of_one_memoized_value_by_a_class_restored_by_state_are_charged(small_limits, cls, shared,
                                                                                      protocol):
    loaded = safe_loads(pickle.dumps([_NewOf(cls, shared) for _ in range(2)], protocol=protocol))
    assert type(loaded[0]) is cls and loaded[0] == cls(shared)
    with pytest.raises(pa.UntrustedContentError, match="per load"):
        safe_loads(pickle.dumps([_NewOf(cls, shared) for _ in range(40)], protocol=protocol))


# --- pickles that can only build plain data (loaded alike with or without trust) ----------------


@pytest.mark.parametrize("protocol", range(6))
@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.__name__)
@pytest.mark.parametrize("where", WHERE)
def test_no_payload_is_taken_for_plain_data(marker, payload, protocol, where):
    from pairio.content.pickles import calls_nothing

    assert not calls_nothing(pickle.dumps(hidden(payload(), where), protocol=protocol))


_PLAIN_DATA = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=5), inner, max_size=4) | st.frozensets(st.integers(), max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(value=_PLAIN_DATA, protocol=st.integers(0, 5))
def test_a_pickle_taken_for_plain_data_loads_alike_as_data_only(value, protocol):
    from pairio.content.pickles import calls_nothing

    data = pickle.dumps(value, protocol=protocol)
    if calls_nothing(data):
        assert safe_loads(data) == pickle.loads(data) == value


def test_small_results_are_mostly_taken_for_plain_data():
    from pairio.content.pickles import CALLS_NOTHING_MAX, calls_nothing

    assert all(calls_nothing(pickle.dumps(v, protocol=5)) for v in (3, 2.5, None, True, "xyz", [1, 2], {"a": 1}))
    assert not calls_nothing(pickle.dumps(collections.OrderedDict(a=1), protocol=5))  # names a class
    assert not calls_nothing(pickle.dumps("x" * CALLS_NOTHING_MAX, protocol=5))  # too long to look through
