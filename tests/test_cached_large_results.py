"""Large results: arrays out of band, read straight into place or mapped read-only, and checked by
their file's signature instead of a hash on every hit."""

from __future__ import annotations

import mmap
import os
import warnings

import pytest

import pairio as pa

np = pytest.importorskip("numpy")

N = 200_000  # 1.6 MB of float64: above the out-of-band and signature thresholds


@pa.cached
def frames(n, seed):
    rng = np.random.default_rng(seed)
    return {"signal": rng.random(n), "labels": np.arange(n, dtype=np.int32)[::-1].copy(), "name": "run"}


@pa.cached(mmap=True)
def mapped_frames(n, seed):
    return frames.__wrapped__(n, seed)


def _object_path(f, *args):
    return pa.content_store(pa.get_config()).path(pa.get(f.key(*args)))


def test_a_hit_returns_writable_arrays_equal_to_the_computed_ones():
    first = frames(N, 1)
    again = frames(N, 1)
    assert np.array_equal(first["signal"], again["signal"]) and np.array_equal(first["labels"], again["labels"])
    assert again["signal"].flags.writeable and again["name"] == "run"
    again["signal"][0] = -1.0  # a copy of its own: the next hit is unchanged
    assert frames(N, 1)["signal"][0] == first["signal"][0]


def test_mmap_returns_read_only_arrays_mapped_from_the_stored_object():
    computed = mapped_frames(N, 2)
    assert computed["signal"].flags.writeable  # the miss returns what the function returned
    hit = mapped_frames(N, 2)
    assert np.array_equal(hit["signal"], computed["signal"]) and np.array_equal(hit["labels"], computed["labels"])
    assert not hit["signal"].flags.writeable
    with pytest.raises(ValueError):
        hit["signal"][0] = 0.0
    base = hit["signal"]
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)


def test_the_mmap_config_field_maps_the_hits_of_functions_that_do_not_choose():
    frames(N, 3)
    with pa.config(mmap=True):
        assert not frames(N, 3)["signal"].flags.writeable
    assert frames(N, 3)["signal"].flags.writeable
    with pytest.raises(pa.ConfigurationError, match="PAIRIO_MMAP"):
        pa.Config.from_env({"PAIRIO_MMAP": "sometimes"})
    assert pa.Config.from_env({"PAIRIO_MMAP": "1"}).mmap is True
    with pytest.raises(TypeError, match="mmap"):
        pa.cached(mmap="yes")(lambda: None)


def test_a_large_result_is_verified_as_written_and_rehashed_only_after_its_file_changed():
    store = pa.content_store(pa.get_config())
    frames(N, 4)
    path = _object_path(frames, N, 4)
    sha1 = path.name
    assert store.is_verified(sha1, os.stat(path))  # no hash needed on the first hit
    os.utime(path, ns=(1, 1))
    assert not store.is_verified(sha1, os.stat(path))
    assert frames(N, 4)["name"] == "run"  # hashed as it was read, and remembered again
    assert store.is_verified(sha1, os.stat(path))


@pytest.mark.parametrize("mapped", [False, True])
def test_a_rewritten_large_result_is_recomputed_never_returned(mapped):
    f = mapped_frames if mapped else frames
    expected = f(N, 5)
    path = _object_path(f, N, 5)
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.seek(os.path.getsize(path) // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0x10]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = f(N, 5)
    assert np.array_equal(again["signal"], expected["signal"])
    assert any("unusable" in str(w.message) or "corrupt" in str(w.message) for w in caught)
