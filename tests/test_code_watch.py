"""The check a cached function makes of the globals it reads, at every call: everything compared by
identity is read in one pass (by the item addresses of one list, on CPython), each signal on its own
only when that pass sees a difference. Every change to what the key counts must still be seen."""

from __future__ import annotations

import importlib.util
import struct
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairio.memo import same_objects
from pairio.memo.arguments import hash_value
from pairio.memo.code import Watch, _content_check, _immutable, describe_function

_MODULE = """
A_LIST = [1, 2, 3]
B_LIST = [4, 5]
FLOATS = [0.0] * 40
OPTIONS = {"scale": 2, "rows": [1, 2]}
LEVEL = 0.0
MEMBERS = {1, 2, 3}
Z_BIG = list(range(1000))


def helper(x):
    return x + FLOATS[0]


def step(x):
    return (helper(x) + len(A_LIST) + len(B_LIST) + OPTIONS["scale"] + len(OPTIONS["rows"]) + LEVEL
            + len(MEMBERS) + len(Z_BIG))
"""


@pytest.fixture(params=["at once", "one by one"])
def module(request, tmp_path, monkeypatch):
    """A module of settings read by ``step``; checked both ways: by the addresses of one list of
    everything (CPython), and each signal on its own."""
    if request.param == "one by one":
        monkeypatch.setattr(same_objects, "_list_header", lambda: None)
        monkeypatch.setattr(same_objects, "_addresses", lambda: None)
    elif same_objects._list_header() is None:
        pytest.skip("this interpreter's lists cannot be read by address")
    path = tmp_path / "watched_settings.py"
    path.write_text(textwrap.dedent(_MODULE))
    spec = importlib.util.spec_from_file_location("watched_settings", path)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "watched_settings", mod)
    spec.loader.exec_module(mod)
    return mod


def _minus(x):
    return x - FLOATS[0]  # noqa: F821 (run as the module's helper)


def _replace_code(m):
    m.helper.__code__ = _minus.__code__  # as %autoreload does


def _delete(m):
    del m.B_LIST


@pytest.mark.parametrize("change", [
    lambda m: m.Z_BIG.__setitem__(1, True),  # 1 -> True: equal, hashed apart
    lambda m: m.Z_BIG.__setitem__(500, 500.0),
    lambda m: m.FLOATS.__setitem__(3, -0.0),  # 0.0 -> -0.0
    lambda m: (m.Z_BIG.append(1000), m.Z_BIG.pop(0)),  # the same length, other items
    lambda m: m.OPTIONS["rows"].__setitem__(0, 5),  # a list in a dict
    lambda m: m.OPTIONS["rows"].append(3),
    lambda m: m.OPTIONS.__setitem__("scale", 2.0),
    lambda m: (m.MEMBERS.discard(1), m.MEMBERS.add(True)),
    # The last item of one list moved to the front of the next: all the items, in order, are as they were.
    lambda m: m.B_LIST.insert(0, m.A_LIST.pop()),
    lambda m: m.A_LIST.insert(0, m.B_LIST.pop()),
    lambda m: setattr(m, "LEVEL", 0),  # rebound to an equal value of another type
    _replace_code,
    _delete,
], ids=["1 to True", "int to float", "0.0 to -0.0", "appended then removed", "nested list item",
        "nested list appended", "dict value to float", "set member to True", "moved to the next list",
        "moved to the previous list", "rebound", "helper's code replaced",
        "deleted"])
def test_every_change_to_what_the_key_counts_is_seen(module, change):
    before = describe_function(module.step)
    assert before.watch.fresh() and before.watch.fresh()
    change(module)
    assert not before.watch.fresh()
    if hasattr(module, "B_LIST"):
        assert describe_function(module.step).digest != before.digest
    assert not before.watch.fresh()  # (and still not: the watch is of what was read then)


def test_a_list_rebound_to_an_equal_one_is_watched_from_then_on(module):
    before = describe_function(module.step)
    module.A_LIST = [1, 2, 3]
    assert not before.watch.fresh()
    after = describe_function(module.step)
    assert after.digest == before.digest and after.watch.fresh()  # counted by value: the same key
    module.A_LIST[0] = True
    assert not after.watch.fresh() and describe_function(module.step).digest != before.digest


def test_nothing_changed_is_fresh_at_every_call(module):
    before = describe_function(module.step)
    module.Z_BIG[500] = int("500")  # the same number, another object: counted the same
    module.OPTIONS["new"] = 1
    del module.OPTIONS["new"]  # put back as it was
    module.UNREAD = 1  # a global the step does not read
    for _ in range(3):
        assert before.watch.fresh()
    assert describe_function(module.step) is before


def test_a_list_is_read_by_the_addresses_of_its_items():
    if same_objects._list_header() is None:
        pytest.skip("this interpreter's lists cannot be read by address")
    items = [object(), "a", 1 << 80, None] * 20
    read = same_objects.list_addresses(len(items))
    assert read(items) == struct.pack(f"{len(items)}P", *map(id, items))
    assert read(items[:-1]) == b""  # another length: never read past the list's array
    assert same_objects.list_addresses(3) is None  # a few: compared one by one


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.0, 1.0, -0.0, 2.5]),
                     st.text(max_size=2))
_settings = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=30), st.dictionaries(st.one_of(st.integers(-3, 3), st.text(max_size=2)), inner,
                                                  max_size=10)), max_leaves=60)


def _containers(value, found):
    if isinstance(value, (list, dict)):
        found.append(value)
        for item in value.values() if isinstance(value, dict) else value:
            _containers(item, found)
    return found


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.one_of(st.lists(_settings, min_size=1, max_size=30), _settings), min_size=1, max_size=4),
       new=_scalars, data=st.data())
def test_a_watch_is_fresh_only_while_the_typed_hash_of_what_it_read_is_unchanged(values, new, data):
    namespace = {f"G{i}": value for i, value in enumerate(values)}
    watch = Watch()
    for name, value in namespace.items():
        watch.read(namespace, name, value)
        if not _immutable(value):
            watch.check(_content_check(value, hash_value(value, name), name, False))
    watch.freeze()
    assert watch.fresh() and not watch.changed()
    before = {name: hash_value(value, name) for name, value in namespace.items()}
    targets = _containers(list(namespace.values()), [])[1:]
    lists = [target for target in targets if isinstance(target, list)]
    if len(lists) > 1 and lists[0] and data.draw(st.booleans()):  # an item moved from one list to another
        source, target = data.draw(st.permutations(lists).filter(lambda two: two[0]))[:2]
        target.insert(data.draw(st.sampled_from([0, len(target)])), source.pop(data.draw(st.sampled_from([0, -1]))))
    elif targets and data.draw(st.booleans()):
        target = data.draw(st.sampled_from(targets))
        if isinstance(target, list) and target and data.draw(st.booleans()):
            target[data.draw(st.integers(0, len(target) - 1))] = new
        elif isinstance(target, list):
            target.insert(data.draw(st.integers(0, len(target))), target.pop() if target and data.draw(
                st.booleans()) else new)
        else:
            target[data.draw(st.one_of(st.integers(-3, 3), st.text(max_size=2)))] = new
    else:
        namespace[data.draw(st.sampled_from(sorted(namespace)))] = new
    fresh = watch.fresh()
    assert fresh == (not watch.changed())
    if fresh:  # a watch that says "unchanged" must be right: else a stale hit
        assert {name: hash_value(value, name) for name, value in namespace.items()} == before
