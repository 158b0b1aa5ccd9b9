"""Stores that cannot be written: a full disk, a read-only mount, another user's store, a store
shared by a Unix group. Real faults (tmpfs, remount, bind mounts, useradd): see store_faults.py.

A cached call returns what it computed, with one warning naming the store, the cause and the
bytes it needed; reads keep working; pa.set and pa.store_* raise StoreNotWritableError naming
the store and its free space; strict_store raises.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import warnings

import pytest
import store_faults
from store_faults import LARGE, Mounts, Users, fill, large_step, prepare_in_child, run_as, small_step, tree

import pairio as pa
from pairio.cli import main


@pytest.fixture
def mounts():
    made = Mounts()
    yield made
    made.close()


@pytest.fixture
def users():
    made = Users()
    yield made
    made.close()


def _use(monkeypatch, database_path) -> None:
    monkeypatch.setenv("PAIRIO_DB_PATH", str(database_path))
    pa.reset_config()


def _calls(call):
    """``call()``'s value (or exception) and the messages of the warnings it gave."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            value = call()
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            value = exc
    return value, [str(w.message) for w in seen]


def _reads_work(ids: dict[str, str], capsys) -> None:
    """Hits, pa.get, load_*, and the read commands of the CLI, none of them warning."""
    for call, expected in [(lambda: small_step(1), {"n": 1, "text": "x"}),
                           (lambda: large_step(LARGE), b"y" * LARGE),
                           (lambda: pa.get("kept"), "value"),
                           (lambda: pa.load_bytes(ids["bytes"]), b"kept bytes"),
                           (lambda: pa.load_object(ids["object"]), {"a": [1, 2]})]:
        value, said = _calls(call)
        assert value == expected and said == []
    capsys.readouterr()
    for command in (["ls"], ["stats"], ["show", ids["small_key"][:12]], ["why", ids["large_key"][:12]],
                    ["fsck"], ["get", "kept"]):
        assert main(command) == 0, command
    out = capsys.readouterr()
    assert "small_step" in out.out and "value" in out.out and "0 corrupt" in out.out
    assert "readonly" not in out.err and "could not" not in out.err


def _one_warning(said: list[str], store, cause: str, needed: str) -> None:
    assert len(said) == 1, said
    assert str(store) in said[0] and cause in said[0] and needed in said[0], said[0]


# --- 1. a full disk ---------------------------------------------------------------------------


@pytest.mark.parametrize("process", ["fresh", "already open"])
def test_full_disk_cached_miss_returns_its_result_with_one_warning_naming_store_cause_and_bytes(
        mounts, monkeypatch, capsys, process):
    disk = mounts.tmpfs("4m")
    home = disk / "store"
    ids = prepare_in_child(home)
    _use(monkeypatch, home)
    if process == "already open":
        assert small_step(1) == {"n": 1, "text": "x"}  # connections open before the disk fills
    fill(disk)
    before = tree(home / "content")

    value, said = _calls(lambda: large_step(LARGE + 1))
    assert value == b"y" * (LARGE + 1)
    _one_warning(said, home / "content", "full", "300 kB")
    value, said = _calls(lambda: small_step(5))
    assert value == {"n": 5, "text": "xxxxx"}
    assert len(said) == 1 and "full" in said[0] and str(home) in said[0] and " B" in said[0]
    # Nothing half-written: no temporary file, no new object, no pair without its content (SQLite's
    # empty -wal and -shm files of a database opened on the full disk hold nothing).
    def data(files):
        return {k: v for k, v in files.items() if not k.endswith(("-wal", "-shm"))}
    assert data(tree(home / "content")) == data(before) and os.listdir(home / "content" / "tmp") == []
    assert pa.get(large_step.key(LARGE + 1)) is None
    _reads_work(ids, capsys)


def test_full_disk_set_and_store_raise_naming_the_store_and_its_free_space(mounts, monkeypatch):
    disk = mounts.tmpfs("4m")
    home = disk / "store"
    prepare_in_child(home)
    _use(monkeypatch, home)
    fill(disk)
    for call, where in [(lambda: pa.set("new", "v"), home / "kv.sqlite3"),
                        (lambda: pa.set_many({"a": "1", "b": "2"}), home / "kv.sqlite3"),
                        (lambda: pa.store_bytes(os.urandom(50_000)), home / "content"),
                        (lambda: pa.store_text("new text"), home / "content"),
                        (lambda: pa.store_object({"new": 1}), home / "content")]:
        with pytest.raises(pa.StoreNotWritableError) as caught:
            call()
        message = str(caught.value)
        assert str(where) in message and "full" in message and "0 B free" in message, message
        assert caught.value.cause == "full" and caught.value.free == 0
    assert pa.get("new") is None and pa.get("a") is None


@pytest.mark.parametrize("how", ["environment", "config field"])
def test_full_disk_strict_store_raises_instead(mounts, monkeypatch, how):
    disk = mounts.tmpfs("4m")
    home = disk / "store"
    prepare_in_child(home)
    _use(monkeypatch, home)
    if how == "environment":
        monkeypatch.setenv("PAIRIO_STRICT_STORE", "1")
        pa.reset_config()
    else:
        pa.set_config(strict_store=True)
    fill(disk)
    with pytest.raises(pa.StoreNotWritableError, match="full"):
        small_step(7)
    assert small_step(1) == {"n": 1, "text": "x"}  # hits are not affected


def test_a_disk_freed_again_stores_the_next_miss(mounts, monkeypatch):
    disk = mounts.tmpfs("4m")
    home = disk / "store"
    prepare_in_child(home)
    _use(monkeypatch, home)
    filler = fill(disk)
    value, said = _calls(lambda: small_step(9))
    assert value == {"n": 9, "text": "x" * 9} and len(said) == 1
    filler.unlink()
    value, said = _calls(lambda: small_step(9))
    assert said == [] and pa.get(small_step.key(9)) is not None
    assert pa.set("after", "freed") is None and pa.get("after") == "freed"


# --- 2. read-only stores ----------------------------------------------------------------------


@pytest.fixture(params=["remount ro", "read-only bind mount"])
def read_only_store(request, mounts):
    disk = mounts.tmpfs("16m")
    ids = prepare_in_child(disk / "store")
    if request.param == "remount ro":
        mounts.remount(disk, read_only=True)
        return disk / "store", ids
    return mounts.read_only_bind(disk) / "store", ids


def test_read_only_store_serves_reads_and_a_miss_returns_with_one_warning(read_only_store, monkeypatch, capsys):
    home, ids = read_only_store
    _use(monkeypatch, home)
    _reads_work(ids, capsys)
    value, said = _calls(lambda: small_step(3))
    assert value == {"n": 3, "text": "xxx"}
    _one_warning(said, home, "read-only", "B")
    with pytest.raises(pa.StoreNotWritableError, match="read-only"):
        pa.set("new", "v")
    with pytest.raises(pa.StoreNotWritableError, match="read-only"):
        pa.store_bytes(b"new")


def test_cache_readonly_needs_no_write_access_at_all(read_only_store, monkeypatch, capsys):
    home, ids = read_only_store
    before = tree(home)
    monkeypatch.setenv("PAIRIO_CACHE", "readonly")
    _use(monkeypatch, home)
    _reads_work(ids, capsys)
    value, said = _calls(lambda: small_step(4))
    assert value == {"n": 4, "text": "xxxx"} and said == []  # readonly: a miss is not stored, by request
    assert tree(home) == before


def test_cache_readonly_on_a_read_only_mount_without_a_store_is_all_misses(mounts, monkeypatch):
    disk = mounts.tmpfs("1m")
    mounts.remount(disk, read_only=True)
    monkeypatch.setenv("PAIRIO_CACHE", "readonly")
    _use(monkeypatch, disk / "never-made")
    value, said = _calls(lambda: small_step(2))
    assert value == {"n": 2, "text": "xx"} and said == []
    assert pa.get("anything") is None


def test_another_users_store_is_read_and_a_miss_never_raises(mounts, users, monkeypatch):
    disk = mounts.tmpfs("16m")
    home = disk / "store"
    ids = prepare_in_child(home)  # root's store: 0755 directories, 0644 files
    _, uid, gid = users.user()
    before = tree(home)
    small_step(0), pa.get("x")  # modules loaded before the fork (the child may not reach them)

    def as_other_user():
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            pa.set_config(database_path=str(home))
            got = [small_step(1), large_step(LARGE) == b"y" * LARGE, pa.get("kept"),
                   pa.load_bytes(ids["bytes"]), small_step(11)]
            try:
                pa.set("mine", "v")
                refused = ""
            except pa.StoreNotWritableError as exc:
                refused = str(exc)
        return got, [str(w.message) for w in seen], refused

    got, said, refused = run_as(uid, gid, 0o022, as_other_user)
    assert got == [{"n": 1, "text": "x"}, True, "value", b"kept bytes", {"n": 11, "text": "x" * 11}]
    assert len(said) == 1 and "may not write" in said[0] and str(home) in said[0], said
    assert "may not write" in refused and str(home) in refused
    assert tree(home) == before


# --- 3. a store shared by a Unix group --------------------------------------------------------


def test_group_store_in_a_setgid_directory_works_for_every_member(mounts, users):
    disk = mounts.tmpfs("16m")
    group, group_id = users.group()
    first = users.user(group)
    second = users.user(group)
    shared = disk / "lab"
    shared.mkdir()
    os.chown(shared, 0, group_id)
    shared.chmod(0o2770)
    home = shared / "store"
    small_step(0), pa.get("x")  # modules loaded before the fork

    def member(n: int):
        def call():
            pa.set_config(database_path=str(home))
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                results = [small_step(n), large_step(LARGE + n) == b"y" * (LARGE + n), small_step(100)]
                pa.set(f"member-{n}", str(n))
                pa.store_text(f"text of {n}")
            return results, [str(w.message) for w in seen], pa.get("member-1")
        return call

    for n, (_, uid, gid) in enumerate([first, second], start=1):
        results, said, seen = run_as(uid, gid, 0o007, member(n))
        assert results == [{"n": n, "text": "x" * n}, True, {"n": 100, "text": "x" * 100}]
        assert said == [] and seen == "1"
    # The second member's call of small_step(100) was a hit of the first's.
    for root, dirs, names in os.walk(home):
        for name in dirs + names:
            st = os.stat(os.path.join(root, name))
            assert st.st_gid == group_id, (name, st.st_gid)
            if stat.S_ISDIR(st.st_mode):
                assert st.st_mode & 0o2070 == 0o2070, (name, oct(st.st_mode))
            elif not (root.startswith(str(home / "content" / "sha1"))):
                assert st.st_mode & 0o060 == 0o060, (name, oct(st.st_mode))  # the group may write it


def test_default_store_is_created_private(tmp_path, monkeypatch):
    monkeypatch.delenv("PAIRIO_DB_PATH")
    monkeypatch.setenv("HOME", str(tmp_path))
    pa.reset_config()
    assert pa.get_config().database_path == "~/.pairio"
    small_step(1)
    assert stat.S_IMODE((tmp_path / ".pairio").stat().st_mode) == 0o700
    out = subprocess.run([sys.executable, "-c", "import pairio; pairio.store_text('x')"], check=True,
                         env={**os.environ, "HOME": str(tmp_path / "other")}, capture_output=True)
    assert out.returncode == 0 and stat.S_IMODE((tmp_path / "other" / ".pairio").stat().st_mode) == 0o700





# --- the figure: a writer killed at random while the disk fills (benchmarks/full_disk_kills.py runs 100) ---


def test_writer_killed_while_the_disk_fills_loses_no_acknowledged_write(mounts):
    results = [store_faults.killed_writer_trial(mounts, seed) for seed in range(4)]
    for result in results:
        assert result["lost"] == [] and result["fsck_corrupt"] == 0 and result["fsck_unreadable"] == 0, result
        assert result["integrity"] == "ok", result
    assert sum(r["acknowledged"]["set"] for r in results) > 0


def test_fsck_of_a_read_only_store_reports_a_corrupt_object_and_leaves_it(mounts, monkeypatch, capsys):
    disk = mounts.tmpfs("16m")
    home = disk / "store"
    ids = prepare_in_child(home)
    sha1 = pa.parse_uri(ids["bytes"]).sha1
    path = home / "content" / "sha1" / sha1[:2] / sha1[2:4] / sha1
    path.chmod(0o644)
    path.write_bytes(b"damaged!!!")
    mounts.remount(disk, read_only=True)
    _use(monkeypatch, home)
    capsys.readouterr()
    assert main(["fsck"]) != 0
    out = capsys.readouterr().out
    assert f"corrupt: {sha1}" in out and "1 corrupt" in out
    assert path.read_bytes() == b"damaged!!!"
    with pytest.raises(pa.CorruptContentError, match="left in place"):
        pa.load_bytes(ids["bytes"])


def test_a_store_made_before_the_newer_table_families_is_read_on_a_read_only_mount(mounts, monkeypatch, capsys):
    """A store made by an older pairio lacks the newer, optional table families (hourly counts,
    the server's records): on a mount it cannot migrate, it is still read as it is."""
    disk = mounts.tmpfs("16m")
    ids = prepare_in_child(disk / "store")
    import sqlite3

    conn = sqlite3.connect(disk / "store" / "kv.sqlite3")  # as a pairio without them made it
    with conn:
        conn.execute("DROP TABLE counts")
        conn.execute("DELETE FROM schema_versions WHERE family = 'counts'")
    conn.close()
    import pairio.server.backends.records  # noqa: F401  (registers the server's records family too)
    mounts.remount(disk, read_only=True)
    home = disk / "store"
    _use(monkeypatch, home)
    _reads_work(ids, capsys)
    from pairio.kv import local_store
    from pairio.lifecycle import counts

    assert counts.read(local_store(pa.get_config()), since=0) == []
