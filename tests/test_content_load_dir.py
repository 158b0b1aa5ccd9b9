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


# --- hostile destinations and manifests -------------------------------------------------------


def manifest_uri(manifest: dict | str) -> str:
    """A sha1dir:// URI of ``manifest`` stored as it is (JSON text, or a dict made canonical)."""
    text = manifest if isinstance(manifest, str) else canonical_json(manifest)
    return "sha1dir://" + pa.parse_uri(pa.store_bytes(text.encode())).sha1 + ".x"


def outside_tree(root: Path) -> dict[str, bytes | None]:
    return tree(root) if root.exists() else {}


@pytest.mark.parametrize("link", [False, True])
@pytest.mark.parametrize("points_to", ["file", "directory", "nothing"])
def test_a_symlink_in_dest_named_like_a_file_is_replaced_never_followed(tmp_path, link, points_to):
    source = make_tree(tmp_path / "source")
    uri = pa.store_dir(source)
    outside = tmp_path / "outside"
    outside.mkdir()
    if points_to == "file":
        (outside / "victim.txt").write_text("precious")
    elif points_to == "directory":
        (outside / "victim.txt").mkdir()
    dest = tmp_path / "copy"
    (dest / "sub").mkdir(parents=True)
    (dest / "a.txt").symlink_to(outside / "victim.txt")
    (dest / "sub" / "b.csv").symlink_to(outside / "victim.txt")
    before = outside_tree(outside)
    pa.load_dir(uri, dest, link=link)
    assert outside_tree(outside) == before  # nothing written outside dest
    assert not (dest / "a.txt").is_symlink() and (dest / "a.txt").read_text() == "a"
    assert not (dest / "sub" / "b.csv").is_symlink() and (dest / "sub" / "b.csv").read_text() == "b,c\n"
    assert tree(dest) == tree(source)


@pytest.mark.parametrize("component", ["sub", "sub/deeper", "empty"])
def test_a_symlinked_directory_in_dest_is_refused_and_nothing_is_written(tmp_path, capsys, component):
    source = make_tree(tmp_path / "source")
    uri = pa.store_dir(source)
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "copy"
    (dest / component).parent.mkdir(parents=True, exist_ok=True)
    (dest / component).symlink_to(outside, target_is_directory=True)
    before = tree(dest)
    with pytest.raises(pa.InvalidPathError, match=f"{component}.* is a symbolic link"):
        pa.load_dir(uri, dest)
    assert list(outside.iterdir()) == []
    assert tree(dest) == before  # refused before anything was written
    assert main(["load", uri, "--dest", str(dest)]) != 0
    assert "symbolic link" in capsys.readouterr().err
    assert list(outside.iterdir()) == []


def test_a_directory_in_dest_where_a_file_goes_is_refused(tmp_path):
    uri = pa.store_dir(make_tree(tmp_path / "source"))
    (tmp_path / "copy" / "a.txt").mkdir(parents=True)
    with pytest.raises(pa.InvalidPathError, match="a.txt.* is a directory where the file"):
        pa.load_dir(uri, tmp_path / "copy")
    assert list((tmp_path / "copy" / "a.txt").iterdir()) == []


def test_a_name_that_is_both_a_file_and_a_directory_is_refused(tmp_path):
    sha1 = pa.parse_uri(pa.store_text("evil")).sha1
    inner = {"files": {"x": {"size": 4, "sha1": sha1}}, "dirs": {}}
    uri = manifest_uri({"files": {"clash": {"size": 4, "sha1": sha1}}, "dirs": {"clash": inner}})
    with pytest.raises(pa.InvalidManifestError, match="'clash' is both a file and a directory"):
        pa.load_dir(uri, tmp_path / "copy")
    deeper = manifest_uri({"files": {}, "dirs": {"d": {"files": {"c": {"size": 4, "sha1": sha1}},
                                                       "dirs": {"c": inner}}}})
    with pytest.raises(pa.InvalidManifestError, match="'d/c' is both a file and a directory"):
        pa.load_dir(deeper, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


@pytest.mark.parametrize("size", [3, 5, 10**12])
def test_a_declared_size_that_is_not_the_objects_is_refused(tmp_path, capsys, size):
    sha1 = pa.parse_uri(pa.store_text("evil")).sha1
    good = pa.parse_uri(pa.store_text("good")).sha1
    uri = manifest_uri({"files": {"a": {"size": 4, "sha1": good}},
                        "dirs": {"sub": {"files": {"lie.txt": {"size": size, "sha1": sha1}}, "dirs": {}}}})
    with pytest.raises(pa.InvalidManifestError, match=rf"'sub/lie.txt' is declared {size} bytes.* has 4"):
        pa.load_dir(uri, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()
    assert main(["load", uri, "--dest", str(tmp_path / "copy")]) != 0
    assert "sub/lie.txt" in capsys.readouterr().err


@pytest.mark.parametrize("entry", [{"sha1": "../../etc/passwd", "size": 4}, {"sha1": None, "size": 4}, {"size": 4},
                                   {"sha1": "OK"}, {"sha1": "OK", "size": -1}, {"sha1": "OK", "size": "4"},
                                   {"sha1": "OK", "size": True}, "not an object"])
def test_a_file_entry_without_a_valid_sha1_and_size_is_refused(tmp_path, entry):
    sha1 = pa.parse_uri(pa.store_text("evil")).sha1
    if isinstance(entry, dict) and entry.get("sha1") == "OK":
        entry = {**entry, "sha1": sha1}
    uri = manifest_uri({"files": {"f": entry}, "dirs": {}})
    with pytest.raises(pa.InvalidManifestError, match="'f' has no valid SHA-1 and size"):
        pa.load_dir(uri, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


@pytest.mark.parametrize("where", ["files", "dirs"])
@pytest.mark.parametrize("name", ["..", "/etc/passwd", "a\0b", "a/b", "a\\b", "."])
def test_hostile_names_are_refused_in_files_and_directories(tmp_path, where, name):
    sha1 = pa.parse_uri(pa.store_text("evil")).sha1
    entry = {"size": 4, "sha1": sha1} if where == "files" else {"files": {"f": {"size": 4, "sha1": sha1}}, "dirs": {}}
    uri = manifest_uri({"files": {}, "dirs": {"ok": {"files": {}, "dirs": {}, where: {name: entry}}}})
    with pytest.raises(pa.InvalidManifestError, match="not a plain file name"):
        pa.load_dir(uri, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["pairio-home"]  # nothing written, the store aside


def nested(depth: int) -> Path:
    """A relative path ``d/d/.../d`` of ``depth`` directories."""
    return Path(*(["d"] * depth))


def test_a_directory_nested_up_to_the_limit_is_stored_and_loaded(tmp_path):
    from pairio.content.directories import MAX_DEPTH

    (tmp_path / "source" / nested(MAX_DEPTH)).mkdir(parents=True)
    (tmp_path / "source" / nested(MAX_DEPTH) / "leaf.txt").write_text("leaf")
    uri = pa.store_dir(tmp_path / "source")
    pa.load_dir(uri, tmp_path / "copy")
    assert (tmp_path / "copy" / nested(MAX_DEPTH) / "leaf.txt").read_text() == "leaf"


def test_a_directory_nested_deeper_than_the_limit_is_refused_when_stored(tmp_path, capsys):
    from pairio.content.directories import MAX_DEPTH

    (tmp_path / "source" / nested(MAX_DEPTH + 1)).mkdir(parents=True)
    with pytest.raises(pa.InvalidPathError, match=f"more than {MAX_DEPTH} levels deep"):
        pa.store_dir(tmp_path / "source")
    assert main(["store", str(tmp_path / "source")]) != 0
    assert f"more than {MAX_DEPTH} levels deep" in capsys.readouterr().err


@pytest.mark.parametrize("depth", [101, 5_000, 200_000])
def test_a_hostile_manifest_nested_too_deep_is_refused_when_loaded(tmp_path, capsys, depth):
    from pairio.content.directories import MAX_DEPTH

    assert depth > MAX_DEPTH
    # Written as text: json.dumps itself cannot nest this deep.
    text = '{"dirs":{"d":' * depth + '{"dirs":{},"files":{}}' + '},"files":{}}' * depth
    uri = manifest_uri(text)
    for call in (lambda: pa.load_dir(uri, tmp_path / "copy"), lambda: pa.read_dir(uri)):
        with pytest.raises(pa.InvalidManifestError, match=f"more than {MAX_DEPTH} levels deep"):
            call()
    assert main(["load", uri, "--dest", str(tmp_path / "copy")]) != 0
    assert f"more than {MAX_DEPTH} levels deep" in capsys.readouterr().err
    assert main(["info", uri]) != 0
    assert not (tmp_path / "copy").exists()
