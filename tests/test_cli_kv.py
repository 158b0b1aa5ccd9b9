"""The ``pairio`` command line for pairs and config, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def pairio(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pairio", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_set_then_get_prints_the_value():
    assert pairio("set", "k", "v").returncode == 0
    result = pairio("get", "k")
    assert (result.returncode, result.stdout) == (0, "v\n")


def test_get_of_an_absent_key_exits_1_with_a_message_on_stderr():
    result = pairio("get", "never-set")
    assert result.returncode == 1
    assert result.stdout == "" and "never-set" in result.stderr and "not found" in result.stderr


def test_collection_option_keeps_pairs_apart():
    pairio("set", "k", "in-c", "--collection", "c")
    assert pairio("get", "k", "--collection", "c").stdout == "in-c\n"
    assert pairio("get", "k").returncode == 1


def test_json_key_is_hashed_like_the_python_api():
    assert pairio("set", "--json-key", '{"operation": "add", "arg1": 12, "arg2": 30}', "42").returncode == 0
    assert pairio("get", "8b63bdedf159d59cdd42afec749ce2046bf18f09").stdout == "42\n"
    assert pairio("get", "--json-key", '{"arg2": 30, "arg1": 12, "operation": "add"}').stdout == "42\n"


def test_bad_json_key_is_a_clear_error():
    result = pairio("get", "--json-key", "{not json")
    assert result.returncode == 2 and "not valid JSON" in result.stderr


def test_too_long_value_is_a_clear_error_and_stores_nothing():
    result = pairio("set", "k", "x" * 81)
    assert result.returncode == 2 and "limit is 80" in result.stderr
    assert pairio("get", "k").returncode == 1


def test_set_delete_removes_the_key():
    pairio("set", "k", "v")
    assert pairio("set", "k", "--delete").returncode == 0
    assert pairio("get", "k").returncode == 1


def test_config_prints_effective_config_with_password_masked():
    result = pairio("config", env={"PAIRIO_PASSWORD": "s3cret-pw", "PAIRIO_COLLECTION": "spikes"})
    assert result.returncode == 0
    shown = json.loads(result.stdout)
    assert shown["password"] == "***" and shown["collection"] == "spikes"
    assert "s3cret-pw" not in result.stdout + result.stderr


def test_invalid_config_from_environment_names_the_choices():
    result = pairio("get", "k", env={"PAIRIO_GET_FROM": "nowhere"})
    assert result.returncode != 0 and "local_then_remote" in result.stderr


@pytest.mark.parametrize("command", [[], ["get"], ["set"], ["config"]])
def test_every_command_has_help(command):
    result = pairio(*command, "--help")
    assert result.returncode == 0 and "usage: pairio" in result.stdout


def test_get_of_an_absent_key_names_the_collection():
    result = pairio("get", "never-set", "--collection", "spikes")
    assert result.returncode == 1 and "collection 'spikes'" in result.stderr


def test_collection_that_is_not_valid_unicode_is_a_clear_error():
    # An argument that is not UTF-8 reaches Python as a lone surrogate.
    result = subprocess.run([sys.executable, "-m", "pairio", "get", "k", "--collection", b"\xff"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "surrogate" in result.stderr and "Traceback" not in result.stderr


def test_a_closed_stdout_ends_quietly_with_the_sigpipe_exit_code():
    assert pairio("set", "k", "v").returncode == 0
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before pairio writes
    try:
        result = subprocess.run([sys.executable, "-m", "pairio", "get", "k"], stdout=write_end,
                                stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (141, "")
