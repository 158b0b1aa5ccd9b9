"""What a hit spares: a call with plain arguments made before is keyed without hashing them again,
and never with a key it no longer has."""

from __future__ import annotations

import sys

import pytest

import pairio as pa
from pairio.memo import key as key_module

SCALE = 2


def scaled(a, b):
    return a * SCALE + len(b)


def fresh(func):
    """A new cached wrapper (its code part computed afresh), as a new process would make."""
    from pairio.memo import code

    code._descriptions.pop(func, None)
    return pa.cached(func)


@pytest.fixture
def hashed(monkeypatch):
    """The ints hashed as arguments from now on (the real hash_int, watched)."""
    seen = []
    real = key_module.hash_int

    def watched(value):
        seen.append(value)
        return real(value)

    monkeypatch.setattr(key_module, "hash_int", watched)
    return seen


def test_a_call_with_plain_arguments_made_before_is_keyed_without_hashing_them(hashed):
    step = fresh(scaled)
    first = step.key(7, "abc")
    assert hashed == [7]
    assert step.key(7, "abc") == first and hashed == [7]
    assert step.key(8, "abc") != first and hashed == [7, 8]


def test_equal_arguments_of_other_types_keep_their_own_keys():
    step = fresh(scaled)
    keys = [step.key(1, "x"), step.key(True, "x"), step.key(1.0, "x"), step.key(1, "x")]
    assert len(set(keys[:3])) == 3 and keys[3] == keys[0]
    assert step.key(0.0, "x") != step.key(-0.0, "x")
    # As a new process keys them, without anything remembered.
    assert [fresh(scaled).key(v, "x") for v in (1, True, 1.0)] == keys[:3]


def test_a_remembered_key_goes_when_a_global_the_step_reads_is_rebound(monkeypatch):
    step = fresh(scaled)
    before = step.key(3, "ab")
    assert step.key(3, "ab") == before
    monkeypatch.setattr(sys.modules[__name__], "SCALE", 3)
    after = step.key(3, "ab")
    assert after != before and after == fresh(scaled).key(3, "ab")
    assert step(3, "ab") == 11


def test_long_strs_and_wide_ints_are_hashed_at_each_call(hashed):
    step = fresh(scaled)
    wide = 1 << 100
    step.key(wide, "abc")
    step.key(wide, "abc")
    assert hashed == [wide, wide]
    long_text = "t" * 10_000
    assert step.key(5, long_text) == step.key(5, long_text) and hashed[2:] == [5, 5]


def test_the_miss_records_the_argument_hashes_of_a_remembered_key():
    step = fresh(scaled)
    key = step.key(4, "abcd")
    step.key(4, "abcd")
    assert step(4, "abcd") == 12
    assert step.explain(4, "abcd")["key"] == key
    [entry] = step.entries()
    assert entry.key == key and set(entry.arguments) == {"a", "b"}
