"""The records, hits and leases the status tests put on a real server, and its pairio.json."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from server_process import RW_PASSWORD, default_settings, signed_request

VIEW_PASSWORD = "view-password-0123456789"
NOW = time.time()
SHA = ["%040x" % (i + 1) for i in range(8)]


def status_settings(**extra) -> dict:
    """The test servers' pairio.json with a view-only channel, ``viewer``, that may read ``spikes``."""
    settings = default_settings(**extra)
    settings["channels"].append({"name": "viewer", "password": VIEW_PASSWORD, "view": True, "readContent": True,
                                 "collections": [{"name": "spikes", "maxNumGetsPerMinute": 1000}]})
    return settings


def record(function: str, size: int, seconds: float, created: float, **arguments: str) -> dict:
    """A record as a client sends it with its pair."""
    return {"function": function, "code": "c0de" * 10, "dependencies": {"numpy": "2.1.0"},
            "arguments": arguments, "size": size, "seconds": seconds, "host": "lab-1", "created": created}


# (collection, key, record): spikes is shared with public-ro and viewer; other is lab-rw's alone.
ENTRIES = [
    ("spikes", "a" * 40, record("steps.detect", 1000, 12.0, NOW - 300, threshold="5")),
    ("spikes", "b" * 40, record("steps.detect", 3000, 10.0, NOW - 200, threshold="7")),
    ("spikes", "c" * 40, record("steps.sort_units", 500, 60.0, NOW - 100, method="'kilosort'")),
    ("other", "d" * 40, record("secret.train_model", 99_000, 600.0, NOW - 50, lr="0.1")),
]


def rw(server, path, obj=None, **kw):
    """A request signed by the read-write channel."""
    return signed_request(server.url, "lab-rw", RW_PASSWORD, path, obj, **kw)


def populate(server) -> None:
    """Set :data:`ENTRIES` with their records, get some (hits), and take two leases."""
    for i, (collection, key, rec) in enumerate(ENTRIES):
        r = rw(server, "/api/v1/set", {"collection": collection, "key": key, "value": SHA[i], "records": {key: rec}})
        assert r.status_code == 200, r.text
    # Hits: the first entry twice, the third once.
    for key in ("a" * 40, "a" * 40, "c" * 40):
        assert rw(server, "/api/v1/get", {"collection": "spikes", "key": key}).json()["value"]
    for collection, key, owner, host, pid, function in (("other", "e" * 40, "o" * 20, "gpu-7", 42, "secret.train_model"),
                                                        ("spikes", "f" * 40, "p" * 20, "lab-2", 7, "steps.detect")):
        lease = rw(server, "/api/v1/lease/acquire", {"collection": collection, "key": key, "owner": owner, "ttl": 600,
                                                     "info": {"host": host, "pid": pid, "function": function}})
        assert lease.json()["held"], lease.text


def start_ui(tmp_path, env_home, max_size: str | None = None) -> tuple[subprocess.Popen, str]:
    """``pairio ui`` on a free port: the process and the URL it printed."""
    env = {**os.environ, "PAIRIO_DB_PATH": str(env_home), "PYTHONUNBUFFERED": "1"}
    if max_size is not None:
        env["PAIRIO_MAX_SIZE"] = max_size
    process = subprocess.Popen([sys.executable, "-m", "pairio", "ui", "--no-browser"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env=env, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        found = re.search(r"http://\S+", line)
        if found:
            return process, found.group(0)
        if process.poll() is not None:
            break
    process.kill()
    raise AssertionError("pairio ui printed no URL")
