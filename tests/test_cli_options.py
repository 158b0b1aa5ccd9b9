"""The command line's shared options (--url, --channel, --collection, --get-from, --set-to,
--password-file, --json), its exit codes, ``pairio config`` and ``pairio ping``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from server_process import RO_PASSWORD, RW_PASSWORD, ServerProcess, default_settings, free_port

import pairio as pa
from pairio.cli import EXIT_CODES, main
from pairio.kv import EmbeddedStore


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("server"), default_settings()) as s:
        yield s


@pytest.fixture
def password_file(tmp_path):
    def write(password: str):
        path = tmp_path / "password.txt"
        path.write_text(password + "\n")
        return str(path)
    return write


def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


# --- exit codes -------------------------------------------------------------------------


def test_help_lists_every_exit_code(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    shown = capsys.readouterr().out
    assert "exit codes:" in shown
    for code, _, meaning in EXIT_CODES:
        assert f"{code:>3}  {meaning}" in shown


def test_codes_are_distinct():
    codes = [code for code, _, _ in EXIT_CODES]
    assert len(codes) == len(set(codes))


def test_a_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["get"])
    assert exc.value.code == 2


def test_each_kind_of_failure_has_its_own_exit_code(tmp_path, server, password_file, capsys):
    uri = pa.store_bytes(b"will rot")
    path = pa.content_store(pa.get_config()).path(pa.parse_uri(uri).sha1)
    os.chmod(path, 0o644)
    path.write_bytes(b"has rotted")
    absent_server = f"http://127.0.0.1:{free_port()}"
    cases = {
        1: ["cat", f"sha1://{'0' * 40}"],
        2: ["get", "--json-key", "{not json"],
        3: ["store", str(tmp_path / "missing.dat")],
        4: ["get", "k", "--url", absent_server, "--channel", "lab-rw", "--password-file",
            password_file(RW_PASSWORD), "--get-from", "remote"],
        5: ["get", "k", "--url", server.url, "--channel", "lab-rw", "--password-file",
            password_file("wrong-password-123456"), "--get-from", "remote"],
        6: ["set", "k", "v", "--url", server.url, "--channel", "public-ro", "--password-file",
            password_file(RO_PASSWORD), "--set-to", "remote", "--collection", "spikes"],
        7: ["cat", uri, "--verify"],
    }
    for expected, args in cases.items():
        pa.reset_config()
        code, _, err = run(capsys, *args)
        assert code == expected, (args, err)
        assert err.startswith("pairio"), err


# --- --json: machine-readable output; a key as JSON has its own flag -----------------------


def test_json_key_is_its_own_flag(capsys):
    assert main(["set", "--json-key", '{"b": 1, "a": 2}', "v"]) == 0
    assert main(["get", "--json-key", '{"a": 2, "b": 1}']) == 0
    assert capsys.readouterr().out == "v\n"
    assert main(["get", pa.key_string({"a": 2, "b": 1})]) == 0


@pytest.mark.parametrize("args", [
    ["get", "present"], ["get", "absent"], ["set", "k2", "v2"], ["config"], ["info", "URI"], ["load", "URI"],
    ["store", "FILE"], ["fsck"], ["gc", "--temp", "--locks"], ["stats"],
    ["ls"], ["gc", "--dry-run"], ["forget", "f"], ["evict", "1GB"],
])
@pytest.mark.parametrize("where", ["after", "before"])
def test_json_means_machine_readable_output_everywhere(args, where, tmp_path, capsys):
    pa.set("present", "value")
    (tmp_path / "f.txt").write_text("x")
    uri = pa.store_file(tmp_path / "f.txt")
    args = [{"URI": uri, "FILE": str(tmp_path / "f.txt")}.get(a, a) for a in args]
    code, out, _ = run(capsys, *(args + ["--json"] if where == "after" else ["--json"] + args))
    assert code == (1 if args == ["get", "absent"] else 0)
    json.loads(out)  # one JSON document, nothing else
    if args[0] == "get":
        assert json.loads(out)["value"] == ("value" if args[1] == "present" else None)


def test_cat_refuses_json(capsys):
    assert main(["cat", pa.store_text("x"), "--json"]) == 2


# --- pairio config ---------------------------------------------------------------------------


def test_config_shows_the_effective_paths(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PAIRIO_DB_PATH", "~/pairio-db")
    pa.reset_config()
    assert main(["config"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["database_path"] == str(tmp_path / "pairio-db")
    assert shown["content_dir"] == str(tmp_path / "pairio-db" / "content")
    monkeypatch.setenv("PAIRIO_CONTENT_DIR", "~/objects")
    pa.reset_config()
    assert main(["config"]) == 0
    assert json.loads(capsys.readouterr().out)["content_dir"] == str(tmp_path / "objects")


def test_config_shows_command_line_options_but_never_the_password(password_file, capsys):
    assert main(["config", "--url", "http://example.org:1", "--channel", "c", "--collection", "spikes",
                 "--get-from", "local_then_remote", "--set-to", "local_and_remote",
                 "--password-file", password_file("hunter2-hunter2")]) == 0
    out = capsys.readouterr().out
    shown = json.loads(out)
    assert (shown["url"], shown["channel"], shown["collection"], shown["get_from"], shown["set_to"]) == (
        "http://example.org:1", "c", "spikes", "local_then_remote", "local_and_remote")
    assert shown["password"] == "***" and "hunter2" not in out


# --- where a miss looked ---------------------------------------------------------------------


def test_a_miss_with_a_server_configured_but_get_from_local_says_only_local_was_searched(server, capsys):
    code, _, err = run(capsys, "get", "never-set", "--url", server.url, "--channel", "lab-rw")
    assert code == 1
    assert "only the local store was searched" in err and server.url in err and "--get-from" in err


def test_a_miss_without_a_server_does_not_mention_one(capsys):
    code, _, err = run(capsys, "get", "never-set")
    assert code == 1 and "not found" in err and "configured" not in err


# --- the options reach the server ---------------------------------------------------------------


def test_options_on_the_command_line_reach_the_server(server, password_file, capsys):
    options = ["--url", server.url, "--channel", "lab-rw", "--password-file", password_file(RW_PASSWORD),
               "--collection", "other"]
    assert main(["set", "cli-key", "cli-value", "--set-to", "remote", *options]) == 0
    assert EmbeddedStore(server.directory / "store").get("other", "cli-key") == "cli-value"
    pa.reset_config()
    assert main(["--get-from", "remote", *options, "get", "cli-key"]) == 0
    assert capsys.readouterr().out == "cli-value\n"


def test_password_from_the_environment(server, monkeypatch, capsys):
    monkeypatch.setenv("PAIRIO_PASSWORD", RW_PASSWORD)
    pa.reset_config()
    assert main(["set", "env-key", "v", "--url", server.url, "--channel", "lab-rw", "--collection", "spikes",
                 "--set-to", "remote"]) == 0


@pytest.mark.parametrize("args", [["--password", "s3cret"], ["--password=s3cret"], ["--password"]])
def test_a_password_on_the_command_line_is_refused(args):
    done = subprocess.run([sys.executable, "-m", "pairio", "get", "k", *args], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "PAIRIO_PASSWORD" in done.stderr and "--password-file" in done.stderr
    assert "s3cret" not in done.stderr


def test_an_abbreviation_is_not_taken_for_the_password_file():
    done = subprocess.run([sys.executable, "-m", "pairio", "get", "k", "--pass", "s3cret"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "unrecognized arguments" in done.stderr


def test_an_unreadable_password_file_is_named(tmp_path, capsys):
    code, _, err = run(capsys, "get", "k", "--password-file", str(tmp_path / "nope.txt"))
    assert code == 2 and "nope.txt" in err


# --- pairio ping ---------------------------------------------------------------------------------


def test_ping_connects_and_shows_the_channel_rights(server, password_file, capsys):
    code, out, _ = run(capsys, "ping", "--url", server.url, "--channel", "public-ro", "--password-file",
                       password_file(RO_PASSWORD), "--collection", "spikes")
    assert code == 0
    assert "public-ro" in out and "spikes: read" in out and "write" not in out
    pa.reset_config()
    code, out, _ = run(capsys, "ping", "--json", "--url", server.url, "--channel", "lab-rw", "--password-file",
                       password_file(RW_PASSWORD), "--collection", "spikes")
    report = json.loads(out)
    assert code == 0 and report["rights"] == {"get": True, "set": True} and set(report["collections"]) == {
        "spikes", "other"}


def test_ping_exit_codes_say_what_is_wrong(server, password_file, capsys):
    base = ["ping", "--channel", "lab-rw", "--collection", "spikes"]
    assert run(capsys, *base, "--url", server.url, "--password-file", password_file("wrong-password-0000"))[0] == 5
    pa.reset_config()
    assert run(capsys, *base, "--url", f"http://127.0.0.1:{free_port()}", "--password-file",
               password_file(RW_PASSWORD))[0] == 4
    pa.reset_config()
    code, _, err = run(capsys, "ping", "--channel", "public-ro", "--collection", "other", "--url", server.url,
                       "--password-file", password_file(RO_PASSWORD))
    assert code == 6 and "'other'" in err
    pa.reset_config()
    code, _, err = run(capsys, "ping")
    assert code == 2 and "no server configured" in err
