"""The first check of a mutable global at every call: True only while nothing in it changed."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairio.memo import same_objects
from pairio.memo.arguments import hash_value
from pairio.memo.code import _content_check, _plain


@pytest.fixture(params=["addresses", "one by one"])
def way(request, monkeypatch):
    """Each check both ways: by the bytes of item addresses (CPython), and item by item."""
    if request.param == "one by one":
        monkeypatch.setattr(same_objects, "_addresses", lambda: None)
    elif same_objects._addresses() is None:
        pytest.skip("this interpreter's tuples cannot be read by address")
    return request.param


def _otherwise_false():
    return False


@pytest.mark.parametrize("size", [3, 300])
@pytest.mark.parametrize(("make", "change"), [
    (lambda n: [1] * n, lambda v: v.__setitem__(-1, 1.0)),
    (lambda n: [1] * n, lambda v: v.__setitem__(0, True)),
    (lambda n: [1] * n, lambda v: v.append(1)),
    (lambda n: {i: 1 for i in range(n)}, lambda v: v.__setitem__(0, 1.0)),
    (lambda n: {i: 1 for i in range(n)}, lambda v: v.__setitem__(-1, 1)),
    (lambda n: {i: 1 for i in range(n)}, lambda v: (v.pop(0), v.__setitem__(0, 1))),  # same items, new order
    (lambda n: set(range(n)), lambda v: (v.discard(1), v.add(1.0))),
    (lambda n: {"rows": [[1]] * n}, lambda v: v["rows"][0].__setitem__(0, True)),
    (lambda n: ([1] * n, "label"), lambda v: v[0].__setitem__(-1, 2)),
    (lambda n: [(1, [2])] * n, lambda v: v[-1][1].append(3)),
], ids=["int to float", "int to bool", "append", "dict value", "dict key added", "dict reordered",
        "set member", "nested list", "list in a tuple", "list in a tuple in a list"])
def test_a_change_anywhere_in_a_container_is_seen(way, size, make, change):
    value = make(size)
    check = same_objects.holds_same(value, _otherwise_false)
    assert check()
    change(value)
    assert not check()


def test_a_container_holding_no_mutable_container_never_changes(way):
    value = (abs, int, 1, "a")
    assert same_objects.holds_same(value, _otherwise_false)()


def test_an_equal_value_put_back_is_left_to_the_comparison_of_values(way):
    value = [10**20] * 100
    compared = []
    check = same_objects.holds_same(value, lambda: compared.append(1) or True)
    value[5] = int("1" + "0" * 20)  # the same number, another object
    assert check() and compared == [1]


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.0, 1.0, -0.0, 2.5]),
                     st.text(max_size=2))
_plain_values = st.recursive(
    _scalars, lambda inner: st.one_of(st.lists(inner, max_size=40), st.tuples(inner, inner),
                                      st.dictionaries(st.one_of(st.integers(-3, 3), st.text(max_size=2)), inner,
                                                      max_size=40),
                                      st.frozensets(st.integers(-3, 3), max_size=5)),
    max_leaves=80)


def _containers(value, found):
    if isinstance(value, (list, dict)):
        found.append(value)
    items = list(value.values()) if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else []
    for item in items:
        _containers(item, found)
    return found


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(st.lists(_plain_values, max_size=60), st.dictionaries(st.text(max_size=2), _plain_values,
                                                                           max_size=60)),
       new=_scalars, data=st.data())
def test_the_check_of_a_global_is_true_only_while_its_typed_hash_is_unchanged(value, new, data):
    assert _plain(value, [10_000])
    digest = hash_value(value, "G")
    check = _content_check(value, digest, "G", False)
    assert check()
    before = copy.deepcopy(value)
    target = data.draw(st.sampled_from(_containers(value, [])))
    if isinstance(target, list):
        if target and data.draw(st.booleans()):
            target[data.draw(st.integers(0, len(target) - 1))] = new
        else:
            target.append(new)
    else:
        target[data.draw(st.one_of(st.sampled_from(sorted(target, key=repr)) if target else st.nothing(),
                                   st.text(max_size=2)))] = new
    if check():  # a check that says "unchanged" must be right: else a stale hit
        assert hash_value(value, "G") == digest, (before, value)
