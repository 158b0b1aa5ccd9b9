"""``pairio store``, ``load``, ``cat``, ``info``, ``fsck``, ``gc``: the content store from the shell."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from ..config import get_config
from ..content import api, content_store, directories, file_uri, parse_uri
from ..content.hash_cache import stat_regular_file
from ..content.progress import progress_bar
from ..errors import ContentNotFoundError
from ..files import remove_stale_temp_files
from ..memo.flight import remove_idle_locks


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("store", help="store files or directories; print their URIs", description=(
        "Store each FILE (or directory) in the content store and print its sha1:// (or sha1dir://) URI."))
    p.add_argument("paths", metavar="FILE", nargs="+")
    p.add_argument("--link", action="store_true",
                   help="hard link instead of copying where possible (never modify the file afterwards)")
    p.set_defaults(handler=_store)

    p = subparsers.add_parser("load", help="print the local path of a URI, or copy it to --dest",
                              description="Print the local path of URI's content; exit code 1 if not stored.")
    p.add_argument("uri", metavar="URI")
    p.add_argument("--dest", metavar="PATH", help="copy the content to PATH (atomically) and print PATH")
    p.add_argument("--link", action="store_true", help="with --dest: hard link where possible")
    p.add_argument("--verify", action="store_true", help="re-hash the content before using it")
    p.set_defaults(handler=_load)

    p = subparsers.add_parser("cat", help="write a URI's bytes to stdout",
                              description=("Write URI's bytes (or bytes START..END) to stdout; "
                                           "exit code 1 if not stored."))
    p.add_argument("uri", metavar="URI")
    p.add_argument("--start", type=int, default=0, metavar="N", help="first byte (default 0)")
    p.add_argument("--end", type=int, default=None, metavar="N", help="byte after the last (default: end)")
    p.add_argument("--verify", action="store_true", help="re-hash the content first")
    p.set_defaults(handler=_cat)

    p = subparsers.add_parser("info", help="print a URI's hash, size and local path as JSON",
                              description="Print URI's hash, size and local path as JSON; exit code 1 if absent.")
    p.add_argument("uri", metavar="URI")
    p.set_defaults(handler=_info)

    p = subparsers.add_parser("fsck", help="re-hash every stored object; quarantine corrupt ones", description=(
        "Re-hash every object in the content store. Corrupt objects are moved to the quarantine "
        "directory and listed; exit code 1 if any was found."))
    p.set_defaults(handler=_fsck)

    p = subparsers.add_parser("gc", help="clean up the content store and the cache's lock files", description=(
        "Clean up. --temp removes temporary files left by killed writers (files of writers "
        "still running are never touched). --locks removes the lock files of cached calls "
        "that no one has claimed for an hour (one is left per key ever computed)."))
    p.add_argument("--temp", action="store_true", help="remove abandoned temporary files")
    p.add_argument("--locks", action="store_true", help="remove idle lock files of cached calls")
    p.set_defaults(handler=_gc)


def _store(args: argparse.Namespace) -> int:
    store = content_store(get_config())
    for path in args.paths:
        if os.path.isdir(path):
            print(api.store_dir(path, link=args.link), flush=True)
            continue
        _, st = stat_regular_file(path, "file to store")
        bar = progress_bar(st.st_size, f"storing {Path(path).name}")
        try:
            sha1 = store.put_file(path, link=args.link, progress=bar)
        finally:
            if bar is not None:
                bar.close()
        print(file_uri(sha1, Path(path).name), flush=True)
    return 0


def _load(args: argparse.Namespace) -> int:
    path = api.load_file(args.uri, verify=args.verify)
    if path is None:
        print(f"pairio: {args.uri!r} is not in the content store", file=sys.stderr)
        return 1
    if args.dest is not None:
        bar = progress_bar(os.path.getsize(path), f"copying to {args.dest}")
        try:
            path = api.copy_to(Path(path), args.uri, args.dest, link=args.link, progress=bar)
        finally:
            if bar is not None:
                bar.close()
    print(path)
    return 0


def _cat(args: argparse.Namespace) -> int:
    if args.start < 0 or (args.end is not None and args.end < 0):
        print("pairio: error: --start and --end must not be negative", file=sys.stderr)
        return 2
    try:
        source = api.open_uri(args.uri, args.verify)
    except ContentNotFoundError as exc:
        print(f"pairio: {exc}", file=sys.stderr)
        return 1
    remaining = None if args.end is None else max(args.end - args.start, 0)
    with source as f:
        f.seek(args.start)
        return _write_to_stdout(_chunks(f, remaining))


def _chunks(f: BinaryIO, remaining: int | None) -> Iterator[bytes]:
    while remaining is None or remaining > 0:
        chunk = f.read(1 << 20 if remaining is None else min(1 << 20, remaining))
        if not chunk:
            return
        yield chunk
        if remaining is not None:
            remaining -= len(chunk)


def _write_to_stdout(chunks: Iterable[bytes]) -> int:
    """Write ``chunks`` to stdout; the exit code. Only writing is guarded: read errors propagate."""
    out = sys.stdout.buffer
    for chunk in chunks:
        try:
            out.write(chunk)
            out.flush()
        except OSError as exc:
            # Point stdout at /dev/null so that the interpreter's last flush does not fail again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            if isinstance(exc, BrokenPipeError):
                return 141  # the reader went away (`pairio cat URI | head`): stop quietly, as cat does
            print(f"pairio: error: cannot write to stdout: {exc.strerror or exc}", file=sys.stderr)
            return 1
    return 0


def _info(args: argparse.Namespace) -> int:
    parsed = parse_uri(args.uri)
    store = content_store(get_config())
    try:
        kind, node = "file", {"sha1": parsed.sha1}
        if parsed.is_dir:
            manifest = directories.read_manifest(store, parsed.sha1, args.uri)
            kind, node = directories.lookup(manifest, parsed.path, args.uri)
        if kind == "dir":
            info = {"uri": str(parsed), "type": "directory",
                    "files": len(node["files"]), "dirs": len(node["dirs"])}
            if not parsed.path:  # a subdirectory's manifest lives inside its parent's, not as an object
                info.update(sha1=parsed.sha1, local_path=str(store.path(parsed.sha1)))
        else:
            sha1 = node["sha1"]
            info = {"uri": args.uri, "sha1": sha1, "type": "file", "size": store.size(sha1),
                    "local_path": str(store.path(sha1))}
    except ContentNotFoundError as exc:
        print(f"pairio: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(info, indent=2))
    return 0


def _fsck(args: argparse.Namespace) -> int:
    store = content_store(get_config())
    report = store.fsck()
    for sha1, moved in report.corrupt:
        print(f"corrupt: {sha1} (moved to {moved})")
    for sha1, reason in report.unreadable:
        print(f"unreadable: {sha1} ({reason})")
    unreadable = f", {len(report.unreadable)} unreadable" if report.unreadable else ""
    print(f"checked {report.checked} objects in {store.directory}: {len(report.corrupt)} corrupt{unreadable}")
    return 1 if report.corrupt or report.unreadable else 0


def _gc(args: argparse.Namespace) -> int:
    if not (args.temp or args.locks):
        print("pairio: error: say what to collect (--temp, --locks or both)", file=sys.stderr)
        return 2
    cfg = get_config()
    if args.temp:
        removed = content_store(cfg).remove_temp_files() + remove_stale_temp_files(cfg.database_dir)
        for path in removed:
            print(f"removed {path}")
        print(f"removed {len(removed)} abandoned temporary file(s)")
    if args.locks:
        locks = remove_idle_locks(cfg.database_dir)
        print(f"removed {len(locks)} idle lock file(s) from {cfg.database_dir / 'locks'}")
    return 0
