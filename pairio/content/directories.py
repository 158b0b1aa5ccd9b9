"""Directories as content: a manifest of names, sizes and file hashes, itself stored.

A manifest is ``{"files": {name: {"size": n, "sha1": h}}, "dirs": {name: manifest}}``;
its canonical JSON (sorted keys, no spaces) is stored like any other content, and
its SHA-1 is the directory's hash: two directories with the same names and
contents have the same hash wherever they are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ContentNotFoundError, CorruptContentError, InvalidManifestError, InvalidPathError
from ..hashing import canonical_json, is_sha1_hex
from .store import ContentStore

Manifest = dict[str, Any]

# Directories nested deeper than this are refused, when stored and when a manifest is read:
# deep enough for any real tree, shallow enough that walking one never exhausts the stack.
MAX_DEPTH = 100


def put_dir(store: ContentStore, path: str | os.PathLike[str], link: bool = False) -> tuple[str, Manifest]:
    """Store every file under ``path`` and then its manifest; returns (manifest SHA-1, manifest)."""
    if os.fspath(path) == "":  # Path("") is the current directory: storing it was not meant
        raise InvalidPathError("directory to store: path is empty")
    root = Path(path)
    if not root.exists():
        raise InvalidPathError(f"directory to store {os.fspath(path)!r} does not exist")
    if not root.is_dir():
        raise InvalidPathError(f"directory to store {os.fspath(path)!r} is a file, not a directory")
    manifest = _walk(store, root, link, set(), 0)
    return store.put_bytes(canonical_json(manifest).encode("utf-8")), manifest


def _walk(store: ContentStore, directory: Path, link: bool, ancestors: set[tuple[int, int]],
          depth: int) -> Manifest:
    if depth > MAX_DEPTH:
        raise InvalidPathError(f"directory {str(directory)!r} is nested more than {MAX_DEPTH} levels deep "
                               f"in the directory to store (the limit, pairio.content.directories.MAX_DEPTH)")
    st = directory.stat()
    identity = (st.st_dev, st.st_ino)
    if identity in ancestors:
        raise InvalidPathError(f"directory {str(directory)!r} contains a symbolic link to itself or a parent")
    manifest: Manifest = {"files": {}, "dirs": {}}
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:
        raise InvalidPathError(f"directory {str(directory)!r} cannot be listed: {exc.strerror}") from None
    for entry in entries:
        if entry.is_dir():
            manifest["dirs"][entry.name] = _walk(store, Path(entry.path), link, ancestors | {identity}, depth + 1)
        elif entry.is_file():
            sha1 = store.put_file(entry.path, link=link)
            manifest["files"][entry.name] = {"size": store.size(sha1), "sha1": sha1}
        else:
            raise InvalidPathError(f"{entry.path!r} in a directory to store is neither a file nor a "
                                   "directory (a broken link, socket or device?)")
    return manifest


def read_manifest(store: ContentStore, sha1: str, uri: str, verify: bool = False) -> Manifest:
    """The manifest stored as ``sha1`` for the ``sha1dir://`` URI ``uri``.

    ContentNotFoundError if it is not stored; InvalidURIError if the object is not a
    manifest (the URI names some other content as a directory).
    """
    try:
        f = store.open(sha1, verify=verify)
    except ContentNotFoundError:
        raise ContentNotFoundError(f"directory {uri!r} is not in the content store "
                                   f"{str(store.directory)!r}") from None
    except CorruptContentError as exc:
        raise CorruptContentError(f"directory {uri!r}: {exc}") from None
    with f:
        try:
            manifest = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError):
            manifest = None
        except RecursionError:  # nested far deeper than MAX_DEPTH: refused below as such
            raise InvalidManifestError(f"directory {uri!r}: its manifest {sha1} is nested more than "
                                       f"{MAX_DEPTH} levels deep (the limit)") from None
    if not _is_manifest(manifest):
        raise InvalidManifestError(f"{uri!r} is not a directory: object {sha1} is not a directory manifest")
    check_manifest(manifest, uri)
    return manifest


def _is_manifest(node: object) -> bool:
    return isinstance(node, dict) and isinstance(node.get("files"), dict) and isinstance(node.get("dirs"), dict)


def check_manifest(manifest: Manifest, uri: str) -> None:
    """Refuse (InvalidManifestError naming the entry) a manifest that could not have been stored:
    a name that is not a plain file name, one that is both a file and a directory, a file entry
    without a SHA-1 and a size, a subdirectory that is no manifest, nesting deeper than MAX_DEPTH.

    Walked without recursion, so a hostile manifest cannot exhaust the stack.
    """
    pending: list[tuple[tuple[str, ...], Any]] = [((), manifest)]
    while pending:
        prefix, node = pending.pop()
        if not _is_manifest(node):
            raise InvalidManifestError(f"directory {uri!r}: entry {'/'.join(prefix)!r} is not a directory manifest")
        if len(prefix) > MAX_DEPTH:
            raise InvalidManifestError(f"directory {uri!r} is nested more than {MAX_DEPTH} levels deep "
                                       f"(the limit), at {'/'.join(prefix[:3])}/...")
        for name, entry in node["files"].items():
            path = "/".join((*prefix, _check_name(name, uri)))
            if name in node["dirs"]:
                raise InvalidManifestError(f"directory {uri!r}: entry {path!r} is both a file and a directory")
            size = entry.get("size") if isinstance(entry, dict) else None
            if not (isinstance(entry, dict) and isinstance(entry.get("sha1"), str) and is_sha1_hex(entry["sha1"])
                    and isinstance(size, int) and not isinstance(size, bool) and size >= 0):
                raise InvalidManifestError(f"directory {uri!r}: file {path!r} has no valid SHA-1 and size "
                                           f"({str(entry)[:100]})")
        for name, sub in node["dirs"].items():
            pending.append(((*prefix, _check_name(name, uri)), sub))


def lookup(manifest: Manifest, parts: tuple[str, ...], uri: str) -> tuple[str, Any]:
    """Follow ``parts`` inside ``manifest``: ("dir", sub-manifest) or ("file", {"size", "sha1"})."""
    node: Any = manifest
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part in node["dirs"]:
            node = node["dirs"][part]
        elif last and part in node["files"]:
            return "file", node["files"][part]
        else:
            raise ContentNotFoundError(f"{'/'.join(parts[: i + 1])!r} is not in the directory {uri!r}")
    return "dir", node


def _check_name(name: object, uri: str) -> str:
    # A manifest comes from the store, perhaps from someone else: a name must not climb out of the tree.
    if (not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name
            or (os.altsep is not None and os.altsep in name)):
        raise InvalidManifestError(f"directory {uri!r} holds an entry named {name!r}, which is not a plain file name")
    return name


def walk_files(manifest: Manifest, uri: str, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """``(relative path parts, {"size", "sha1"})`` for every file in ``manifest``, subdirectories too."""
    for name, entry in sorted(manifest["files"].items()):
        yield (*prefix, _check_name(name, uri)), entry
    for name, sub in sorted(manifest["dirs"].items()):
        yield from walk_files(sub, uri, (*prefix, _check_name(name, uri)))


def walk_dirs(manifest: Manifest, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The relative path parts of every subdirectory in ``manifest`` (empty ones too), parents first."""
    for name, sub in sorted(manifest["dirs"].items()):
        yield (*prefix, name)
        yield from walk_dirs(sub, (*prefix, name))


def totals(manifest: Manifest) -> tuple[int, int, int]:
    """(files, subdirectories, bytes) in ``manifest``, counting every level."""
    files, dirs, size = len(manifest["files"]), len(manifest["dirs"]), 0
    size = sum(int(entry.get("size", 0)) for entry in manifest["files"].values())
    for sub in manifest["dirs"].values():
        f, d, n = totals(sub)
        files, dirs, size = files + f, dirs + d, size + n
    return files, dirs, size
