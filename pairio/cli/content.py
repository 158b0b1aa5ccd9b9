"""``pairio store``, ``load``, ``cat``, ``info``, ``fsck``: the content store from the shell (``gc`` is in :mod:`.lifecycle`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ..config import get_config
from ..errors import ContentNotFoundError, PairioError
from . import CORRUPT, NOT_FOUND, OTHER, USAGE

if TYPE_CHECKING:
    from ..content import ContentURI
    from ..content.progress import ProgressBar


def progress_bar(total: int, label: str) -> ProgressBar | None:
    """The content layer's progress bar (imported when a command draws one: the commands' imports are
    in their handlers, so that ``pairio --help`` loads no store)."""
    from ..content.progress import progress_bar

    return progress_bar(total, label)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("store", help="store files or directories; print their URIs", description=(
        "Store each FILE (or directory) in the content store and print its sha1:// (or sha1dir://) URI."))
    p.add_argument("paths", metavar="FILE", nargs="+")
    p.add_argument("--link", action="store_true",
                   help="hard link instead of copying where possible (never modify the file afterwards)")
    p.set_defaults(handler=_store)

    p = subparsers.add_parser("load", help="print the local path of a URI, or copy it to --dest", description=(
        "Print the local path of URI's content; exit code 1 if not stored. A sha1dir:// URI "
        "naming a directory needs --dest: the tree is recreated there."))
    p.add_argument("uri", metavar="URI")
    p.add_argument("--dest", metavar="PATH", help=(
        "copy the content to PATH (atomically) and print PATH; for a directory, recreate the tree at PATH"))
    p.add_argument("--link", action="store_true", help="with --dest: hard link where possible")
    p.add_argument("--verify", action="store_true", help="re-hash the content before using it")
    p.set_defaults(handler=_load)

    p = subparsers.add_parser("push", help="upload content to the server", description=(
        "Upload what the server lacks of each URI's content (a sha1dir:// directory whole: "
        "its files, then its manifest). One request asks what is missing; then one upload "
        "per object, streamed from the local content store. Prints each URI and the number "
        "of objects uploaded."))
    p.add_argument("uris", metavar="URI", nargs="+")
    p.set_defaults(handler=_push)

    p = subparsers.add_parser("pull", help="download content from the server", description=(
        "Download what the local content store lacks of each URI's content (a sha1dir:// "
        "directory whole), verified while it streams; an interrupted download continues "
        "where it stopped next time. Prints each URI and the number of objects downloaded."))
    p.add_argument("uris", metavar="URI", nargs="+")
    p.set_defaults(handler=_pull)

    p = subparsers.add_parser("cat", help="write a URI's bytes to stdout",
                              description=("Write URI's bytes (or bytes START..END) to stdout; "
                                           "exit code 1 if not stored."))
    p.add_argument("uri", metavar="URI")
    p.add_argument("--start", type=int, default=0, metavar="N",
                   help="first byte (default 0; past the end is an error)")
    p.add_argument("--end", type=int, default=None, metavar="N",
                   help="byte after the last (default: the end; not before --start)")
    p.add_argument("--verify", action="store_true", help="re-hash the content first")
    p.set_defaults(handler=_cat)

    p = subparsers.add_parser("info", help="print a URI's hash, size and local path as JSON", description=(
        "Print URI's hash, size and local path as JSON; exit code 1 if absent. For a directory: "
        "its files, subdirectories and bytes, counted at every level."))
    p.add_argument("uri", metavar="URI")
    p.set_defaults(handler=_info)

    p = subparsers.add_parser("fsck", help="check the databases; re-hash every stored object", description=(
        "Check the store's SQLite databases (PRAGMA quick_check; the records against the pairs; a "
        "database empty or missing while the content holds objects), then re-hash every object in "
        "the content store. Corrupt objects are moved to the quarantine directory and listed. Exit "
        "code 7 if anything is damaged (each damaged database is named, with what is wrong). "
        "With --repair, each damaged database is salvaged: its readable pairs, records and small "
        "objects go into a new database put in its place, and the damaged one is kept aside "
        "(renamed NAME.damaged-TIME, its path printed). Run --repair while nothing else uses the store."))
    p.add_argument("--repair", action="store_true",
                   help="salvage damaged databases into new ones, keeping the damaged ones aside")
    p.set_defaults(handler=_fsck)


def _store(args: argparse.Namespace) -> int:
    from ..content import content_store, file_uri, functions
    from ..content.hash_cache import stat_regular_file

    cfg = get_config()
    store = content_store(cfg)
    remote = functions.uploader(cfg)  # set_to with the server: what it lacks is uploaded too
    stored = []
    for path in args.paths:
        if os.path.isdir(path):
            uri = functions.store_dir(path, link=args.link)
            stored.append({"path": path, "uri": uri})
            if not args.json:
                print(uri, flush=True)
            continue
        _, st = stat_regular_file(path, "file to store")
        bar = progress_bar(st.st_size, f"storing {Path(path).name}")
        try:
            sha1 = store.put_file(path, link=args.link, progress=bar)
        finally:
            if bar is not None:
                bar.close()
        stored.append({"path": path, "uri": functions.shared(remote, cfg, file_uri(sha1, Path(path).name))})
        if not args.json:
            print(stored[-1]["uri"], flush=True)
    if args.json:
        print(json.dumps(stored, indent=2))
    return 0


def _load(args: argparse.Namespace) -> int:
    from ..content import directories, functions, parse_uri

    parsed = parse_uri(args.uri)
    if parsed.is_dir and _names_directory(parsed, args.uri):
        if args.dest is None:
            print(f"pairio: error: {args.uri!r} is a directory: give --dest DIR to recreate it there",
                  file=sys.stderr)
            return USAGE
        manifest = functions.read_dir(args.uri, verify=args.verify)
        _, _, size = directories.totals(manifest)
        bar = progress_bar(size, f"copying to {args.dest}")
        try:
            path = functions.load_dir(args.uri, args.dest, link=args.link, verify=args.verify, progress=bar)
        finally:
            if bar is not None:
                bar.close()
        _print_loaded(args, path)
        return 0
    path = functions.load_file(args.uri, verify=args.verify)
    if path is None:
        print(f"pairio: {args.uri!r} is not in the content store", file=sys.stderr)
        return NOT_FOUND
    if args.dest is not None:
        bar = progress_bar(os.path.getsize(path), f"copying to {args.dest}")
        try:
            path = functions.copy_to(Path(path), args.uri, args.dest, link=args.link, progress=bar)
        finally:
            if bar is not None:
                bar.close()
    _print_loaded(args, path)
    return 0


def _push(args: argparse.Namespace) -> int:
    return _transfer(args, "push", "uploaded")


def _pull(args: argparse.Namespace) -> int:
    return _transfer(args, "pull", "downloaded")


def _transfer(args: argparse.Namespace, method: str, done: str) -> int:
    from ..content import parse_uri
    from ..content.remote import remote_content  # the HTTP client only where a server is used

    for uri in args.uris:
        parse_uri(uri)  # every URI checked before anything moves
    remote = remote_content(get_config())
    report = []
    for uri in args.uris:
        moved = getattr(remote, method)(uri)
        report.append({"uri": uri, done: len(moved)})
        if not args.json:
            print(f"{uri}: {len(moved)} object(s) {done}", flush=True)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


def _print_loaded(args: argparse.Namespace, path: str) -> None:
    print(json.dumps({"uri": args.uri, "path": path}) if args.json else path)


def _names_directory(parsed: ContentURI, uri: str) -> bool:
    """Whether the sha1dir:// URI names a directory (the root or a subdirectory), not a file in one."""
    from ..content import content_store, directories, functions

    if not parsed.path:
        return True
    cfg = get_config()
    store = content_store(cfg)
    functions.fetch(cfg, store, parsed.sha1)  # get_from with the server: the manifest may be there
    manifest = directories.read_manifest(store, parsed.sha1, uri)
    return directories.lookup(manifest, parsed.path, uri)[0] == "dir"


def _cat(args: argparse.Namespace) -> int:
    from ..content import functions

    if args.json:
        print("pairio: error: cat writes the content's bytes; --json does not apply (use info)", file=sys.stderr)
        return USAGE
    if args.start < 0 or (args.end is not None and args.end < 0):
        print("pairio: error: --start and --end must not be negative", file=sys.stderr)
        return USAGE
    if args.end is not None and args.end < args.start:
        print(f"pairio: error: --end {args.end} is before --start {args.start}", file=sys.stderr)
        return USAGE
    try:
        source = functions.open_uri(args.uri, args.verify)
    except ContentNotFoundError as exc:
        print(f"pairio: {exc}", file=sys.stderr)
        return NOT_FOUND
    remaining = None if args.end is None else args.end - args.start
    with source as f:
        size = os.fstat(f.fileno()).st_size
        if args.start > size:
            print(f"pairio: error: --start {args.start} is past the end of {args.uri!r} ({size} bytes)",
                  file=sys.stderr)
            return USAGE
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
    from ..content import content_store, directories, parse_uri

    parsed = parse_uri(args.uri)
    store = content_store(get_config())
    try:
        kind, node = "file", {"sha1": parsed.sha1}
        if parsed.is_dir:
            manifest = directories.read_manifest(store, parsed.sha1, args.uri)
            kind, node = directories.lookup(manifest, parsed.path, args.uri)
        if kind == "dir":
            files, dirs, size = directories.totals(node)
            info = {"uri": str(parsed), "type": "directory", "files": files, "dirs": dirs, "size": size}
            if not parsed.path:  # a subdirectory's manifest lives inside its parent's, not as an object
                info.update(sha1=parsed.sha1, local_path=str(store.path(parsed.sha1)))
        else:
            sha1 = node["sha1"]
            info = {"uri": args.uri, "sha1": sha1, "type": "file", "size": store.size(sha1),
                    "local_path": str(store.path(sha1))}
    except ContentNotFoundError as exc:
        print(f"pairio: {exc}", file=sys.stderr)
        return NOT_FOUND
    print(json.dumps(info, indent=2))
    return 0


def _fsck(args: argparse.Namespace) -> int:
    import sqlite3

    from ..content import content_store
    from ..lifecycle import fsck

    cfg = get_config()
    damaged = fsck.check(cfg)
    repairs = fsck.repair(cfg, damaged) if args.repair and damaged else []
    unrepaired = [] if args.repair else damaged
    store = content_store(cfg)
    try:
        report = store.fsck()
    except (PairioError, sqlite3.Error) as exc:  # the small objects' database is damaged: named above
        report = None
        objects_error = str(exc)
    code = CORRUPT if unrepaired or (report is not None and report.corrupt) else (
        OTHER if report is None or report.unreadable else 0)
    if args.json:
        print(json.dumps({
            "directory": str(store.directory),
            "databases": {"damaged": [{"path": str(d.path), "kind": d.kind, "problems": d.problems} for d in damaged],
                          "repaired": [{"path": str(r.path), "kind": r.kind, "salvaged": r.salvaged,
                                        "damaged_kept_as": None if r.aside is None else str(r.aside)}
                                       for r in repairs]},
            "checked": 0 if report is None else report.checked,
            "corrupt": [] if report is None else [{"sha1": sha1, "moved_to": str(moved)}
                                                  for sha1, moved in report.corrupt],
            "unreadable": [] if report is None else [{"sha1": sha1, "reason": str(reason)}
                                                     for sha1, reason in report.unreadable]}, indent=2))
        return code
    for d in damaged:
        print(f"damaged database: {d.describe()}", file=sys.stderr if not args.repair else sys.stdout)
    for r in repairs:
        counts = ", ".join(f"{n} rows of {table}" for table, n in r.salvaged.items()) or (
            "nothing (a cache: rebuilt as it is used)" if r.kind == "cache" else "nothing readable")
        kept = f"; the damaged one is kept as {r.aside}" if r.aside is not None else ""
        print(f"repaired {r.path}: salvaged {counts} into a new database{kept}")
    if unrepaired:
        print(f"pairio: {len(unrepaired)} damaged database(s); `pairio fsck --repair` salvages what can be read "
              "into new ones and keeps the damaged ones aside", file=sys.stderr)
    if report is None:
        print(f"pairio: the content store's objects could not be checked: {objects_error}", file=sys.stderr)
        return code
    for sha1, moved in report.corrupt:
        print(f"corrupt: {sha1} (moved to {moved})")
    for sha1, reason in report.unreadable:
        print(f"unreadable: {sha1} ({reason})")
    unreadable = f", {len(report.unreadable)} unreadable" if report.unreadable else ""
    print(f"checked {report.checked} objects in {store.directory}: {len(report.corrupt)} corrupt{unreadable}")
    return code


