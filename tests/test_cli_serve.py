"""``pairio serve``: --init, --check's password warnings, binding before "serving", one server per
directory, and refused requests logged by channel, never with a secret."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from server_process import (
    RO_PASSWORD,
    RW_PASSWORD,
    ServerProcess,
    default_settings,
    free_port,
    signed_request,
)

from pairio.cli import main
from pairio.cli.serve import EXAMPLE_PASSWORDS, password_warnings
from pairio.server.settings import load_settings

EXAMPLE = Path(__file__).resolve().parent.parent / "server" / "example_pairio.json"


def serve(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pairio", "serve", *args], capture_output=True, text=True,
                          timeout=timeout)


# --- --init -------------------------------------------------------------------------------


def test_init_writes_a_valid_pairio_json_with_fresh_random_passwords(tmp_path, capsys):
    assert main(["serve", "--init", str(tmp_path / "a")]) == 0
    assert main(["serve", "--init", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    a, b = load_settings(tmp_path / "a"), load_settings(tmp_path / "b")
    passwords = [*a.passwords.values(), *b.passwords.values()]
    assert len(set(passwords)) == 4 and all(len(p) >= 32 for p in passwords)
    assert password_warnings(a.passwords) == []
    assert stat.S_IMODE(os.stat(tmp_path / "a" / "pairio.json").st_mode) == 0o600
    assert not any(p in out for p in passwords)  # the passwords stay in the file
    assert main(["serve", str(tmp_path / "a"), "--check"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_init_never_overwrites(tmp_path, capsys):
    assert main(["serve", "--init", str(tmp_path)]) == 0
    before = (tmp_path / "pairio.json").read_text()
    assert main(["serve", "--init", str(tmp_path)]) == 3
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "pairio.json").read_text() == before


# --- --check's warnings ----------------------------------------------------------------------


def test_the_example_passwords_are_the_ones_warned_about():
    example = json.loads(EXAMPLE.read_text())
    assert {c["password"] for c in example["channels"]} == EXAMPLE_PASSWORDS


def test_check_warns_about_the_examples_passwords(tmp_path, capsys):
    shutil.copy(EXAMPLE, tmp_path / "pairio.json")
    assert main(["serve", str(tmp_path), "--check"]) == 0
    err = capsys.readouterr().err
    assert err.count("example's password") == 2 and "'lab-rw'" in err and "'public-ro'" in err
    assert not any(p in err for p in EXAMPLE_PASSWORDS)


@pytest.mark.parametrize("password", ["passw0rd", "12345678901234", "aaaaaaaaaaaaaaaaaaaaaaaa", "Summer2024!",
                                      "abcdabcdabcdabcd"])
def test_check_warns_about_weak_passwords(tmp_path, password, capsys):
    settings = default_settings()
    settings["channels"][0]["password"] = password
    (tmp_path / "pairio.json").write_text(json.dumps(settings))
    (tmp_path / "pairio.json").chmod(0o600)  # readable by others is a warning of its own
    assert main(["serve", str(tmp_path), "--check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["warnings"]) == 1 and "weak password" in report["warnings"][0]
    assert "'lab-rw'" in report["warnings"][0] and password not in report["warnings"][0]


def test_check_warns_about_a_password_shared_by_channels(tmp_path, capsys):
    settings = default_settings()
    settings["channels"][1]["password"] = settings["channels"][0]["password"]
    (tmp_path / "pairio.json").write_text(json.dumps(settings))
    assert main(["serve", str(tmp_path), "--check"]) == 0
    assert "share one password" in capsys.readouterr().err


# --- binding, and one server per directory ----------------------------------------------------


def test_a_taken_port_fails_before_saying_serving(tmp_path):
    (tmp_path / "pairio.json").write_text(json.dumps(default_settings()))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = serve(str(tmp_path), "--port", str(taken.getsockname()[1]))
    assert done.returncode == 2
    assert "serving" not in done.stderr and "cannot listen" in done.stderr and "--port" in done.stderr


def test_a_second_server_on_the_same_directory_is_refused(tmp_path):
    with ServerProcess(tmp_path, default_settings()) as first:
        done = serve(str(tmp_path), "--port", str(free_port()))
        assert done.returncode == 8
        assert "already serving" in done.stderr and "serving " + str(tmp_path) not in done.stderr
        assert first.process.poll() is None
    # The lock goes with the process: the directory can be served again.
    with ServerProcess(tmp_path, default_settings()):
        pass


# --- refused requests in the log -----------------------------------------------------------------


def test_refused_requests_are_logged_with_the_channel_and_no_secret(tmp_path):
    wrong = "wrong-password-for-the-log-test"
    with ServerProcess(tmp_path, default_settings()) as server:
        assert signed_request(server.url, "lab-rw", wrong, "/api/v1/get",
                              {"collection": "spikes", "key": "k"}).status_code == 401
        assert signed_request(server.url, "public-ro", RO_PASSWORD, "/api/v1/set",
                              {"collection": "spikes", "key": "k", "value": "v"}).status_code == 403
    log = server.log()
    assert "refused 401" in log and "'lab-rw'" in log
    assert "refused 403" in log and "'public-ro'" in log and "'spikes'" in log
    for secret in (wrong, RW_PASSWORD, RO_PASSWORD):
        assert secret not in log


# --- files holding passwords that others can read ----------------------------------------------


@pytest.mark.parametrize("which", ["pairio.json", "password file"])
@pytest.mark.parametrize("mode", [0o644, 0o604])
def test_check_warns_about_password_files_readable_by_others(tmp_path, which, mode, capsys):
    (tmp_path / "pairio.json").write_text(json.dumps(default_settings()))
    password_file = tmp_path / "secret"
    password_file.write_text("a long random password of the client's\n")
    readable = tmp_path / "pairio.json" if which == "pairio.json" else password_file
    for path in (tmp_path / "pairio.json", password_file):
        path.chmod(mode if path == readable else 0o640)
    assert main(["--password-file", str(password_file), "serve", str(tmp_path), "--check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    named = [w for w in report["warnings"] if "readable by every user" in w]
    assert len(named) == 1 and str(readable) in named[0] and f"{mode:04o}" in named[0]


def test_check_is_quiet_about_private_password_files(tmp_path, capsys):
    (tmp_path / "pairio.json").write_text(json.dumps(default_settings()))
    (tmp_path / "pairio.json").chmod(0o640)
    assert main(["serve", str(tmp_path), "--check", "--json"]) == 0
    assert not [w for w in json.loads(capsys.readouterr().out)["warnings"] if "readable" in w]
