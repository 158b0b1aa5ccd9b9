"""pairio store / load / cat / info / fsck / gc from the command line."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

import pairio as pa
from pairio.cli import main
from pairio.content.progress import ProgressBar, progress_bar


def test_store_prints_one_uri_per_file_and_one_per_directory(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("Hello, pairio.\n")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "b.txt").write_text("b")
    assert main(["store", str(tmp_path / "a.txt"), str(tmp_path / "tree")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "sha1://a09fd13fd92800aeafe475e9113efe216788d934/a.txt"
    assert lines[1].startswith("sha1dir://") and lines[1].endswith(".tree")


def test_store_of_a_missing_file_fails_naming_it(tmp_path, capsys):
    assert main(["store", str(tmp_path / "missing.dat")]) == 3  # a local path missing
    assert "missing.dat" in capsys.readouterr().err


def test_load_prints_the_local_path_or_copies_to_dest(tmp_path, capsys):
    uri = pa.store_text("content")
    assert main(["load", uri]) == 0
    assert open(capsys.readouterr().out.strip()).read() == "content"
    dest = tmp_path / "out.txt"
    assert main(["load", uri, "--dest", str(dest)]) == 0
    assert dest.read_text() == "content"


def test_load_of_missing_content_exits_1(capsys):
    assert main(["load", f"sha1://{'0' * 40}"]) == 1
    assert "not in the content store" in capsys.readouterr().err


def test_load_to_a_dest_under_a_file_exits_3_naming_it(tmp_path, capsys):
    uri = pa.store_text("content")
    (tmp_path / "plain.txt").write_text("in the way")
    assert main(["load", uri, "--dest", str(tmp_path / "plain.txt" / "out.txt")]) == 3  # a path unusable
    assert "plain.txt" in capsys.readouterr().err


def test_load_to_dest_shows_a_progress_bar_for_big_files(tmp_path, monkeypatch, capsys):
    uri = pa.store_bytes(b"x" * 1000)
    drawn = []

    class Bar:
        def __call__(self, done):
            drawn.append(done)

        def close(self):
            drawn.append("closed")

    def bar(total, label):
        drawn.append(total)
        return Bar()

    monkeypatch.setattr("pairio.cli.content.progress_bar", bar)
    assert main(["load", uri, "--dest", str(tmp_path / "out.dat")]) == 0
    assert drawn == [1000, 1000, "closed"]  # the size, then the bytes copied


def test_malformed_uri_exits_2_with_a_message(capsys):
    assert main(["cat", "sha1://xyz"]) == 2
    assert "sha1://xyz" in capsys.readouterr().err


def test_cat_writes_bytes_and_ranges_to_stdout(capfdbinary):
    uri = pa.store_bytes(b"0123456789")
    assert main(["cat", uri]) == 0
    assert capfdbinary.readouterr().out == b"0123456789"
    assert main(["cat", uri, "--start", "3", "--end", "6"]) == 0
    assert capfdbinary.readouterr().out == b"345"


def test_cat_of_missing_content_exits_1_like_load_and_info(tmp_path, capsys):
    assert main(["cat", f"sha1://{'0' * 40}"]) == 1
    assert "not in the content store" in capsys.readouterr().err
    (tmp_path / "d").mkdir()
    uri = pa.store_dir(tmp_path / "d")
    assert main(["cat", uri + "/missing.txt"]) == 1
    assert "missing.txt" in capsys.readouterr().err


def _cat_process(uri: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PAIRIO_DB_PATH": str(pa.get_config().database_dir)}
    return subprocess.Popen([sys.executable, "-m", "pairio", "cat", uri], env=env, stderr=subprocess.PIPE,
                            **kwargs)


def test_cat_into_a_pipe_closed_early_stops_without_a_traceback():
    uri = pa.store_bytes(b"x" * (4 << 20))  # far more than a pipe holds
    cat = _cat_process(uri, stdout=subprocess.PIPE)
    assert cat.stdout.read(10) == b"x" * 10
    cat.stdout.close()  # as `pairio cat URI | head -c 10` does
    err = cat.stderr.read()
    assert cat.wait() == 141
    assert b"Traceback" not in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_cat_to_a_full_disk_exits_1_with_a_message():
    uri = pa.store_bytes(b"x" * (1 << 20))
    with open("/dev/full", "wb") as full:
        cat = _cat_process(uri, stdout=full)
        err = cat.communicate()[1].decode()
    assert cat.returncode == 1
    assert "cannot write to stdout" in err and "Traceback" not in err


def test_info_of_a_directory_and_of_a_subdirectory(tmp_path, capsys):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "f.txt").write_text("f")
    uri = pa.store_dir(tmp_path / "d")
    assert main(["info", uri]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["type"], info["dirs"], info["sha1"]) == ("directory", 1, pa.parse_uri(uri).sha1)
    assert main(["info", uri + "/sub"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["type"], info["files"], info["dirs"]) == ("directory", 1, 0)
    assert main(["info", uri + "/sub/f.txt"]) == 0
    assert json.loads(capsys.readouterr().out)["size"] == 1
    assert main(["info", uri + "/nope"]) == 1


def test_info_prints_size_and_local_path(capsys):
    uri = pa.store_bytes(b"12345", name="five.bin")
    assert main(["info", uri]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["size"] == 5 and info["sha1"] == pa.parse_uri(uri).sha1
    assert os.path.exists(info["local_path"])
    assert main(["info", f"sha1://{'0' * 40}"]) == 1


def test_fsck_exits_7_and_lists_corrupt_objects(capsys):
    assert main(["fsck"]) == 0
    sha1 = pa.parse_uri(pa.store_bytes(b"will rot")).sha1
    path = pa.content_store(pa.get_config()).path(sha1)
    os.chmod(path, 0o644)
    path.write_bytes(b"has rotted")
    capsys.readouterr()
    assert main(["fsck"]) == 7  # corrupt content
    out = capsys.readouterr().out
    assert f"corrupt: {sha1}" in out and "1 corrupt" in out


def test_gc_without_a_selection_collects_everything(capsys):
    assert main(["gc", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for what in ("unreferenced object", "pair(s) whose content is gone", "temporary file", "idle lock"):
        assert what in out


def test_progress_bar_only_for_big_files_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert progress_bar(10 << 30, "x", io.StringIO()) is None  # not a terminal
    assert progress_bar(1 << 20, "x", Tty()) is None  # too small to bother
    stream = Tty()
    bar = progress_bar(200 << 20, "storing big.dat", stream)
    assert isinstance(bar, ProgressBar)
    bar(200 << 20)
    bar.close()
    assert "storing big.dat" in stream.getvalue() and "100.0%" in stream.getvalue()
