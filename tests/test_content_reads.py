"""Every content read is checked against the object's hash: small objects each time, large ones
whenever their file changed since they were last verified (size, mtime, ctime, inode)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pairio as pa
from pairio.cli import CORRUPT, main
from pairio.content import ContentStore
from pairio.content import store as store_module
from pairio.content.store import SIGNATURE_MIN_SIZE

LARGE = SIGNATURE_MIN_SIZE + 12_345


def _store() -> ContentStore:
    return pa.content_store(pa.get_config())


def _rewrite(uri: str, change) -> str:
    """Rewrite the object of ``uri`` in place with ``change(bytearray)``; returns its path."""
    path = _store().path(pa.parse_uri(uri).sha1)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    change(data)
    with open(path, "r+b") as f:
        f.write(data)
        f.truncate()
    return str(path)


def _flip(data: bytearray) -> None:
    data[len(data) // 2] ^= 0x01


@pytest.fixture
def hashes(monkeypatch):
    """Counts the objects the store hashes whole."""
    calls = []
    real = store_module.sha1_of_stream

    def counting(f):
        calls.append(f.name)
        return real(f)

    monkeypatch.setattr(store_module, "sha1_of_stream", counting)
    return calls


def test_a_large_object_is_hashed_only_when_its_file_changed_since_it_was_verified(hashes):
    data = os.urandom(LARGE)
    uri = pa.store_bytes(data)
    assert pa.load_bytes(uri) == data and pa.load_bytes(uri) == data
    assert hashes == []  # verified as it was written
    path = _store().path(pa.parse_uri(uri).sha1)
    os.utime(path, ns=(1, 1))  # a change of signature, content intact
    assert pa.load_bytes(uri) == data
    assert len(hashes) == 1
    assert pa.load_bytes(uri) == data and pa.load_text(pa.store_text("x")) == "x"
    assert len(hashes) == 2  # the small object: hashed on every read; the large one no more


def test_a_large_object_verified_in_another_process_is_not_hashed_again(hashes, tmp_path):
    data = os.urandom(LARGE)
    uri = pa.store_bytes(data)
    os.utime(_store().path(pa.parse_uri(uri).sha1), ns=(1, 1))
    assert pa.load_bytes(uri) == data  # verified, and remembered in the hash cache's table
    fresh = ContentStore(_store().directory, hash_cache=pa.content.HashCache(pa.get_config().database_dir))
    with fresh.open(pa.parse_uri(uri).sha1) as f:
        assert f.read() == data
    assert len(hashes) == 1


@pytest.mark.parametrize("size", [1000, LARGE])
@pytest.mark.parametrize("load", ["load_bytes", "load_text", "load_file", "cat", "load_object", "load_pickle"])
def test_a_rewritten_object_is_never_read_silently(size, load, capsysbinary):
    payload = {"values": "x" * size}
    uri = {"load_object": lambda: pa.store_object(payload),
           "load_pickle": lambda: pa.store_pickle(payload)}.get(load, lambda: pa.store_text("y" * size))()
    _rewrite(uri, _flip)
    if load == "cat":
        assert main(["cat", uri]) == CORRUPT
        assert uri in capsysbinary.readouterr().err.decode()
    else:
        with pytest.raises(pa.CorruptContentError, match=repr(uri)):
            getattr(pa, load)(uri)
    assert not _store().has(pa.parse_uri(uri).sha1)  # quarantined


def test_a_truncated_or_replaced_large_object_is_caught(tmp_path):
    data = os.urandom(LARGE)
    uri = pa.store_bytes(data)
    _rewrite(uri, lambda d: d.__delitem__(slice(-1, None)))
    with pytest.raises(pa.CorruptContentError):
        pa.load_bytes(uri)
    uri = pa.store_bytes(data)  # stored again: repaired
    path = _store().path(pa.parse_uri(uri).sha1)
    other = tmp_path / "other"
    other.write_bytes(bytes(reversed(data)))
    os.replace(other, path)  # a new inode under the object's name
    with pytest.raises(pa.CorruptContentError):
        pa.load_bytes(uri)


def test_damage_that_leaves_the_signature_unchanged_needs_verify():
    # What the signature cannot see (a bit flipped on the disk itself): simulated by recording
    # the damaged file's signature as verified. A plain read returns it; verify=True does not.
    data = os.urandom(LARGE)
    uri = pa.store_bytes(data)
    path = _rewrite(uri, _flip)
    sha1 = pa.parse_uri(uri).sha1
    _store().mark_verified(sha1, os.stat(path))
    assert pa.load_bytes(uri) != data
    with pytest.raises(pa.CorruptContentError, match=repr(uri)):
        pa.load_bytes(uri, verify=True)
    assert not _store().has(sha1)


def test_intact_content_read_as_the_wrong_kind_is_a_format_error_naming_it():
    text = pa.store_text("not json {")
    with pytest.raises(pa.ContentFormatError, match=repr(text)):
        pa.load_object(text)
    with pytest.raises(pa.ContentFormatError, match=repr(text)):
        pa.load_pickle(text)
    binary = pa.store_bytes(b"\xff\xfe\x00")
    with pytest.raises(pa.ContentFormatError, match=repr(binary)):
        pa.load_text(binary)
    assert _store().has(pa.parse_uri(text).sha1)  # intact: not quarantined


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                          lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)),
       position=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_any_flipped_bit_of_a_json_or_pickle_object_is_an_error_naming_it(value, position, bit):
    for uri, load in ((pa.store_object(value), pa.load_object), (pa.store_pickle(value), pa.load_pickle)):
        def flip(data, position=position, bit=bit):
            data[int(position * len(data))] ^= 1 << bit
        _rewrite(uri, flip)
        with pytest.raises(pa.CorruptContentError, match=repr(uri)):
            load(uri)


def test_a_pickle_with_large_arrays_round_trips_and_maps_read_only():
    np = pytest.importorskip("numpy")
    value = {"a": np.arange(100_000, dtype=np.float64), "b": [np.ones((300, 300), dtype=np.int32).T], "c": "text"}
    uri = pa.store_pickle(value)
    loaded = pa.load_pickle(uri)
    assert np.array_equal(loaded["a"], value["a"]) and np.array_equal(loaded["b"][0], value["b"][0])
    assert loaded["a"].flags.writeable
    mapped = pa.load_pickle(uri, mmap=True)
    assert np.array_equal(mapped["a"], value["a"]) and not mapped["a"].flags.writeable
    with open(_store().path(pa.parse_uri(uri).sha1), "rb") as f:
        head = f.read(2)
    assert head == b"\x80\x05"  # a pickle first; its buffers follow it


def test_a_large_object_written_here_is_known_verified_to_other_processes_once_written_out():
    from pairio.deferred import drain_all

    data = os.urandom(LARGE)
    uri = pa.store_bytes(data)
    path = str(_store().path(pa.parse_uri(uri).sha1))
    drain_all()  # what exit does: the queued signatures reach the table
    elsewhere = pa.content.HashCache(pa.get_config().database_dir)  # nothing in memory: the table answers
    assert elsewhere.lookup(path, os.stat(path)) == pa.parse_uri(uri).sha1
    # Written out again after that: the writer starts anew.
    again = pa.store_bytes(os.urandom(LARGE))
    drain_all()
    path = str(_store().path(pa.parse_uri(again).sha1))
    assert elsewhere.lookup(path, os.stat(path)) == pa.parse_uri(again).sha1
