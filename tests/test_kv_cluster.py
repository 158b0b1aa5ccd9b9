"""Stores on cluster file systems: detection (a real FUSE mount, a patched statfs), never SQLite's
WAL there, the directory store chosen for them, and many processes writing it at once."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

import pairio as pa
from pairio import filesystems
from pairio.cli import main as cli_main
from pairio.kv import DirectoryStore, EmbeddedStore, local_store

NFS_MAGIC = 0x6969


def _needs_fuse() -> None:
    missing = []
    if shutil.which("bindfs") is None:
        missing.append("bindfs (apt-get install bindfs)")
    if not os.path.exists("/dev/fuse") or (hasattr(os, "geteuid") and os.geteuid() != 0):
        missing.append("root with /dev/fuse")
    if missing:
        message = f"a FUSE mount needs {' and '.join(missing)}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def fuse_dir(tmp_path):
    """A directory on a real FUSE file system: a bindfs mount of a temporary directory."""
    _needs_fuse()
    source, mount = tmp_path / "fuse-source", tmp_path / "fuse-mount"
    source.mkdir()
    mount.mkdir()
    subprocess.run(["bindfs", "--no-allow-other", str(source), str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["fusermount", "-u", str(mount)], check=False)
        if os.path.ismount(mount):
            subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def on_nfs(monkeypatch):
    """statfs(2) answers NFS's magic number for every path, as on a store on NFS."""
    monkeypatch.setattr(filesystems, "statfs_type", lambda path: NFS_MAGIC)


def _wal_files(root) -> list[str]:
    return [os.path.join(d, n) for d, _, names in os.walk(root) for n in names if n.endswith(("-wal", "-shm"))]


# --- detection ---------------------------------------------------------------------------


def test_a_local_directory_is_not_a_shared_file_system(tmp_path):
    assert filesystems.shared_file_system(tmp_path) is None
    assert filesystems.shared_file_system(tmp_path / "not" / "made" / "yet") is None


def test_a_fuse_mount_is_detected(fuse_dir):
    assert filesystems.shared_file_system(fuse_dir).startswith("FUSE")
    assert filesystems.shared_file_system(fuse_dir / "store" / "not-made-yet").startswith("FUSE")
    assert filesystems.statfs_type(str(fuse_dir)) == 0x65735546


@pytest.mark.parametrize(("magic", "name"), [
    (0x6969, "NFS"), (0x0BD00BD0, "Lustre"), (0x47504653, "GPFS"), (0x00C36400, "CephFS"),
    (0x19830326, "BeeGFS"), (0xFF534D42, "CIFS/SMB"), (0xFE534D42, "SMB2"),
])
def test_cluster_file_systems_are_told_by_their_statfs_magic(monkeypatch, tmp_path, magic, name):
    monkeypatch.setattr(filesystems, "statfs_type", lambda path: magic)
    assert filesystems.shared_file_system(tmp_path) == name


def test_mountinfo_tells_the_file_system_where_statfs_cannot(monkeypatch, tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        f"98 22 0:52 / {tmp_path}/my\\040cluster rw,relatime shared:50 - nfs4 server:/export rw,vers=4.2\n"
        f"99 22 0:53 / {tmp_path}/lustre rw - lustre 10.0.0.1@tcp:/fs rw\n")
    monkeypatch.setattr(filesystems, "statfs_type", lambda path: None)
    monkeypatch.setattr(filesystems, "_MOUNTINFO", str(mountinfo))
    (tmp_path / "my cluster" / "store").mkdir(parents=True)
    (tmp_path / "lustre" / "x").mkdir(parents=True)
    assert filesystems.shared_file_system(tmp_path / "my cluster" / "store") == "NFS"
    assert filesystems.shared_file_system(tmp_path / "lustre" / "x") == "Lustre"
    assert filesystems.shared_file_system(tmp_path) is None


# --- never WAL there -----------------------------------------------------------------------


def test_sqlite_on_a_shared_file_system_never_uses_wal(on_nfs, tmp_path, monkeypatch):
    store = EmbeddedStore(tmp_path / "store")
    store.set("c", "k", "v")
    assert store.get("c", "k") == "v"
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "delete"
    # Every SQLite table pairio keeps: small objects, the hash cache.
    pa.set_config(database_path=str(tmp_path / "home"), store_backend="sqlite")
    uri = pa.store_text("small text")
    assert pa.load_text(uri) == "small text"
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1 << 20))
    pa.store_file(str(big))
    assert _wal_files(tmp_path) == []


def test_the_directory_store_is_chosen_on_a_shared_file_system_and_says_why(on_nfs, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="pairio"):
        store = local_store(pa.get_config(database_path=str(tmp_path / "auto")))
    assert isinstance(store, DirectoryStore)
    assert "is on NFS" in caplog.text and "WAL" in caplog.text and "PAIRIO_STORE_BACKEND" in caplog.text
    # By configuration: anywhere, and the other way round.
    assert isinstance(local_store(pa.get_config(database_path=str(tmp_path / "s"), store_backend="sqlite")),
                      EmbeddedStore)


def test_the_directory_store_is_chosen_by_configuration_anywhere(tmp_path, monkeypatch):
    assert isinstance(local_store(pa.get_config(database_path=str(tmp_path / "a"))), EmbeddedStore)
    assert isinstance(local_store(pa.get_config(database_path=str(tmp_path / "b"), store_backend="directory")),
                      DirectoryStore)
    monkeypatch.setenv("PAIRIO_STORE_BACKEND", " Directory ")
    assert pa.reset_config().store_backend == "directory"
    monkeypatch.setenv("PAIRIO_STORE_BACKEND", "nfs")
    with pytest.raises(pa.ConfigurationError, match="PAIRIO_STORE_BACKEND.*auto, sqlite, directory"):
        pa.reset_config()
    monkeypatch.delenv("PAIRIO_STORE_BACKEND")


# --- the directory store under what is layered on it ----------------------------------------


def _cached_pipeline(home, capsys) -> None:
    """A cached pipeline on the store at ``home``: misses, then hits, then the tools on it."""
    pa.set_config(database_path=str(home))
    runs = []

    @pa.cached
    def smooth(values, width):
        runs.append(width)
        return [sum(values[i:i + width]) / width for i in range(len(values) - width + 1)]

    @pa.cached
    def peak(values):
        runs.append("peak")
        return {"peak": max(values), "blob": os.urandom(100_000)}

    data = list(range(100))
    first = peak(smooth(data, 3))
    assert peak(smooth(data, 3)) == first and smooth(data, 5)[0] == 2.0
    assert runs == [3, "peak", 5]
    assert smooth.is_cached(data, 3)
    pa.set("a-key", "a-value")
    assert pa.get("a-key") == "a-value"
    assert isinstance(local_store(pa.get_config()), DirectoryStore)
    # No SQLite file of the pairs, records or small objects (nor any WAL) on the shared file system.
    made = {n for _, _, names in os.walk(home) for n in names}
    assert not {"kv.sqlite3", "small-objects.sqlite3"} & made and _wal_files(home) == []
    # The tools: ls says why it lists nothing, show says why it finds nothing, gc keeps what pairs name.
    capsys.readouterr()
    assert cli_main(["ls"]) == 0
    assert "keeps no records" in capsys.readouterr().err
    assert cli_main(["forget", "smooth"]) == 0
    assert "keeps no records" in capsys.readouterr().err
    with pytest.raises(LookupError, match="keeps no records"):
        pa.why(smooth.key(data, 3))
    assert cli_main(["gc"]) == 0
    assert cli_main(["fsck"]) == 0
    # gc with no grace period: what the pairs name stays, an object nothing names goes.
    from pairio.lifecycle import gc

    orphan = pa.store_text("nothing refers to this")
    report = gc.collect(pa.get_config(), grace_s=0)
    assert report.objects == 1
    with pytest.raises(pa.ContentNotFoundError):
        pa.load_text(orphan)
    runs.clear()
    assert peak(smooth(data, 3)) == first and runs == []
    assert smooth.forget(data, 3)
    runs.clear()
    assert peak(smooth(data, 3)) == first and runs == [3]


def test_a_cached_pipeline_runs_on_the_directory_store(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PAIRIO_STORE_BACKEND", "directory")
    pa.reset_config()
    _cached_pipeline(tmp_path / "home", capsys)
    monkeypatch.delenv("PAIRIO_STORE_BACKEND")


def test_a_cached_pipeline_runs_on_a_fuse_mount(fuse_dir, capsys):
    _cached_pipeline(fuse_dir / "home", capsys)  # chosen by the file system, unasked


def test_max_size_on_the_directory_store_is_warned_about_once(tmp_path, caplog):
    pa.set_config(database_path=str(tmp_path / "home"), store_backend="directory", max_size=10_000)

    @pa.cached
    def make(n):
        return os.urandom(n)

    with caplog.at_level(logging.WARNING, logger="pairio"):
        for n in range(3000, 3005):  # each fits under max_size; together they pass it
            assert len(make(n)) == n
    assert caplog.text.count("max_size is not enforced") == 1


# --- many processes ----------------------------------------------------------------------

_WRITER = textwrap.dedent("""
    import os, sys
    from pairio.kv.directory import DirectoryStore
    store = DirectoryStore(sys.argv[1])
    me, count, others = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    seen = 0
    i = 0
    while count < 0 or i < count:
        store.set("c", f"{me}-{i}", f"value-{me}-{i}")
        store.set("c", f"shared-{i % 7}", f"{me}-{i}")  # every process overwrites these
        print(i, flush=True)  # acknowledged: set returned
        peer = f"{(int(me) + 1) % others}-{i // 2}"
        value = store.get("c", peer)
        assert value in (None, "value-" + peer), value
        shared = store.get("c", f"shared-{i % 5}")
        assert shared is None or shared.count("-") == 1, shared
        i += 1
    """)


def _writers(directory, processes: int, count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", _WRITER, str(directory), str(p), str(count), str(processes)],
                             stdout=subprocess.PIPE, text=True) for p in range(processes)]


def _check_all(store: DirectoryStore, acknowledged: dict[int, int]) -> None:
    for p, last in acknowledged.items():
        keys = [f"{p}-{i}" for i in range(last + 1)]
        assert store.get_many("c", keys) == {k: f"value-{k}" for k in keys}


@pytest.mark.parametrize("where", ["local", "fuse"])
def test_many_processes_write_and_read_the_directory_store_at_once(tmp_path, where, request):
    directory = (request.getfixturevalue("fuse_dir") if where == "fuse" else tmp_path) / "store"
    processes, count = 6, 300
    writers = _writers(directory, processes, count)
    acknowledged = {}
    for p, writer in enumerate(writers):
        lines = writer.stdout.read().split()
        assert writer.wait() == 0
        acknowledged[p] = int(lines[-1])
    assert acknowledged == dict.fromkeys(range(processes), count - 1)
    store = DirectoryStore(directory)
    _check_all(store, acknowledged)
    assert store.count("c") == processes * count + 7 and store.collections() == ["c"]
    assert all(store.get("c", f"shared-{j}").split("-")[0] in map(str, range(processes)) for j in range(7))
    assert not [n for _, _, names in os.walk(directory) for n in names if n.startswith(".tmp-")]


def test_writers_killed_mid_write_lose_no_acknowledged_pair(tmp_path):
    directory = tmp_path / "store"
    processes = 6
    writers = _writers(directory, processes, -1)
    acknowledged = {}
    for p, writer in enumerate(writers):
        last = -1
        for line in writer.stdout:  # each line: a pair whose set returned
            last = int(line)
            if last >= 100 + 37 * p:
                break
        writer.send_signal(signal.SIGKILL)
        acknowledged[p] = last
    for writer in writers:
        writer.wait()
        writer.stdout.close()
    store = DirectoryStore(directory)
    _check_all(store, acknowledged)
    # What a killed writer left half-done is a temporary file, never a pair: gone after a while.
    assert all(json.loads(open(path).read())[0] for path in store._pair_files(store._collection_dir("c")))
    assert store.remove_temporary(older_than_s=0) >= 0
    assert not [n for _, _, names in os.walk(directory) for n in names if n.startswith(".tmp-")]


def test_a_file_system_without_locks_computes_with_one_warning(tmp_path, monkeypatch, caplog):
    # No file system here refuses locks (Lustre without -o flock answers ENOSYS, an NFS server
    # without its lock manager ENOLCK): the lock calls are made to answer so.
    import errno

    from pairio.memo import flight

    def no_locks(*args, **kwargs):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(flight.fcntl, "fcntl", no_locks)
    monkeypatch.setattr(flight.fcntl, "flock", no_locks)
    pa.set_config(database_path=str(tmp_path / "home"), store_backend="directory")

    @pa.cached
    def double(x):
        return 2 * x

    with caplog.at_level(logging.WARNING, logger="pairio"):
        assert [double(i) for i in range(3)] == [0, 2, 4]
        assert double(2) == 4 and double.is_cached(1)
    assert caplog.text.count("cannot lock files (No locks available)") == 1


def _until(condition) -> None:
    for _ in range(6000):  # (a bound on a hang, not a timing)
        if condition():
            return
        import time

        time.sleep(0.01)
    raise AssertionError("the condition never came")


@pytest.mark.parametrize("holder_stores", [True, False])
def test_a_step_another_host_computes_on_the_directory_store_is_waited_for(tmp_path, caplog, holder_stores):
    import threading

    from pairio.kv.directory import DirectoryLeases

    pa.set_config(database_path=str(tmp_path / "home"), store_backend="directory", lease_ttl=30)
    runs = []

    @pa.cached
    def slow(x):
        runs.append(x)
        return x * 10

    # Another host takes the lease on slow(4) first.
    leases = DirectoryLeases(tmp_path / "home")
    name = f"{pa.get_config().collection}/{slow.key(4)}"
    assert leases.acquire_lease(name, "node-2", {"host": "node-2", "pid": 7}, ttl=30).owner == "node-2"
    answers = []
    with caplog.at_level(logging.INFO, logger="pairio"):
        waiter = threading.Thread(target=lambda: answers.append(slow(4)))
        waiter.start()
        _until(lambda: "being computed on node-2 (pid 7)" in caplog.text)
        assert runs == []  # waiting, not computing
        if holder_stores:  # node-2 stores its result (not through this host's file lock, which the waiter holds)
            slow._store(pa.get_config(), slow.key(4), 40, 1.0, (4,), {})
            waiter.join()  # the waiter finds it
        assert leases.release_lease(name, "node-2")
        waiter.join()
    assert answers == [40]
    assert runs == ([] if holder_stores else [4])  # computed once: by node-2, or here once node-2 let go
    assert leases.leases() == []  # the waiter's lease, if it took one, is given up


def test_gc_removes_the_directory_store_s_old_leases_and_leftovers(tmp_path):
    from pairio.kv.directory import DirectoryLeases

    pa.set_config(database_path=str(tmp_path / "home"), store_backend="directory")
    store = local_store(pa.get_config())
    leases = DirectoryLeases(store.directory)
    leases.acquire_lease("c/old", "a", {}, ttl=1, now=1_000.0)  # expired long ago
    leases.acquire_lease("c/held", "b", {}, ttl=600)
    store.set("c", "k", "v")
    leftover = store.path / "left-by-a-killed-writer"
    leftover.mkdir()
    (leftover / ".tmp-node-1-99-abc").write_text("[")
    old = 1_000_000.0
    for d, _, names in os.walk(tmp_path / "home"):
        for n in names:
            if n.startswith(".tmp-") or d == leases._dir("c/old"):
                os.utime(os.path.join(d, n), (old, old))
    from pairio.lifecycle import gc

    report = gc.collect(pa.get_config(), dry_run=True)
    assert report.temp_files >= 1 and report.locks >= 1 and len(leases.leases(now=2_000.0)) == 1
    report = gc.collect(pa.get_config())
    assert report.temp_files >= 1 and report.locks >= 1
    assert not os.path.exists(leases._dir("c/old")) and [le.name for le in leases.leases()] == ["c/held"]
    assert not (leftover / ".tmp-node-1-99-abc").exists() and store.get("c", "k") == "v"


_LEASE_TAKER = textwrap.dedent("""
    import os, sys
    from pairio.kv.directory import DirectoryLeases
    leases, log, me = DirectoryLeases(sys.argv[1]), sys.argv[2], sys.argv[3]
    turns = 0
    while turns < 15:
        if leases.acquire_lease("step", me, {"pid": os.getpid()}, ttl=600).owner != me:
            continue
        with open(log, "a") as f:  # O_APPEND: whole lines
            f.write(f"start {me}\\n")
        with open(log, "a") as f:
            f.write(f"end {me}\\n")
        assert leases.release_lease("step", me)
        turns += 1
    """)


def test_one_process_at_a_time_holds_a_directory_lease(tmp_path):
    log = tmp_path / "log"
    takers = [subprocess.Popen([sys.executable, "-c", _LEASE_TAKER, str(tmp_path / "store"), str(log), f"p{i}"])
              for i in range(5)]
    assert [t.wait() for t in takers] == [0] * 5
    lines = log.read_text().splitlines()
    assert len(lines) == 2 * 5 * 15
    for start, end in zip(lines[::2], lines[1::2], strict=True):  # never two holders at once
        assert start.split()[0] == "start" and end == "end " + start.split()[1]
