"""The content directory's writing lock (held shared from a result's content to its pair) across
fork(): a child's use of the lock must never let go of the parent's hold."""

from __future__ import annotations

import os
import sys

import pytest

from pairio.content import directory_lock

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform != "linux", reason="fork() and flock on Linux")


def test_a_forked_child_writing_and_done_leaves_the_parent_holding_the_directory(tmp_path):
    with directory_lock.writing(tmp_path):
        pass  # the process's descriptor of the lock file is open from now on
    child_may_go, parent_may_go = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: waits until the parent holds the lock, then writes and is done
        status = 1
        try:
            os.read(child_may_go[0], 1)
            with directory_lock.writing(tmp_path):
                pass
            status = 0
        finally:
            os.write(parent_may_go[1], b"x")
            os._exit(status)
    try:
        with directory_lock.writing(tmp_path):
            os.write(child_may_go[1], b"x")
            os.read(parent_may_go[0], 1)
            with directory_lock.removing(tmp_path, timeout=0) as removable:
                assert not removable  # still held by this writer
        with directory_lock.removing(tmp_path, timeout=0) as removable:
            assert removable
    finally:
        _, status = os.waitpid(pid, 0)
    assert status == 0
