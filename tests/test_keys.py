"""Key canonicalisation: the exact formula existing pairio clients use."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pairio as pa
from pairio.hashing import check_value, key_string

# Digests computed by hand with `printf '%s' '<json>' | sha1sum`.
HAND_COMPUTED = [
    (dict(operation="add", arg1=12, arg2=30), "8b63bdedf159d59cdd42afec749ce2046bf18f09"),
    ([1, "a", {"b": None, "a": []}], "847edac05fa93b14b76de08a722f3d8682784cb5"),
    ({"b": None, "a": []}, "c5a4b3ec5b65355a007f5f52bb66bdb7de0a041d"),
    ({"name": "café"}, "7076368d5b4b3b99fde90e479bf7e0c8ba1373b9"),
    (["\U0001f600"], "4eee794da696b5585edd22cf8c9e3ea2ba0ec648"),
    ({"y": [True, False], "x": 1.5}, "8a74f0e6df5360d75783d44b99ec698558077fde"),
]


@pytest.mark.parametrize("key,digest", HAND_COMPUTED)
def test_dict_and_list_keys_hash_to_hand_computed_digests(key, digest):
    assert key_string(key) == digest


def test_str_key_is_stored_as_is():
    assert key_string("some-string-80-or-fewer-characters") == "some-string-80-or-fewer-characters"


def test_str_key_of_80_characters_is_accepted_and_81_rejected():
    assert key_string("k" * 80) == "k" * 80
    with pytest.raises(pa.InvalidKeyError, match="81 characters long; the limit is 80"):
        key_string("k" * 81)


def test_empty_key_is_rejected():
    with pytest.raises(pa.InvalidKeyError, match="empty"):
        key_string("")


@pytest.mark.parametrize("key", [12, 1.5, None, b"bytes", {"a"}])  # a tuple is a list (test_first_day_fixes)
def test_keys_of_other_types_are_rejected_naming_the_type(key):
    with pytest.raises(pa.InvalidKeyError, match=type(key).__name__):
        key_string(key)


def test_non_json_serialisable_key_is_rejected():
    with pytest.raises(pa.InvalidKeyError, match="not JSON-serialisable"):
        key_string({"a": object()})


def test_invalid_key_error_is_a_value_error():
    assert issubclass(pa.InvalidKeyError, ValueError)
    assert issubclass(pa.InvalidKeyError, pa.PairioError)


@pytest.mark.parametrize("value", ["", "v", "x" * 80])
def test_values_up_to_80_characters_are_accepted(value):
    assert check_value(value) == value


def test_value_over_80_characters_is_rejected_naming_key_and_limit():
    with pytest.raises(pa.InvalidValueError, match=r"key 'k' is 81 characters long; the limit is 80"):
        check_value("x" * 81, "k")


@pytest.mark.parametrize("value", [42, b"bytes", ["a"], 1.0])
def test_non_str_values_are_rejected(value):
    with pytest.raises(pa.InvalidValueError, match=type(value).__name__):
        check_value(value)


# --- properties ---------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
json_keys = st.dictionaries(st.text(max_size=8), json_values, max_size=6) | st.lists(json_values, max_size=6)


@given(json_keys)
def test_hashed_key_is_sha1_of_sorted_compact_utf8_json(key):
    text = json.dumps(key, sort_keys=True, separators=(",", ":"))
    assert key_string(key) == hashlib.sha1(text.encode("utf-8")).hexdigest()


@given(st.dictionaries(st.text(max_size=8), json_values, min_size=1, max_size=8), st.randoms())
def test_dict_key_order_never_matters_at_any_depth(key, rnd):
    def shuffled(obj):
        if isinstance(obj, dict):
            items = list(obj.items())
            rnd.shuffle(items)
            return {k: shuffled(v) for k, v in items}
        if isinstance(obj, list):
            return [shuffled(v) for v in obj]
        return obj

    assert key_string(shuffled(key)) == key_string(key)


@given(st.lists(json_values, min_size=2, max_size=5, unique_by=lambda v: json.dumps(v, sort_keys=True)))
def test_list_order_matters(items):
    assert key_string(items) != key_string(list(reversed(items)))


@given(st.text(min_size=1, max_size=80))
def test_any_short_str_is_its_own_key(text):
    assert key_string(text) == text


@given(json_keys)
def test_hashed_keys_are_40_lowercase_hex(key):
    digest = key_string(key)
    assert len(digest) == 40 and all(c in "0123456789abcdef" for c in digest)


def test_key_or_value_with_a_lone_surrogate_is_rejected_and_stores_nothing():
    with pytest.raises(pa.InvalidKeyError, match="surrogate"):
        pa.set("bad-\ud800", "v")
    with pytest.raises(pa.InvalidValueError, match="surrogate"):
        pa.set("k", "bad-\udc00")
    assert pa.get("k") is None


def test_unicode_keys_and_values_round_trip():
    pa.set("ключ-é-\U0001f600", "значение-\U0001f600")
    assert pa.get("ключ-é-\U0001f600") == "значение-\U0001f600"
    assert pa.get_many(["ключ-é-\U0001f600", "ключ"]) == {"ключ-é-\U0001f600": "значение-\U0001f600", "ключ": None}


def test_key_nested_too_deeply_to_encode_is_an_invalid_key():
    key: list = []
    inner = key
    for _ in range(100_000):
        inner.append([])
        inner = inner[0]
    with pytest.raises(pa.InvalidKeyError, match="not JSON-serialisable"):
        pa.set(key, "v")


@given(st.lists(st.text(max_size=90) | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), max_size=12))
def test_a_batch_of_keys_is_checked_exactly_as_key_by_key(keys):
    from pairio.hashing import key_strings

    try:
        expected = list(dict.fromkeys(map(key_string, keys)))
    except pa.InvalidKeyError:
        with pytest.raises(pa.InvalidKeyError):
            key_strings(keys)
    else:
        assert key_strings(keys) == expected
