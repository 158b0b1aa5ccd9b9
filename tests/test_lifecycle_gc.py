"""pairio gc: unreferenced content after a grace period, orphaned pairs, dry runs, and races with writers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import stored_objects

import pairio as pa
from pairio.cli import main
from pairio.lifecycle import gc


def _age(sha1: str, seconds: float = 3 * 86400) -> None:
    stored_objects.age(pa.content_store(pa.get_config()), sha1, seconds)


def _sha1(uri: str) -> str:
    return pa.parse_uri(uri).sha1


def test_gc_removes_old_unreferenced_content_and_keeps_what_pairs_and_records_name(tmp_path, capsys):
    store = pa.content_store(pa.get_config())
    loose = _sha1(pa.store_text("nobody refers to me"))
    young = _sha1(pa.store_text("stored a moment ago, pair still to come"))
    by_hash = _sha1(pa.store_text("named by a pair's value"))
    pa.set("a", by_hash)
    by_uri = pa.store_text("named by a URI", name="x.txt")
    pa.set("b", by_uri)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.txt").write_text("inside a stored directory")
    dir_uri = pa.store_dir(tmp_path / "d")
    pa.set("c", dir_uri)
    inner = pa.get_file_hash(tmp_path / "d" / "f.txt")
    data = tmp_path / "data.bin"
    data.write_bytes(b"inside a result")

    @pa.cached
    def keep():
        return data

    keep()
    [entry] = pa.entries()
    old = [loose, by_hash, _sha1(by_uri), _sha1(dir_uri.replace("sha1dir", "sha1").split(".")[0]), inner,
           entry.sha1, *entry.objects]
    for sha1 in old:
        _age(sha1)
    assert main(["gc", "--dry-run"]) == 0
    assert "would remove 1 unreferenced object(s), 19 B" in capsys.readouterr().out
    assert store.has(loose)
    report = gc.collect(pa.get_config())
    assert report.objects == 1 and report.object_bytes == len("nobody refers to me")
    assert not store.has(loose) and store.has(young)
    assert all(store.has(s) for s in old[1:])
    assert keep().read_bytes() == b"inside a result"


def test_gc_removes_pairs_of_cached_results_whose_content_is_gone(capsys):
    @pa.cached
    def f(x):
        return x * 2

    f(1)
    f(2)
    [e2, e1] = pa.entries()
    pa.content_store(pa.get_config()).remove(e1.sha1)
    pa.set("user pair", e1.sha1)  # not a cached result: it may name content elsewhere
    assert main(["gc", "--pairs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pairs"] == 1
    assert [e.key for e in pa.entries()] == [e2.key] and pa.get(e1.key) is None
    assert pa.get("user pair") == e1.sha1


def test_gc_of_a_result_stored_before_records_keeps_the_files_inside_it(tmp_path):
    data = tmp_path / "data.bin"
    data.write_bytes(b"a file inside an old result")

    @pa.cached
    def old_style():
        return [data]

    old_style()
    [entry] = pa.entries()
    with pa.content_store(pa.get_config()).writer() as w:
        pass
    from pairio.kv import local_store
    with local_store(pa.get_config()).transaction(immediate=True) as connection:
        connection.execute("DELETE FROM entries")  # as a database made before records existed
    for sha1 in (entry.sha1, *entry.objects):
        _age(sha1)
    gc.collect(pa.get_config())
    [path] = old_style()
    assert path.read_bytes() == b"a file inside an old result"
    assert w.sha1 is not None


def test_gc_on_a_server_directory(tmp_path, capsys):
    server_dir = tmp_path / "server"
    with pa.config(database_path=str(server_dir)):
        sha1 = _sha1(pa.store_text("uploaded, never named"))
        _age(sha1)
    assert main(["gc", "--database", str(server_dir), "--dry-run"]) == 0
    assert "would remove 1 unreferenced object(s)" in capsys.readouterr().out
    assert main(["gc", "--database", str(server_dir), "--content-dir", str(server_dir / "content")]) == 0
    assert "removed 1 unreferenced object(s)" in capsys.readouterr().out


RACER = """
    import pathlib, sys
    import pairio
    from pairio.memo.values import load_result

    inputs = pathlib.Path(sys.argv[2])
    store = pairio.content_store(pairio.get_config())

    @pairio.cached
    def step(i):
        # Few distinct results, each forgotten once checked: every call stores content that
        # nothing refers to until its pair is set (and that gc may be removing right then).
        # The file inside is stored first, then the pickle written, then the pair set.
        return inputs / f"in{i % 20}.txt", bytes([i % 20]) * 1_000_000

    worker = int(sys.argv[1])
    for i in range(worker * 1000, worker * 1000 + 100):
        step(i)
        # Once the call returns its pair is set, so gc must have left all its content.
        path, data = load_result(store, pairio.get(step.key(i)))
        assert path.read_text() == f"input {i % 20}" and data == bytes([i % 20]) * 1_000_000
        if i % 10:
            step.forget(i)
    print("ok")
"""

GC_LOOP = """
    import sys
    import pairio
    from pairio.lifecycle import gc
    n = 0
    while sys.stdin.readline().strip() == "again":
        report = gc.collect(pairio.get_config(), grace_s=0.0, pairs=False, temp=False, idle_locks=False)
        n += report.objects
        print(n, flush=True)
"""


def test_gc_never_removes_content_whose_pair_is_written_during_it(tmp_path):
    (tmp_path / "racer.py").write_text(textwrap.dedent(RACER))
    (tmp_path / "gc_loop.py").write_text(textwrap.dedent(GC_LOOP))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [os.getcwd(), os.environ.get("PYTHONPATH")] if p)}
    collector = subprocess.Popen([sys.executable, str(tmp_path / "gc_loop.py")], env=env, text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for j in range(20):
        (inputs / f"in{j}.txt").write_text(f"input {j}")
    racers = [subprocess.Popen([sys.executable, str(tmp_path / "racer.py"), str(n), str(inputs)], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE) for n in range(2)]
    rounds = 0
    removed = 0
    while any(r.poll() is None for r in racers) or rounds < 20:
        collector.stdin.write("again\n")
        collector.stdin.flush()
        removed = int(collector.stdout.readline())
        rounds += 1
    collector.stdin.write("stop\n")
    collector.stdin.close()
    collector.wait(timeout=60)
    for r in racers:
        out, err = r.communicate(timeout=60)
        assert r.returncode == 0 and out.strip() == "ok", err[-2000:]
    assert rounds >= 20 and removed > 0  # gc ran all along and did find content to remove
    store = pa.content_store(pa.reset_config())
    entries = pa.entries()
    assert len(entries) == 2 * 10  # 100 calls each, nine in ten forgotten
    missing = [e.key for e in entries
               if not all(store.has(s) for s in (e.sha1, *e.objects)) or pa.get(e.key) != e.sha1]
    assert missing == []


def test_gc_removes_the_named_links_of_a_removed_file_so_its_bytes_are_freed(tmp_path):
    data = tmp_path / "report.csv"
    data.write_bytes(b"a,b\n1,2\n")

    @pa.cached
    def report():
        return data

    report()
    named_path = report()  # a hit: the file under its own name, a hard link to the object
    assert named_path.name == "report.csv"
    sha1 = pa.get_file_hash(named_path)
    assert report.forget()
    store = pa.content_store(pa.get_config())
    for s in list(store.iter_objects()):
        _age(s)
    gc.collect(pa.get_config(), grace_s=0.0)
    assert not store.has(sha1)
    assert not named_path.exists() and not named_path.parent.exists()


def test_gc_leaves_an_object_a_reader_holds_open():
    sha1 = _sha1(pa.store_text("being read"))
    _age(sha1)
    store = pa.content_store(pa.get_config())
    with store.open(sha1) as f:
        report = gc.collect(pa.get_config())
        assert report.objects == 0 and report.objects_in_use == 1
        assert f.read() == b"being read"
    assert gc.collect(pa.get_config()).objects == 1 and not store.has(sha1)


def test_a_server_directory_records_reads_and_gc_max_size_removes_the_least_recent(tmp_path, capsys):
    from pairio.lifecycle.access import AccessLog
    from pairio.server.backends.directory import DirectoryContent

    backend = DirectoryContent(tmp_path / "content")
    sha1s = [backend.store.put_bytes(bytes([i]) * 1000) for i in range(4)]
    for i, sha1 in enumerate(sha1s):  # stored 4, 3, 2 and 1 days ago
        old = time.time() - (4 - i) * 86400
        os.utime(backend.store.object_file(sha1), (old, old))
    assert b"".join(backend.read(sha1s[0])) == bytes([0]) * 1000  # the oldest, but read just now
    backend.access.flush()
    reads = AccessLog(tmp_path / "content").last_access()
    assert set(reads) == {sha1s[0]} and reads[sha1s[0]][1] == 1
    assert main(["gc", "--database", str(tmp_path), "--content-dir", str(tmp_path / "content"), "--temp",
                 "--max-size", "2kB", "--grace", "1h"]) == 0
    assert "removed 2 object(s) read longest ago" in capsys.readouterr().out
    assert [backend.store.has(s) for s in sha1s] == [True, False, False, True]
