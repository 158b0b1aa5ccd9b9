"""The one atomic-write helper: all or nothing, temp files findable, stale ones removable."""

from __future__ import annotations

import os

import pytest

from pairio import files


def _temps(directory):
    return [p for p in os.listdir(directory) if p.startswith(files.TEMP_PREFIX)]


def test_write_bytes_replaces_the_file_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    files.write_bytes(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert _temps(tmp_path) == []


def test_write_text_creates_missing_parent_directories(tmp_path):
    target = tmp_path / "a" / "b" / "c.txt"
    files.write_text(target, "héllo\n")
    assert target.read_text(encoding="utf-8") == "héllo\n"


def test_exception_inside_atomic_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with files.atomic_write(target) as f:
            f.write(b"partial")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert _temps(tmp_path) == []


def test_a_file_in_place_of_the_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError) as info:
        files.write_bytes(blocker / "out.bin", b"x")
    assert "blocker" in str(info.value)


def test_temp_file_of_a_live_writer_is_never_removed(tmp_path):
    with files.AtomicFile(tmp_path) as af:
        af.file.write(b"in progress")
        assert files.remove_stale_temp_files(tmp_path) == []
        assert af.temp_path.exists()
        af.commit(tmp_path / "done")
    assert (tmp_path / "done").read_bytes() == b"in progress"


def test_unlocked_temp_file_is_removed_as_stale(tmp_path):
    stale = tmp_path / f"{files.TEMP_PREFIX}abandoned"
    stale.write_bytes(b"left by a killed writer")
    other = tmp_path / "keep.txt"
    other.write_text("not a temp file")
    assert files.remove_stale_temp_files(tmp_path) == [stale]
    assert not stale.exists() and other.exists()


def test_copy_file_copies_atomically_and_can_hard_link(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(100_000))
    assert files.copy_file(src, tmp_path / "copy.bin") is False
    assert (tmp_path / "copy.bin").read_bytes() == src.read_bytes()
    assert files.copy_file(src, tmp_path / "link.bin", link=True) is True
    assert os.path.samefile(src, tmp_path / "link.bin")
    assert _temps(tmp_path) == []
