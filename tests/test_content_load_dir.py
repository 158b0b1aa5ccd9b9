"""A stored directory comes back: ``pa.load_dir`` and ``pairio load sha1dir://... --dest``; ``info`` counts every level."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pairio as pa
from pairio.cli import main
from pairio.hashing import canonical_json


def tree(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and directory (None) under ``root``, by relative path."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = None
        for f in filenames:
            out[os.path.relpath(os.path.join(dirpath, f), root)] = Path(dirpath, f).read_bytes()
    return out


def make_tree(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "a.txt").write_text("a")
    (root / "sub" / "b.csv").write_text("b,c\n")
    (root / "sub" / "deeper" / "c.bin").write_bytes(bytes(range(256)))
    return root


@pytest.mark.parametrize("link", [False, True])
def test_load_dir_recreates_the_tree(tmp_path, link):
    source = make_tree(tmp_path / "source")
    uri = pa.store_dir(source)
    assert pa.load_dir(uri, tmp_path / "copy", link=link) == str(tmp_path / "copy")
    assert tree(tmp_path / "copy") == tree(source)


def test_load_dir_of_a_subdirectory(tmp_path):
    source = make_tree(tmp_path / "source")
    uri = pa.store_dir(source)
    pa.load_dir(uri + "/sub", tmp_path / "copy")
    assert tree(tmp_path / "copy") == tree(source / "sub")


names = st.text(st.characters(codec="utf-8", exclude_characters="/\\\0", exclude_categories=("Cs",)),
                min_size=1, max_size=12).filter(lambda n: n not in (".", ".."))


@st.composite
def trees(draw, depth=2):
    files = draw(st.dictionaries(names, st.binary(max_size=64), max_size=4))
    dirs = draw(st.dictionaries(names.filter(lambda n: n not in files), trees(depth=depth - 1), max_size=2)) \
        if depth else {}
    return files, dirs


def write_tree(root: Path, spec) -> None:
    root.mkdir(parents=True, exist_ok=True)
    files, dirs = spec
    for name, data in files.items():
        (root / name).write_bytes(data)
    for name, sub in dirs.items():
        write_tree(root / name, sub)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=trees())
def test_any_stored_tree_comes_back_as_it_was(tmp_path_factory, spec):
    base = tmp_path_factory.mktemp("t")
    try:
        write_tree(base / "source", spec)
    except OSError:  # a name this file system refuses (too long in bytes, case clash...)
        return
    pa.load_dir(pa.store_dir(base / "source"), base / "copy")
    assert tree(base / "copy") == tree(base / "source")


def test_missing_content_writes_nothing_and_names_the_file(tmp_path):
    source = make_tree(tmp_path / "source")
    uri = pa.store_dir(source)
    store = pa.content_store(pa.get_config())
    sha1 = pa.parse_uri(pa.store_file(source / "sub" / "b.csv")).sha1
    os.chmod(store.path(sha1), 0o644)
    os.remove(store.path(sha1))
    with pytest.raises(pa.ContentNotFoundError, match="sub/b.csv"):
        pa.load_dir(uri, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


def test_a_dest_that_is_a_file_is_refused(tmp_path):
    uri = pa.store_dir(make_tree(tmp_path / "source"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(pa.InvalidPathError, match="is a file"):
        pa.load_dir(uri, tmp_path / "file")


def test_a_file_uri_is_refused(tmp_path):
    with pytest.raises(pa.InvalidURIError):
        pa.load_dir(pa.store_text("x"), tmp_path / "copy")


@pytest.mark.parametrize("name", ["..", ".", "a/../../b", ""])
def test_a_manifest_name_that_would_leave_the_tree_is_refused(tmp_path, name):
    sha1 = pa.parse_uri(pa.store_text("evil")).sha1
    manifest = {"files": {name: {"size": 4, "sha1": sha1}}, "dirs": {}}
    uri = "sha1dir://" + pa.parse_uri(pa.store_bytes(canonical_json(manifest).encode())).sha1 + ".x"
    with pytest.raises(pa.InvalidURIError, match="not a plain file name"):
        pa.load_dir(uri, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


def test_pairio_load_with_dest_recreates_a_directory(tmp_path, capsys):
    source = make_tree(tmp_path / "source")
    uri = pa.store_dir(source)
    assert main(["load", uri, "--dest", str(tmp_path / "copy")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "copy")
    assert tree(tmp_path / "copy") == tree(source)
    assert main(["load", uri + "/sub/deeper", "--dest", str(tmp_path / "deeper")]) == 0
    assert tree(tmp_path / "deeper") == tree(source / "sub" / "deeper")
    assert main(["load", uri + "/sub/b.csv", "--dest", str(tmp_path / "b.csv")]) == 0  # a file in it, as before
    assert (tmp_path / "b.csv").read_text() == "b,c\n"


def test_pairio_load_of_a_directory_without_dest_says_to_give_one(tmp_path, capsys):
    uri = pa.store_dir(make_tree(tmp_path / "source"))
    assert main(["load", uri]) == 2
    assert "--dest" in capsys.readouterr().err


def test_info_counts_files_at_every_level(tmp_path, capsys):
    uri = pa.store_dir(make_tree(tmp_path / "source"))
    assert main(["info", uri]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["files"], info["dirs"], info["size"]) == (3, 3, 1 + 4 + 256)
    assert main(["info", uri + "/sub"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["files"], info["dirs"], info["size"]) == (2, 1, 4 + 256)
