"""Real file-system faults for the tests: small tmpfs mounts (a disk that fills), read-only
mounts, and a second Unix user (``useradd``, removed after). Each needs root: without it the
test skips with a message, except under CI=true, where it fails."""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import subprocess
import tempfile
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def need_root(what: str) -> None:
    """Skip (fail under CI=true) unless this process is root."""
    if os.geteuid() == 0:
        return
    message = f"needs root ({what}); run the tests as root, as CI does"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True)


class Mounts:
    """tmpfs mounts made by a test, unmounted (lazily, if still busy) when it ends."""

    def __init__(self) -> None:
        self._made: list[Path] = []

    def tmpfs(self, size: str = "4m", mode: int = 0o755) -> Path:
        """A new tmpfs of ``size`` in a directory of its own under /tmp (reachable by other users)."""
        need_root("tmpfs mounts")
        directory = Path(tempfile.mkdtemp(prefix="pairio-disk-", dir="/tmp"))
        _run("mount", "-t", "tmpfs", "-o", f"size={size},mode={mode:o}", "tmpfs", str(directory))
        self._made.append(directory)
        return directory

    def read_only_bind(self, source: Path) -> Path:
        """``source`` seen through a read-only bind mount."""
        need_root("bind mounts")
        directory = Path(tempfile.mkdtemp(prefix="pairio-ro-", dir="/tmp"))
        _run("mount", "--bind", str(source), str(directory))
        self._made.append(directory)
        _run("mount", "-o", "remount,bind,ro", str(directory))
        return directory

    @staticmethod
    def remount(directory: Path, read_only: bool) -> None:
        _run("mount", "-o", "remount," + ("ro" if read_only else "rw"), str(directory))

    def close(self) -> None:
        for directory in reversed(self._made):
            subprocess.run(["umount", str(directory)], capture_output=True)
            if os.path.ismount(directory):
                subprocess.run(["umount", "-l", str(directory)], capture_output=True)
            with contextlib.suppress(OSError):
                directory.rmdir()
        self._made.clear()


def fill(directory: Path) -> Path:
    """Fill the disk holding ``directory`` to the last byte; returns the filler file."""
    filler = directory / f"filler-{uuid.uuid4().hex[:8]}"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError:
                pass
    return filler


class Users:
    """Unix users and a group made by a test (``useradd``/``groupadd``), removed when it ends."""

    def __init__(self) -> None:
        self._users: list[str] = []
        self._groups: list[str] = []

    def group(self) -> tuple[str, int]:
        need_root("a second Unix user")
        name = f"pio{uuid.uuid4().hex[:8]}"
        _run("groupadd", name)
        self._groups.append(name)
        import grp

        return name, grp.getgrnam(name).gr_gid

    def user(self, group: str | None = None) -> tuple[str, int, int]:
        """A new user (name, uid, gid), in ``group`` as its primary group if given."""
        need_root("a second Unix user")
        name = f"pio{uuid.uuid4().hex[:8]}"
        _run("useradd", "-M", "-N", "-s", "/usr/sbin/nologin", *(["-g", group] if group else []), name)
        self._users.append(name)
        import pwd

        entry = pwd.getpwnam(name)
        return name, entry.pw_uid, entry.pw_gid

    def close(self) -> None:
        for name in self._users:
            subprocess.run(["userdel", name], capture_output=True)
        for name in self._groups:
            subprocess.run(["groupdel", name], capture_output=True)


def run_as(uid: int, gid: int, umask: int, fn: Callable[[], Any]) -> Any:
    """``fn()`` in a forked child running as ``uid``:``gid`` with ``umask``; its result, or its
    exception re-raised here as a RuntimeError naming it. (Forked, not a new interpreter: the
    other user may not reach this Python. Modules ``fn`` needs must be imported before.)"""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            os.close(read)
            os.setgroups([gid])
            os.setgid(gid)
            os.setuid(uid)
            os.umask(umask)
            try:
                payload = pickle.dumps(("ok", fn()))
            except BaseException as exc:  # noqa: BLE001 - everything goes back to the test
                payload = pickle.dumps(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
            with os.fdopen(write, "wb") as f:
                f.write(payload)
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    if not data:
        raise RuntimeError("the child died without an answer")
    status, value = pickle.loads(data)
    if status == "error":
        raise RuntimeError(value)
    return value


def tree(directory: Path) -> dict[str, int]:
    """Every file under ``directory`` with its size (to see that nothing was written)."""
    out = {}
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with contextlib.suppress(OSError):
                out[os.path.relpath(path, directory)] = os.path.getsize(path)
    return out


def copy_store(source: Path, dest: Path) -> None:
    shutil.copytree(source, dest, symlinks=True)


# --- steps cached in a store that then fails (imported by name, here and in child processes) ---

import pairio as pa  # noqa: E402

LARGE = 300_000  # a result stored as a file (not a row of the small-object table)


@pa.cached
def small_step(n: int) -> dict:
    return {"n": n, "text": "x" * n}


@pa.cached
def large_step(n: int) -> bytes:
    return b"y" * n


def prepare(database_path: str) -> dict[str, str]:
    """A store with a small and a large cached result, a pair and two content objects."""
    with pa.config(database_path=database_path):
        small_step(1)
        large_step(LARGE)
        pa.set("kept", "value")
        return {"bytes": pa.store_bytes(b"kept bytes"), "object": pa.store_object({"a": [1, 2]}),
                "small_key": small_step.key(1), "large_key": large_step.key(LARGE)}


def prepare_in_child(database_path: Path) -> dict[str, str]:
    """:func:`prepare` in a process of its own (its connections closed when it exits)."""
    import json
    import sys

    tests = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", "import json, sys; sys.path.insert(0, sys.argv[1]); "
                          "import store_faults; print(json.dumps(store_faults.prepare(sys.argv[2])))",
                          tests, str(database_path)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


# --- a writer killed at random while the disk fills up ---------------------------------------


@pa.cached
def sized_step(i: int, size: int) -> bytes:
    return (f"{i}:".encode() * (size // 4 + 1))[:size]


def durable_value(i: int) -> str:
    return f"v{i}-" + format(i * 2654435761 % 2**32, "08x")


def writer(database_path: str, seed: int) -> None:
    """Write pairs, cached results and content until killed; print each acknowledged write."""
    import random
    import sys

    rng = random.Random(seed)
    pa.set_config(database_path=database_path)
    print("ready", flush=True)
    for i in range(10**9):
        try:
            pa.set(f"k{i}", durable_value(i))
            print(f"set {i}", flush=True)
        except pa.StoreNotWritableError:
            print(f"refused {i}", flush=True)
        if i % 3 == 0:
            size = rng.choice([10, 2_000, 40_000, 200_000])
            with warnings_caught() as said:
                sized_step(i, size)
            if not said:  # stored (a store that could not take it says so)
                print(f"cached {i} {size}", flush=True)
        if i % 5 == 0:
            try:
                uri = pa.store_bytes(os.urandom(rng.choice([100, 50_000])))
                print(f"object {uri}", flush=True)
            except pa.StoreNotWritableError:
                pass
        sys.stdout.flush()


@contextlib.contextmanager
def warnings_caught():
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        yield seen


def killed_writer_trial(mounts: Mounts, seed: int) -> dict[str, Any]:
    """One trial: a writer on a 3 MB tmpfs that a filler fills while it writes, SIGKILLed at a
    random moment; then every acknowledged write is read back and the store checked. Returns
    the counts and what was lost (``lost`` empty, ``fsck`` clean when all is well)."""
    import random
    import signal
    import sqlite3
    import sys
    import time

    rng = random.Random(seed)
    disk = mounts.tmpfs("3m")
    home = disk / "store"
    tests = os.path.dirname(os.path.abspath(__file__))
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import store_faults; "
         "store_faults.writer(sys.argv[2], int(sys.argv[3]))", tests, str(home), str(seed)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + rng.uniform(0.05, 1.5)
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                f.write(b"\0" * rng.choice([4096, 65536, 262144]))
            time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    lines = child.stdout.read().splitlines()
    child.wait()
    full = os.statvfs(disk).f_bavail == 0
    lost = []
    with pa.config(database_path=str(home)):
        acked = [line.split() for line in lines if line.count(" ") >= 1]
        for word, *rest in acked:
            if word == "set" and pa.get(f"k{rest[0]}") != durable_value(int(rest[0])):
                lost.append(("pair", rest[0]))
            elif word == "cached":
                i, size = int(rest[0]), int(rest[1])
                if not sized_step.is_cached(i, size) or sized_step(i, size) != sized_step.__wrapped__(i, size):
                    lost.append(("cached", rest[0]))
            elif word == "object":
                try:
                    pa.load_bytes(rest[0])
                except pa.PairioError as exc:
                    lost.append(("object", f"{rest[0]}: {exc}"))
        filler.unlink()
        from pairio.content import content_store

        report = content_store(pa.get_config()).fsck()
    with contextlib.closing(sqlite3.connect(home / "kv.sqlite3")) as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    mounts.close()
    counts = {word: sum(1 for w, *_ in acked if w == word) for word in ("set", "cached", "object", "refused")}
    return {"acknowledged": counts, "full": full, "lost": lost, "fsck_corrupt": len(report.corrupt),
            "fsck_unreadable": len(report.unreadable), "integrity": integrity}
