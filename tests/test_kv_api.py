"""pa.get / pa.set / pa.get_many / pa.set_many on the embedded default store."""

from __future__ import annotations

import pytest

import pairio as pa


def test_set_then_get_round_trips():
    pa.set("some-string-80-or-fewer-characters", "another-string-80-or-fewer-characters")
    assert pa.get("some-string-80-or-fewer-characters") == "another-string-80-or-fewer-characters"


def test_dict_key_order_never_matters():
    pa.set(dict(operation="add", arg1=12, arg2=30), "42")
    assert pa.get(dict(arg2=30, operation="add", arg1=12)) == "42"
    assert pa.get("8b63bdedf159d59cdd42afec749ce2046bf18f09") == "42"


def test_get_of_a_key_never_set_is_none():
    assert pa.get("never-set") is None


def test_set_replaces_an_earlier_value():
    pa.set("k", "one")
    pa.set("k", "two")
    assert pa.get("k") == "two"


def test_set_none_deletes():
    pa.set("k", "v")
    pa.set("k", None)
    assert pa.get("k") is None
    pa.set("k", None)  # deleting an absent key is fine


def test_collections_are_separate():
    pa.set("k", "in-a", collection="a")
    pa.set("k", "in-b", collection="b")
    assert pa.get("k", collection="a") == "in-a"
    assert pa.get("k", collection="b") == "in-b"
    assert pa.get("k") is None
    with pa.config(collection="a"):
        assert pa.get("k") == "in-a"


def test_invalid_value_stores_nothing():
    pa.set("k", "old")
    with pytest.raises(pa.InvalidValueError, match="limit is 80"):
        pa.set("k", "x" * 81)
    with pytest.raises(pa.InvalidValueError, match="int"):
        pa.set("k", 42)
    assert pa.get("k") == "old"


def test_invalid_collection_is_rejected():
    with pytest.raises(pa.ConfigurationError, match="collection"):
        pa.get("k", collection="")
    with pytest.raises(pa.ConfigurationError, match="collection"):
        pa.set("k", "v", collection="c" * 81)


def test_get_many_returns_every_key_with_none_for_absent():
    pa.set("a", "1")
    pa.set({"x": 1}, "2")
    result = pa.get_many(["a", {"x": 1}, "missing"])
    assert result == {"a": "1", pa.key_string({"x": 1}): "2", "missing": None}


def test_get_many_of_thousands_of_keys():
    pairs = {f"key-{i}": f"value-{i}" for i in range(2345)}
    pa.set_many(pairs)
    result = pa.get_many(list(pairs) + ["absent"])
    assert result == {**pairs, "absent": None}


def test_set_many_accepts_pairs_with_dict_keys_and_none_deletes():
    pa.set("gone", "soon")
    pa.set_many([({"a": 1}, "one"), ("b", "two"), ("gone", None)])
    assert pa.get({"a": 1}) == "one" and pa.get("b") == "two" and pa.get("gone") is None


def test_set_many_with_one_bad_value_stores_nothing():
    with pytest.raises(pa.InvalidValueError, match="'bad'"):
        pa.set_many({"good": "v", "bad": "x" * 81})
    assert pa.get("good") is None


def test_set_many_with_one_bad_key_stores_nothing():
    with pytest.raises(pa.InvalidKeyError):
        pa.set_many([("good", "v"), ("k" * 81, "v")])
    assert pa.get("good") is None


def test_delete_removes_a_key():
    pa.set("k", "v")
    pa.delete("k")
    assert pa.get("k") is None


@pytest.mark.parametrize("mode", ["remote", "local_then_remote", "remote_then_local"])
def test_remote_get_modes_without_a_server_raise_instead_of_reading_locally(mode):
    pa.set("k", "v")
    with pytest.raises(pa.ConfigurationError, match="no server configured"):
        pa.get("k", get_from=mode)


@pytest.mark.parametrize("mode", ["remote", "local_and_remote"])
def test_remote_set_modes_without_a_server_raise_and_store_nothing(mode):
    with pytest.raises(pa.ConfigurationError, match="no server configured"):
        pa.set("k", "v", set_to=mode)
    assert pa.get("k") is None


def test_server_url_without_channel_or_password_is_a_clear_error():
    with pytest.raises(pa.ConfigurationError, match="channel or password is missing"):
        pa.get("k", get_from="remote", url="http://127.0.0.1:9")


def test_the_default_store_lives_in_the_database_path(pairio_home):
    pa.set("k", "v")
    assert (pairio_home / "kv.sqlite3").exists()


def test_collection_with_a_lone_surrogate_is_rejected_and_stores_nothing(pairio_home):
    for call in (lambda: pa.set("k", "v", collection="c-\ud800"), lambda: pa.get("k", collection="c-\ud800"),
                 lambda: pa.set_many({"k": "v"}, collection="c-\ud800"),
                 lambda: pa.get_many(["k"], collection="c-\ud800")):
        with pytest.raises(pa.ConfigurationError, match="collection.*surrogate"):
            call()
    with pytest.raises(pa.ConfigurationError, match="collection.*surrogate"):
        pa.set_config(collection="c-\ud800")
    assert pa.get_config().collection == "default"
    assert not (pairio_home / "kv.sqlite3").exists()


def test_get_many_of_a_single_str_is_rejected_not_read_letter_by_letter():
    with pytest.raises(pa.InvalidKeyError, match="list of keys, got str"):
        pa.get_many("abc")
    with pytest.raises(pa.InvalidKeyError, match="list of keys, got int"):
        pa.get_many(5)


def test_set_many_of_strs_is_rejected_not_unpacked_as_pairs():
    with pytest.raises(pa.InvalidKeyError, match="pairs, got 'ab'"):
        pa.set_many(["ab"])
    with pytest.raises(pa.InvalidKeyError, match="pairs, got str"):
        pa.set_many("ab")
    with pytest.raises(pa.InvalidKeyError, match=r"pairs, got \('k', 'v', 'extra'\)"):
        pa.set_many([("good", "v"), ("k", "v", "extra")])
    assert pa.get("a") is None and pa.get("good") is None


def test_get_many_finds_keys_holding_a_nul_character_in_a_large_batch():
    keys = [f"key-{i}" for i in range(20)] + ["nul-\x00-inside", "\x00"]
    pa.set_many({k: f"v{i}" for i, k in enumerate(keys)})
    assert pa.get_many(keys) == {k: f"v{i}" for i, k in enumerate(keys)}
    assert pa.get_many(keys + ["absent-\x00"])["absent-\x00"] is None
