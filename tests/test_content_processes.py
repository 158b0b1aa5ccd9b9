"""The content store with real processes: concurrent writers, a writer killed mid-write, a 2 GB file."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

import pairio as pa
from pairio.cli import main

ZEROS_2GIB_SHA1 = "91d50642dd930e9542c39d36f0516d45f4e1af0d"  # sha1 of 2**31 zero bytes


def _store():
    return pa.content_store(pa.get_config())


def _env():
    return {**os.environ, "PAIRIO_DB_PATH": str(pa.get_config().database_dir)}


def _python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], env=_env(), text=True, **kwargs)


_CONCURRENT_WRITER = """
import os, random, sys, time
import pairio as pa
go = sys.argv[1]
while not os.path.exists(go):
    time.sleep(0.001)
rng = random.Random(0)
chunks = (rng.randbytes(1 << 20) for _ in range(24))
print(pa.content_store(pa.get_config()).put_stream(chunks))
"""


def test_four_processes_storing_the_same_content_make_one_whole_object(tmp_path):
    go = tmp_path / "go"
    writers = [_python(_CONCURRENT_WRITER, str(go), stdout=subprocess.PIPE) for _ in range(4)]
    import random

    rng = random.Random(0)
    expected = hashlib.sha1(b"".join(rng.randbytes(1 << 20) for _ in range(24))).hexdigest()
    target = _store().object_path(expected)
    go.write_text("go")
    seen_complete = 0
    # While the writers run, whenever the object is visible it must be whole.
    while any(w.poll() is None for w in writers):
        try:
            with open(target, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            time.sleep(0.001)
            continue
        assert hashlib.sha1(data).hexdigest() == expected, "a reader saw a torn object"
        seen_complete += 1
    outputs = [w.communicate()[0].strip() for w in writers]
    assert [w.returncode for w in writers] == [0, 0, 0, 0]
    assert outputs == [expected] * 4
    assert list(_store().iter_objects()) == [expected]
    assert _store().verify(expected)
    assert os.listdir(_store().temp_dir) == []


_KILLED_WRITER = """
import sys, time
import pairio as pa
store = pa.content_store(pa.get_config())
with store.writer() as w:
    w.write(b"x" * (8 << 20))
    w._temp.file.flush()
    print("writing", flush=True)
    time.sleep(120)
"""


def _kill_a_writer_mid_write() -> None:
    writer = _python(_KILLED_WRITER, stdout=subprocess.PIPE)
    try:
        assert writer.stdout.readline().strip() == "writing"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    assert writer.returncode == -signal.SIGKILL


def test_writer_killed_mid_write_leaves_no_visible_object_and_a_later_store_cleans_up():
    _kill_a_writer_mid_write()
    store = _store()
    assert list(store.iter_objects()) == []
    assert len(os.listdir(store.temp_dir)) == 1  # the abandoned temp file, invisible to readers
    uri = pa.store_text("a later store")
    assert os.listdir(store.temp_dir) == []
    assert list(store.iter_objects()) == [pa.parse_uri(uri).sha1]


def test_gc_temp_removes_the_temp_file_of_a_killed_writer(capsys):
    _kill_a_writer_mid_write()
    assert main(["gc", "--temp"]) == 0
    assert "removed 1 abandoned temporary file" in capsys.readouterr().out
    assert os.listdir(_store().temp_dir) == []


def test_gc_temp_spares_the_temp_file_of_a_live_writer(tmp_path):
    writer = _python(_KILLED_WRITER, stdout=subprocess.PIPE)
    try:
        assert writer.stdout.readline().strip() == "writing"
        assert main(["gc", "--temp"]) == 0
        assert len(os.listdir(_store().temp_dir)) == 1
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()


# Peak memory is the child's VmHWM (peak resident set of its own address space). Not
# ru_maxrss: on Linux that keeps the peak of the process before exec, i.e. of the forked
# pytest process, which says nothing about the child.
_TWO_GIB = """
import os, sys
import pairio as pa
src, dest = sys.argv[1], sys.argv[2]
with open(src, "wb") as f:
    f.truncate(2 << 30)  # sparse: 2 GiB of zeros without 2 GiB of disk for the source
uri = pa.store_file(src)
out = pa.load_file(uri, dest=dest, verify=True)
with open("/proc/self/status") as status:
    peak_kb = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
print(uri, os.path.getsize(out), peak_kb)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads VmHWM from /proc")
def test_two_gib_file_is_stored_verified_and_loaded_in_under_100_mb_of_memory(tmp_path):
    src, dest = tmp_path / "zeros.dat", tmp_path / "zeros.out"
    started = time.monotonic()
    try:
        child = _python(_TWO_GIB, str(src), str(dest), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
        uri, size, peak_kb = out.split()
        assert pa.parse_uri(uri).sha1 == ZEROS_2GIB_SHA1
        assert int(size) == 2 << 30
        peak_mb = int(peak_kb) / 1024
        assert peak_mb < 100, f"peak memory {peak_mb:.0f} MB"
        print(f"2 GiB store+verify+load: peak RSS {peak_mb:.0f} MB, {time.monotonic() - started:.1f} s")
    finally:
        # Keep the 4 GB out of pytest's retained temp directories.
        for path in (src, dest, _store().object_path(ZEROS_2GIB_SHA1)):
            if path.exists():
                path.unlink()
