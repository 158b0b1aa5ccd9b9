"""pa.store_* / pa.load_* and the command line with a server: two "machines" (separate
database and content directories) sharing content through one real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from server_process import RO_PASSWORD, RW_PASSWORD, ServerProcess, default_settings

import pairio as pa
from pairio.content.store import ContentStore
from pairio.kv.remote import RemoteStore


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("sharing"), default_settings()) as s:
        yield s


@pytest.fixture
def objects(server):
    return ContentStore(server.directory / "content")


def machine(server, home, channel="lab-rw", password=RW_PASSWORD, **fields):
    """Config overrides for one machine: its own database (and so content) directory."""
    return dict(url=server.url, channel=channel, password=password, database_path=str(home), **fields)


def test_a_file_stored_on_one_machine_loads_on_another(server, objects, tmp_path):
    a = machine(server, tmp_path / "a", set_to="local_and_remote")
    b = machine(server, tmp_path / "b", get_from="local_then_remote")
    uri = pa.store_text("shared result\n", **a)
    sha1 = pa.parse_uri(uri).sha1
    assert objects.has(sha1)
    assert pa.load_text(uri, **b) == "shared result\n"
    assert ContentStore(tmp_path / "b" / "content").has(sha1)  # kept locally: no second download
    path = pa.load_file(uri, **b)
    assert path is not None and path.startswith(str(tmp_path / "b"))


@pytest.mark.parametrize("store", ["bytes", "object", "pickle", "file"])
def test_every_store_function_uploads_when_set_to_includes_the_server(server, objects, tmp_path, store):
    a = machine(server, tmp_path / "a", set_to="remote")
    b = machine(server, tmp_path / "b", get_from="remote")
    if store == "bytes":
        uri = pa.store_bytes(os.urandom(1000), **a)
    elif store == "object":
        uri = pa.store_object({"n": os.urandom(8).hex()}, **a)
    elif store == "pickle":
        uri = pa.store_pickle({"n": os.urandom(8)}, **a)
    else:
        f = tmp_path / "data.bin"
        f.write_bytes(os.urandom(5000))
        uri = pa.store_file(f, **a)
    assert objects.has(pa.parse_uri(uri).sha1)
    assert pa.load_bytes(uri, **b) == pa.load_bytes(uri, **a)


def test_nothing_is_uploaded_when_set_to_is_local(server, objects, tmp_path):
    uri = pa.store_text(f"local only {os.urandom(8).hex()}", **machine(server, tmp_path / "a"))
    assert not objects.has(pa.parse_uri(uri).sha1)


def test_a_directory_travels_whole_with_one_missing_request(server, objects, tmp_path, monkeypatch):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    for i in range(5):
        (tree / f"f{i}.txt").write_text(f"file {i} {os.urandom(8).hex()}")
    (tree / "sub" / "deep.bin").write_bytes(os.urandom(3000))
    calls = []
    original = RemoteStore._call

    def counting(self, operation, obj):
        calls.append(operation)
        return original(self, operation, obj)

    monkeypatch.setattr(RemoteStore, "_call", counting)
    uri = pa.store_dir(tree, **machine(server, tmp_path / "a", set_to="local_and_remote"))
    assert calls == ["content/missing"]
    manifest = pa.read_dir(uri, **machine(server, tmp_path / "a"))
    b = machine(server, tmp_path / "b", get_from="local_then_remote")
    out = pa.load_dir(uri, tmp_path / "copy", **b)
    for path in tree.rglob("*"):
        if path.is_file():
            assert (tmp_path / "copy" / path.relative_to(tree)).read_bytes() == path.read_bytes()
    assert pa.read_dir(uri, **b) == manifest and out == str(tmp_path / "copy")
    # A file inside a directory loads on a third machine without the rest.
    c = machine(server, tmp_path / "c", get_from="remote")
    assert pa.load_bytes(f"{uri}/sub/deep.bin", **c) == (tree / "sub" / "deep.bin").read_bytes()


def test_content_on_neither_store_is_not_found_naming_both(server, tmp_path):
    b = machine(server, tmp_path / "b", get_from="local_then_remote")
    uri = pa.store_text("never shared", **machine(server, tmp_path / "a"))
    assert pa.load_file(uri, **b) is None
    with pytest.raises(pa.ContentNotFoundError, match=f"nor on the server {server.url}"):
        pa.load_text(uri, **b)


def test_a_refused_upload_says_the_content_is_stored_locally_only(server, tmp_path):
    ro = machine(server, tmp_path / "a", "public-ro", RO_PASSWORD, set_to="local_and_remote")
    with pytest.raises(pa.PermissionDeniedError, match="stored in the local content store .* but not on the server"):
        pa.store_text("read-only channel", **ro)
    local = ContentStore(tmp_path / "a" / "content")
    assert local.has(pa.parse_uri(pa.store_text("read-only channel", **machine(server, tmp_path / "a"))).sha1)


def test_a_missing_server_configuration_stores_nothing(tmp_path):
    with pytest.raises(pa.ConfigurationError, match="no server configured"):
        pa.store_text("x", database_path=str(tmp_path / "a"), set_to="local_and_remote")
    assert not list((tmp_path / "a").rglob("sha1/*/*/*"))


# --- the command line ------------------------------------------------------------------------


def cli(home, server, *args, **env):
    environ = {**os.environ, "PAIRIO_DB_PATH": str(home), "PAIRIO_URL": server.url,
               "PAIRIO_CHANNEL": "lab-rw", "PAIRIO_PASSWORD": RW_PASSWORD, **env}
    return subprocess.run([sys.executable, "-m", "pairio", *args], capture_output=True, text=True,
                          env=environ, timeout=60)


def test_push_and_pull_move_content_explicitly(server, objects, tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text(os.urandom(8).hex())
    (tree / "b.txt").write_text(os.urandom(8).hex())
    file_uri = pa.store_text(os.urandom(8).hex(), **machine(server, tmp_path / "a"))
    dir_uri = pa.store_dir(tree, **machine(server, tmp_path / "a"))
    r = cli(tmp_path / "a", server, "push", file_uri, dir_uri)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{file_uri}: 1 object(s) uploaded", f"{dir_uri}: 3 object(s) uploaded"]
    assert cli(tmp_path / "a", server, "push", dir_uri).stdout.strip() == f"{dir_uri}: 0 object(s) uploaded"
    r = cli(tmp_path / "b", server, "--json", "pull", file_uri, dir_uri)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [{"uri": file_uri, "downloaded": 1}, {"uri": dir_uri, "downloaded": 3}]
    assert pa.load_dir(dir_uri, tmp_path / "copy", database_path=str(tmp_path / "b"))


def test_pull_of_content_the_server_lacks_exits_1(server, tmp_path):
    uri = pa.store_text("not pushed", **machine(server, tmp_path / "a"))
    r = cli(tmp_path / "b", server, "pull", uri)
    assert r.returncode == 1 and "not on pairio server" in r.stderr


def test_load_and_cat_follow_get_from(server, tmp_path):
    uri = pa.store_text("for cat\n", **machine(server, tmp_path / "a", set_to="local_and_remote"))
    r = cli(tmp_path / "b", server, "cat", uri)
    assert r.returncode == 1  # get_from=local: not here
    r = cli(tmp_path / "b", server, "cat", uri, PAIRIO_GET_FROM="local_then_remote")
    assert r.returncode == 0 and r.stdout == "for cat\n"
    r = cli(tmp_path / "c", server, "load", uri, PAIRIO_GET_FROM="remote")
    assert r.returncode == 0 and open(r.stdout.strip()).read() == "for cat\n"


def test_store_follows_set_to(server, objects, tmp_path):
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(2000))
    r = cli(tmp_path / "a", server, "store", str(f), PAIRIO_SET_TO="local_and_remote")
    assert r.returncode == 0, r.stderr
    assert objects.has(pa.parse_uri(r.stdout.strip()).sha1)
