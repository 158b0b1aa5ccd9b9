"""Results made while the server was down reach it: the outbox (durable, sent in the background of a
later call) and ``pairio sync`` (which also pushes recorded entries the server lacks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
import warnings
from pathlib import Path

import pytest
from server_process import RO_PASSWORD, RW_PASSWORD, ServerProcess, default_settings, free_port

import pairio as pa
from pairio.memo import outbox, remote

runs: dict[str, int] = {}


@pa.cached
def step(tag: str, x: int) -> list[int]:
    runs[tag] = runs.get(tag, 0) + 1
    return [x] * 1000


@pytest.fixture
def server(tmp_path):
    """A server on a fixed port, so that it can be stopped and started again at the same URL."""
    s = ServerProcess(tmp_path / "server", default_settings(), port=free_port())
    s.start()
    yield s
    s.stop()


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex


def shared(server: ServerProcess, **fields):
    return pa.config(url=server.url, channel="lab-rw", password=RW_PASSWORD, collection="spikes",
                     get_from="local_then_remote", set_to="local_and_remote", **fields)


def teammate(server: ServerProcess, tmp_path: Path):
    """A colleague's machine: its own empty local store, the same server."""
    return pa.config(url=server.url, channel="lab-rw", password=RW_PASSWORD, collection="spikes",
                     database_path=str(tmp_path / f"teammate-{uuid.uuid4().hex[:6]}"),
                     get_from="local_then_remote", set_to="local_and_remote")


def quietly(f, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*args)


def restart(server: ServerProcess) -> None:
    server.start()
    remote.forget_health()  # as SKIP_S seconds later: the next call tries the server again


def test_a_result_made_while_the_server_is_down_is_uploaded_in_the_background_of_a_later_call(
        server, tag, tmp_path):
    with shared(server):
        server.stop()
        assert quietly(step, tag, 1) == [1] * 1000
        assert len(outbox.waiting(pa.get_config())) == 1
        restart(server)
        assert step(tag, 2) == [2] * 1000  # the server answers this call's lookup: the outbox goes up
        outbox.wait_for_uploads()
        assert outbox.waiting(pa.get_config()) == []
    with teammate(server, tmp_path):
        assert step(tag, 1) == [1] * 1000 and step(tag, 2) == [2] * 1000
    assert runs[tag] == 2  # the teammate computed neither


def test_a_server_that_refused_the_result_gets_it_once_it_accepts(server, tag, tmp_path):
    # A read-only channel refuses the pair; the result is remembered, and sync sends it with a
    # channel that may write.
    with pa.config(url=server.url, channel="public-ro", password=RO_PASSWORD, collection="spikes",
                   get_from="local_then_remote", set_to="local_and_remote"):
        quietly(step, tag, 3)
        assert [w.key for w in outbox.waiting(pa.get_config())] == [step.key(tag, 3)]
    with shared(server):
        report = pa.sync()
    assert report.pushed == 1 and report.outbox_left == 0
    with teammate(server, tmp_path):
        step(tag, 3)
    assert runs[tag] == 1


def test_the_outbox_is_not_used_when_the_server_took_the_result(server, tag):
    with shared(server):
        step(tag, 1)
        assert outbox.waiting(pa.get_config()) == []
        assert not outbox.outbox_dir(pa.get_config()).exists()


STEPS = """
import pairio as pa

@pa.cached
def spike_rate(tag, x):
    print("computed", tag, x, flush=True)
    return {"tag": tag, "rates": list(range(x, x + 500))}
"""

MAKE = """
import os, signal, sys, warnings
sys.path.insert(0, sys.argv[1])
import steps
warnings.simplefilter("ignore")
for x in range(int(sys.argv[3])):
    steps.spike_rate(sys.argv[2], x)
os.kill(os.getpid(), signal.SIGKILL)  # a crash just after the calls returned: nothing runs at exit
"""


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=120)


def environment(server: ServerProcess, home: Path, **more: str) -> dict[str, str]:
    return {**os.environ, "PAIRIO_URL": server.url, "PAIRIO_CHANNEL": "lab-rw", "PAIRIO_PASSWORD": RW_PASSWORD,
            "PAIRIO_COLLECTION": "spikes", "PAIRIO_GET_FROM": "local_then_remote",
            "PAIRIO_SET_TO": "local_and_remote", "PAIRIO_DB_PATH": str(home), **more}


def test_the_outbox_survives_a_crash_and_pairio_sync_uploads_it_so_a_teammate_hits(server, tag, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "steps.py").write_text(textwrap.dedent(STEPS))
    (code / "make.py").write_text(textwrap.dedent(MAKE))
    mine = tmp_path / "mine"
    server.stop()
    made = run([str(code / "make.py"), str(code), tag, "3"], environment(server, mine))
    assert made.returncode == -signal.SIGKILL and made.stdout.count("computed") == 3
    assert len(list((mine / "outbox").iterdir())) == 3

    server.start()
    dry = run(["-m", "pairio", "sync", "--dry-run", "--json"], environment(server, mine))
    assert dry.returncode == 0, dry.stderr
    counted = json.loads(dry.stdout)
    assert counted["dry_run"] and counted["pushed"] == 3 and counted["objects"] == 3 and counted["outbox_left"] == 3

    theirs = tmp_path / "theirs"
    check = [str(code / "make.py").replace("make.py", "hit.py"), str(code), tag, "3"]
    (code / "hit.py").write_text(textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        import steps
        for x in range(int(sys.argv[3])):
            steps.spike_rate(sys.argv[2], x)
    """))
    # Dry run: nothing was sent (this teammate keeps what it computes to itself).
    assert run(check, environment(server, theirs, PAIRIO_SET_TO="local")).stdout.count("computed") == 3
    theirs2 = tmp_path / "theirs2"

    synced = run(["-m", "pairio", "sync"], environment(server, mine))
    assert synced.returncode == 0, synced.stderr
    assert "3 the server lacked (uploaded: 3 object(s)" in synced.stdout
    assert "0 result(s) still waiting in the outbox" in synced.stdout
    assert list((mine / "outbox").iterdir()) == []
    hit = run(check, environment(server, theirs2))
    assert hit.returncode == 0, hit.stderr
    assert hit.stdout.count("computed") == 0  # every one a hit, from the server

    again = run(["-m", "pairio", "sync", "--json"], environment(server, mine))
    report = json.loads(again.stdout)
    assert report["pushed"] == 0 and report["objects"] == 0 and report["outbox_left"] == 0


def test_sync_pushes_recorded_entries_the_server_lacks_and_never_overwrites_its_values(server, tag, tmp_path):
    with pa.config(collection="spikes"):
        step(tag, 1)  # computed with no server at all: recorded locally, not in the outbox
        step(tag, 2)
    step(tag, 3)  # in a collection the channel may not use: counted as refused
    with shared(server):
        dry = pa.sync(dry_run=True)
        assert dry.pushed == 2 and dry.objects == 2 and dry.bytes > 0 and dry.collections_refused == ["default"]
        report = pa.sync()
        assert (report.pushed, report.on_server, report.differing, report.refused) == (2, 0, 0, 1)
        key = step.key(tag, 1)
    with teammate(server, tmp_path):
        assert step(tag, 1) == [1] * 1000 and step(tag, 2) == [2] * 1000
        assert runs[tag] == 3
        # The server now holds another value for a key this store has: sync leaves it.
        pa.set(key, pa.store_object([9]), collection="spikes")
    with shared(server):
        report = pa.sync(collection="spikes")
    assert (report.entries, report.pushed, report.on_server, report.differing) == (2, 0, 1, 1)
    with shared(server), pa.config(get_from="remote"):
        assert pa.load_object(pa.get(key, collection="spikes")) == [9]


def test_sync_needs_a_server():
    with pytest.raises(pa.ConfigurationError, match="PAIRIO_URL"):
        pa.sync()


def test_a_later_local_hit_also_sends_the_outbox_once_the_server_answers(server, tag, tmp_path):
    with shared(server):
        quietly(step, tag, 1)  # a result from before the outage: a local hit below
        server.stop()
        remote.forget_health()
        quietly(step, tag, 2)  # made during the outage
        restart(server)
        assert step(tag, 1) == [1] * 1000  # a local hit; the server is not known to be down
        outbox.wait_for_uploads()
        assert outbox.waiting(pa.get_config()) == []
    with teammate(server, tmp_path):
        step(tag, 2)
    assert runs[tag] == 2
