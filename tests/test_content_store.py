"""The content store through pa.store_*/load_*: round trips, dedup, atomicity, errors, verify, fsck."""

from __future__ import annotations

import hashlib
import os
import tempfile

import pytest

import pairio as pa
from pairio.content import ContentStore

HELLO_SHA1 = "a09fd13fd92800aeafe475e9113efe216788d934"  # sha1 of b"Hello, pairio.\n"


def _store() -> ContentStore:
    return pa.content_store(pa.get_config())


def _corrupt(sha1: str) -> None:
    path = _store().path(sha1)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


# --- storing and loading ----------------------------------------------------------


def test_store_text_gives_the_documented_uri_and_loads_back():
    uri = pa.store_text("Hello, pairio.\n")
    assert uri == f"sha1://{HELLO_SHA1}/file.txt"
    assert pa.load_text(uri) == "Hello, pairio.\n"
    assert pa.load_text(f"sha1://{HELLO_SHA1}") == "Hello, pairio.\n"  # the name is informational


def test_store_bytes_object_and_pickle_round_trip():
    assert pa.load_bytes(pa.store_bytes(b"\x00\x01\x02")) == b"\x00\x01\x02"
    assert pa.load_object(pa.store_object({"a": [1, 2]})) == {"a": [1, 2]}
    obj = {"f": lambda x: x * 2, "data": list(range(10))}
    loaded = pa.load_pickle(pa.store_pickle(obj))
    assert loaded["f"](21) == 42 and loaded["data"] == obj["data"]


def test_equal_objects_give_equal_uris_whatever_the_key_order():
    assert pa.store_object({"a": 1, "b": 2}) == pa.store_object({"b": 2, "a": 1})


def test_store_file_names_the_uri_after_the_file(tmp_path):
    path = tmp_path / "recording.dat"
    path.write_bytes(b"Hello, pairio.\n")
    assert pa.store_file(path) == f"sha1://{HELLO_SHA1}/recording.dat"
    assert pa.store_file(path, name="other.bin").endswith("/other.bin")


def test_load_file_returns_the_local_path_or_a_copy_at_dest(tmp_path):
    uri = pa.store_bytes(b"payload")
    local = pa.load_file(uri)
    assert open(local, "rb").read() == b"payload"
    dest = tmp_path / "out" / "copy.dat"
    assert pa.load_file(uri, dest=dest) == str(dest)
    assert dest.read_bytes() == b"payload"
    assert not os.path.samefile(local, dest)


def test_a_copy_at_dest_is_fsynced_only_when_durable(tmp_path, monkeypatch):
    uri = pa.store_bytes(b"payload")
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    pa.load_file(uri, dest=tmp_path / "plain.dat")
    assert synced == []
    pa.load_file(uri, dest=tmp_path / "durable.dat", durable=True)
    assert synced and (tmp_path / "durable.dat").read_bytes() == b"payload"


def test_load_file_into_a_directory_uses_the_uri_name(tmp_path):
    uri = pa.store_bytes(b"payload", name="named.bin")
    assert pa.load_file(uri, dest=tmp_path) == str(tmp_path / "named.bin")


def test_load_file_with_link_hard_links_the_object(tmp_path):
    uri = pa.store_bytes(b"big payload")
    dest = tmp_path / "linked.dat"
    pa.load_file(uri, dest=dest, link=True)
    assert os.path.samefile(dest, pa.load_file(uri))


def test_load_bytes_reads_a_range_like_a_slice():
    uri = pa.store_bytes(b"0123456789")
    assert pa.load_bytes(uri, start=2, end=5) == b"234"
    assert pa.load_bytes(uri, start=7) == b"789"
    assert pa.load_bytes(uri, end=3) == b"012"
    assert pa.load_bytes(uri, start=5, end=2) == b""
    with pytest.raises(ValueError, match="start"):
        pa.load_bytes(uri, start=-1)


def test_storing_identical_content_twice_stores_one_object(tmp_path):
    a = pa.store_bytes(b"same")
    path = tmp_path / "same.txt"
    path.write_bytes(b"same")
    b = pa.store_file(path)
    assert pa.parse_uri(a).sha1 == pa.parse_uri(b).sha1
    assert list(_store().iter_objects()) == [pa.parse_uri(a).sha1]


def test_objects_are_sharded_by_hash_prefix_and_read_only():
    sha1 = pa.parse_uri(pa.store_text("Hello, pairio.\n")).sha1
    path = _store().path(sha1)
    assert path.relative_to(_store().directory).parts == ("sha1", "a0", "9f", sha1)
    assert not os.stat(path).st_mode & 0o222


def test_content_dir_config_moves_the_store(tmp_path):
    uri = pa.store_text("elsewhere", content_dir=str(tmp_path / "cdir"))
    assert pa.load_file(uri, content_dir=str(tmp_path / "cdir")).startswith(str(tmp_path / "cdir"))
    assert pa.load_file(uri) is None
    with pa.config(content_dir=str(tmp_path / "cdir")):
        assert pa.load_text(uri) == "elsewhere"


def test_store_file_with_link_makes_the_object_a_hard_link(tmp_path):
    path = tmp_path / "huge.dat"
    path.write_bytes(os.urandom(10_000))
    uri = pa.store_file(path, link=True)
    assert os.path.samefile(path, pa.load_file(uri))


def test_a_file_changed_after_hashing_never_becomes_a_linked_object(tmp_path, monkeypatch):
    path = tmp_path / "huge.dat"
    path.write_bytes(b"as hashed")
    store = _store()
    real_hash_file = store._hash_file

    def hash_then_change(*args, **kwargs):
        sha1 = real_hash_file(*args, **kwargs)
        path.write_bytes(b"changed after hashing")  # a new size: the change is seen whatever the clock
        return sha1

    renamed_to = []
    real_replace = os.replace

    def spy_replace(src, dst):
        renamed_to.append(str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(store, "_hash_file", hash_then_change)
    monkeypatch.setattr(os, "replace", spy_replace)
    uri = pa.store_file(path, link=True)
    stale = hashlib.sha1(b"as hashed").hexdigest()
    assert str(store.object_path(stale)) not in renamed_to  # not even for an instant
    assert pa.parse_uri(uri).sha1 == hashlib.sha1(b"changed after hashing").hexdigest()
    assert pa.load_bytes(uri, verify=True) == b"changed after hashing"


def test_store_file_with_link_across_file_systems_reads_the_file_once(monkeypatch):
    shm = "/dev/shm"
    if not os.path.isdir(shm) or os.stat(shm).st_dev == os.stat(pa.get_config().database_dir.parent).st_dev:
        pytest.skip("needs a second file system at /dev/shm")
    with tempfile.TemporaryDirectory(dir=shm) as other:
        path = os.path.join(other, "elsewhere.dat")
        with open(path, "wb") as f:
            f.write(os.urandom(100_000))
        opened = []
        real_open = open

        def spy_open(file, *args, **kwargs):
            opened.append(str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr("builtins.open", spy_open)
        uri = pa.store_file(path, link=True)
        monkeypatch.undo()
        assert opened.count(path) == 1  # hashed while copied: no hashing first for a link that cannot be
        assert not os.path.samefile(path, pa.load_file(uri))
        assert pa.load_bytes(uri, verify=True) == real_open(path, "rb").read()


def test_writer_streams_into_the_store_and_sets_sha1():
    with _store().writer() as w:
        w.write(b"Hello, ")
        w.write(memoryview(b"pairio.\n"))
    assert w.sha1 == HELLO_SHA1 and w.size == 15
    assert _store().has(HELLO_SHA1)


def test_failed_writer_stores_nothing_and_leaves_no_temp_file():
    store = _store()
    with pytest.raises(RuntimeError):
        with store.writer() as w:
            w.write(b"half an object")
            raise RuntimeError("producer failed")
    assert list(store.iter_objects()) == []
    assert os.listdir(store.temp_dir) == []


def test_put_stream_stores_the_concatenation():
    sha1 = _store().put_stream(iter([b"Hello, ", b"pairio.", b"\n"]))
    assert sha1 == HELLO_SHA1


# --- directories --------------------------------------------------------------------


def _tree(root):
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_text("A")
    (root / "sub" / "b.txt").write_text("BB")
    (root / "sub" / "deeper" / "c.txt").write_text("CCC")
    return root


def test_store_dir_manifest_lists_names_sizes_and_hashes(tmp_path):
    uri = pa.store_dir(_tree(tmp_path / "results"))
    assert uri.startswith("sha1dir://") and uri.endswith(".results")
    manifest = pa.read_dir(uri)
    assert manifest["files"]["a.txt"] == {"size": 1, "sha1": pa.parse_uri(pa.store_text("A")).sha1}
    assert set(manifest["dirs"]) == {"sub"}
    assert pa.read_dir(uri + "/sub")["files"]["b.txt"]["size"] == 2


def test_files_inside_a_stored_directory_load_by_path(tmp_path):
    uri = pa.store_dir(_tree(tmp_path / "results"))
    assert pa.load_text(uri + "/sub/deeper/c.txt") == "CCC"
    assert open(pa.load_file(uri + "/a.txt")).read() == "A"
    assert pa.load_file(uri + "/sub/missing.txt") is None
    with pytest.raises(pa.InvalidURIError, match="directory"):
        pa.load_file(uri + "/sub")


def test_same_tree_in_two_places_has_the_same_hash(tmp_path):
    a = pa.store_dir(_tree(tmp_path / "one"), name="x")
    b = pa.store_dir(_tree(tmp_path / "two"), name="x")
    assert a == b


def test_sha1dir_uri_of_content_that_is_not_a_directory_is_an_error_naming_the_uri():
    sha1 = pa.parse_uri(pa.store_text("not a manifest")).sha1
    for uri, load in ((f"sha1dir://{sha1}.d", pa.read_dir), (f"sha1dir://{sha1}.d/a.txt", pa.load_file),
                      (f"sha1dir://{sha1}.d/a.txt", pa.load_text)):
        with pytest.raises(pa.InvalidURIError, match="is not a directory") as info:
            load(uri)
        assert repr(uri) in str(info.value)


def test_a_missing_directory_is_named_by_its_uri():
    uri = f"sha1dir://{'1' * 40}.results/a.txt"
    assert pa.load_file(uri) is None
    with pytest.raises(pa.ContentNotFoundError) as info:
        pa.load_text(uri)
    assert repr(uri) in str(info.value)


def test_store_dir_of_a_file_or_missing_path_is_a_clear_error(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(pa.InvalidPathError, match="f.txt"):
        pa.store_dir(tmp_path / "f.txt")
    with pytest.raises(pa.InvalidPathError, match="nope"):
        pa.store_dir(tmp_path / "nope")


# --- missing content and bad input --------------------------------------------------


def test_missing_object_gives_none_from_load_file_and_an_error_from_load_text():
    uri = f"sha1://{'0' * 40}/gone.txt"
    assert pa.load_file(uri) is None
    for load in (pa.load_text, pa.load_bytes, pa.load_object, pa.load_pickle):
        with pytest.raises(pa.ContentNotFoundError, match=uri):
            load(uri)
    with pytest.raises(pa.ContentNotFoundError):
        pa.read_dir(f"sha1dir://{'0' * 40}.d")


def test_malformed_uri_is_rejected_by_every_loader():
    for load in (pa.load_file, pa.load_text, pa.load_bytes, pa.load_object, pa.load_pickle, pa.read_dir):
        with pytest.raises(pa.InvalidURIError, match="sha1://nothex"):
            load("sha1://nothex")


def test_storing_a_missing_path_or_a_directory_names_it_and_writes_nothing(tmp_path):
    with pytest.raises(pa.InvalidPathError, match="does not exist") as info:
        pa.store_file(tmp_path / "missing.dat")
    assert "missing.dat" in str(info.value)
    with pytest.raises(pa.InvalidPathError, match="is a directory"):
        pa.store_file(tmp_path)
    with pytest.raises(pa.InvalidPathError, match="is a directory"):
        pa.get_file_hash(tmp_path)
    assert list(_store().iter_objects()) == []


def test_an_empty_path_is_an_error_not_the_current_directory():
    with pytest.raises(pa.InvalidPathError, match="empty"):
        pa.store_file("")
    with pytest.raises(pa.InvalidPathError, match="empty"):
        pa.store_dir("")
    with pytest.raises(pa.InvalidPathError, match="empty"):
        pa.get_file_hash("")
    assert list(_store().iter_objects()) == []


def test_load_file_to_a_dest_under_a_file_names_the_file_and_writes_nothing(tmp_path):
    uri = pa.store_bytes(b"payload")
    (tmp_path / "plain.txt").write_text("in the way")
    with pytest.raises(pa.InvalidPathError) as info:
        pa.load_file(uri, dest=tmp_path / "plain.txt" / "out.dat")
    message = str(info.value)
    assert repr(uri) in message and repr(str(tmp_path / "plain.txt")) in message
    assert sorted(os.listdir(tmp_path)) == ["pairio-home", "plain.txt"]


def test_store_object_rejects_what_json_cannot_hold():
    with pytest.raises(TypeError, match="store_pickle"):
        pa.store_object({"x": object()})


# --- corruption -----------------------------------------------------------------------


def test_a_flipped_bit_is_caught_by_a_plain_read_and_quarantines_the_object():
    uri = pa.store_bytes(os.urandom(50_000))
    sha1 = pa.parse_uri(uri).sha1
    _corrupt(sha1)
    with pytest.raises(pa.CorruptContentError, match=sha1):
        pa.load_bytes(uri)
    assert not _store().has(sha1)
    assert len(os.listdir(_store().quarantine_dir)) == 1
    assert pa.load_file(uri) is None


def test_load_file_with_verify_raises_on_a_truncated_object():
    uri = pa.store_bytes(b"x" * 1000)
    path = _store().path(pa.parse_uri(uri).sha1)
    os.chmod(path, 0o644)
    os.truncate(path, 500)
    with pytest.raises(pa.CorruptContentError):
        pa.load_file(uri, verify=True)


def test_fsck_reports_and_quarantines_only_corrupt_objects():
    good = pa.parse_uri(pa.store_bytes(b"good")).sha1
    bad = pa.parse_uri(pa.store_bytes(b"bad content here")).sha1
    _corrupt(bad)
    report = _store().fsck()
    assert report.checked == 2
    assert [sha1 for sha1, _ in report.corrupt] == [bad]
    assert report.corrupt[0][1].exists()
    assert _store().has(good) and not _store().has(bad)
    # Storing the true content again repairs the store.
    pa.store_bytes(b"bad content here")
    assert _store().verify(bad)


def test_fsck_reports_an_unreadable_object_and_checks_the_rest():
    good = pa.parse_uri(pa.store_bytes(b"good")).sha1
    lost = pa.parse_uri(pa.store_bytes(b"lost")).sha1
    path = _store().object_path(lost)
    path.unlink()
    os.symlink(path, path)  # a link to itself: opening it fails with ELOOP, as an I/O error would
    report = _store().fsck()
    assert report.checked == 1 and report.corrupt == []
    assert [sha1 for sha1, _ in report.unreadable] == [lost]
    assert _store().verify(good)


def test_verify_of_an_intact_object_is_true():
    sha1 = pa.parse_uri(pa.store_text("fine")).sha1
    assert _store().verify(sha1)
    assert pa.load_text(f"sha1://{sha1}", verify=True) == "fine"


def _truncate(sha1: str) -> None:
    path = _store().path(sha1)
    os.chmod(path, 0o644)
    path.write_bytes(path.read_bytes()[:3])


def test_storing_the_content_again_replaces_a_truncated_object():
    sha1 = pa.parse_uri(pa.store_bytes(b"the whole content")).sha1
    _truncate(sha1)
    pa.store_bytes(b"the whole content")
    assert _store().verify(sha1)


@pytest.mark.parametrize("link", [False, True])
def test_storing_an_unchanged_file_again_replaces_a_truncated_object(tmp_path, link):
    path = tmp_path / "data.bin"
    path.write_bytes(b"file content, long enough" * 10)
    sha1 = pa.parse_uri(pa.store_file(path)).sha1  # the hash cache now knows the file
    _truncate(sha1)
    assert pa.parse_uri(pa.store_file(path, link=link)).sha1 == sha1
    assert _store().verify(sha1)
