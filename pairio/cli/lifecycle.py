"""``pairio ls``, ``show``, ``forget``, ``why``, ``diff`` and ``gc``: what the cache holds, where each
result came from, and keeping it clean."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import TYPE_CHECKING

from ..config import get_config
from ..errors import ConfigurationError
from ..lifecycle import SORTS
from ..units import format_age, format_size, parse_age, parse_size

if TYPE_CHECKING:
    from ..lifecycle import records


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ls", help="list cached results, newest first, with totals", description=(
        "List the cached results recorded in the local store, newest first: key, function, size, "
        "seconds to compute, hits, age, last use, arguments; totals at the end."))
    p.add_argument("function", metavar="FUNCTION", nargs="?",
                   help="a function's qualified name, its dotted tail (smooth) or a glob (steps.*)")
    p.add_argument("--older-than", metavar="AGE", help="created more than AGE ago (30d, 12h, 90m)")
    p.add_argument("--newer-than", metavar="AGE", help="created less than AGE ago")
    p.add_argument("--larger-than", metavar="SIZE", help="at least SIZE (1GB, 500kB)")
    p.add_argument("--smaller-than", metavar="SIZE", help="at most SIZE")
    p.add_argument("--collection", metavar="C", help="only this collection")
    p.add_argument("--limit", type=int, metavar="N", help="at most N entries")
    p.add_argument("--sort", choices=SORTS, default="created",
                   help="most first by: created (newest, the default), size, seconds (to compute) or hits")
    p.add_argument("--server", action="store_true",
                   help="list the records the configured server keeps (of the collections the channel may read)")
    p.set_defaults(handler=_ls)

    p = subparsers.add_parser("show", help="print the record of one cached result", description=(
        "Print the record of the cached result named by KEY (6+ hex digits) or by its sha1:// URI."))
    p.add_argument("name", metavar="KEY|URI")
    p.set_defaults(handler=_show)

    p = subparsers.add_parser("forget", help="remove a function's cached results", description=(
        "Remove the cached results of FUNCTION (their pairs and records); `pairio gc` then frees "
        "content nothing else refers to."))
    p.add_argument("function", metavar="FUNCTION")
    p.add_argument("--older-than", metavar="AGE", help="only those created more than AGE ago (30d)")
    p.add_argument("--collection", metavar="C", help="only this collection")
    p.set_defaults(handler=_forget)

    p = subparsers.add_parser("why", help="where a cached result came from, back to its raw inputs",
                              description="Print the lineage of the result named by KEY or sha1:// URI.")
    p.add_argument("name", metavar="KEY|URI")
    p.set_defaults(handler=_why)

    p = subparsers.add_parser("diff", help="what differs between two cached results' keys", description=(
        "Compare the keys of two recorded entries part by part: code, helpers, constants, "
        "version, dependency versions and each argument."))
    p.add_argument("first", metavar="KEY1")
    p.add_argument("second", metavar="KEY2")
    p.set_defaults(handler=_diff)

    p = subparsers.add_parser("gc", help="remove unreferenced content, orphaned pairs, temp files, idle locks",
                              description=(
        "Clean up the local store (or, with --database/--content-dir, a server's directory). "
        "Without a selection, everything: content no pair or record refers to and older than the "
        "grace period; pairs of cached results whose content is gone; temporary files of killed "
        "writers; lock files of cached calls no one claimed for an hour. --dry-run says what "
        "would go and how many bytes."))
    p.add_argument("--content", action="store_true", help="remove unreferenced content")
    p.add_argument("--pairs", action="store_true", help="remove pairs of cached results whose content is gone")
    p.add_argument("--temp", action="store_true", help="remove abandoned temporary files")
    p.add_argument("--locks", action="store_true", help="remove idle lock files of cached calls")
    p.add_argument("--grace", metavar="AGE", default="1d",
                   help="keep unreferenced content younger than AGE (default 1d)")
    p.add_argument("--dry-run", action="store_true", help="remove nothing; say what would be removed")
    p.add_argument("--max-size", metavar="SIZE", help=(
        "then remove the objects read longest ago (by the server's access log, else their age) "
        "until the content directory holds at most SIZE: for a server's directory"))
    p.add_argument("--database", metavar="DIR", help="the database directory (default: the config's)")
    p.add_argument("--content-dir", metavar="DIR", help="the content directory (default: DIR/content)")
    p.set_defaults(handler=_gc)

    p = subparsers.add_parser("evict", help="bring the local store within a size now", description=(
        "Evict cached results, least valuable first (seconds saved per byte, aged by last use), "
        "until the results take at most 90%% of SIZE (default: max_size / PAIRIO_MAX_SIZE)."))
    p.add_argument("size", metavar="SIZE", nargs="?", help="the limit (50GB); default the config's max_size")
    p.set_defaults(handler=_evict)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _ls(args: argparse.Namespace) -> int:
    from ..lifecycle import queries, records

    if args.limit is not None and args.limit < 1:
        raise ConfigurationError(f"--limit must be at least 1, got {args.limit}")
    if args.server:
        return _ls_server(args)
    found = queries.entries(args.function, collection=args.collection, older_than=args.older_than,
                        newer_than=args.newer_than, min_size=args.larger_than, max_size=args.smaller_than,
                        limit=args.limit, sort=args.sort)
    totals = records.totals(found)
    _say_if_unrecorded("nothing to list")
    if args.json:
        print(json.dumps({"entries": [e.as_dict() for e in found], "totals": vars(totals)}, indent=2))
        return 0
    now = time.time()
    if found:
        width = max(len("function"), *(len(e.function) for e in found))
        print(f"{'key':<12}  {'function':<{width}}  {'size':>9}  {'compute':>8}  {'hits':>5}  "
              f"{'age':>4}  {'used':>4}  arguments")
        for e in found:
            arguments = ", ".join(f"{k}={v}" for k, v in e.summary.items())
            print(f"{e.key[:12]}  {e.function:<{width}}  {format_size(e.size):>9}  {e.seconds:>7.2f}s  "
                  f"{e.hits:>5}  {format_age(now - e.created):>4}  {format_age(now - e.last_used):>4}  {arguments}")
    print(f"{totals.count} entr{'y' if totals.count == 1 else 'ies'}, {format_size(totals.size)}, "
          f"{totals.seconds:.2f}s to compute, {totals.hits} hits")
    return 0


def _ls_server(args: argparse.Namespace) -> int:
    """``pairio ls --server``: the records the server keeps, as it sorts them."""
    from ..kv import remote_store

    unsupported = [flag for flag, value in (("--older-than", args.older_than), ("--newer-than", args.newer_than),
                                            ("--larger-than", args.larger_than), ("--smaller-than", args.smaller_than))
                   if value is not None]
    if unsupported:
        raise ConfigurationError(f"{', '.join(unsupported)}: not taken with --server (give --sort, --limit, "
                                 "--collection or FUNCTION)")
    cfg = get_config()
    collection = getattr(args, "collection", None)
    found = remote_store(cfg).records(collection=collection, function=args.function,  # type: ignore[attr-defined]
                                      sort=args.sort, limit=min(args.limit or 100, 1000))
    totals = {"count": len(found), "size": sum(r["size"] for r in found),
              "seconds": sum(r["seconds"] for r in found), "hits": sum(r["hits"] for r in found)}
    if args.json:
        print(json.dumps({"entries": found, "totals": totals}, indent=2))
        return 0
    now = time.time()
    if found:
        width = max(len("function"), *(len(r["function"]) for r in found))
        print(f"{'key':<12}  {'collection':<12}  {'function':<{width}}  {'size':>9}  {'compute':>8}  {'hits':>5}  "
              f"{'age':>4}  {'host':<12}  arguments")
        for r in found:
            arguments = ", ".join(f"{k}={v}" for k, v in r["arguments"].items())
            print(f"{r['key'][:12]}  {r['collection'][:12]:<12}  {r['function']:<{width}}  {format_size(r['size']):>9}  "
                  f"{r['seconds']:>7.2f}s  {r['hits']:>5}  {format_age(now - r['created']):>4}  "
                  f"{r['host'][:12]:<12}  {arguments}")
    n = totals["count"]
    print(f"{n} entr{'y' if n == 1 else 'ies'} on the server, {format_size(totals['size'])}, "
          f"{totals['seconds']:.2f}s to compute, {totals['hits']} hits")
    return 0


def _say_if_unrecorded(consequence: str) -> None:
    """Tell, on stderr, that the local store keeps no records (the directory store), and so ``consequence``."""
    from ..kv import local_store
    from ..lifecycle import records

    store = local_store(get_config())
    if not records.keeps_records(store):
        count = sum(store.count(c) for c in store.collections())
        print(f"pairio: {store!r} keeps no records of cached results (the directory store, for a directory "
              f"shared by hosts): {consequence}; it holds {count} pair(s)", file=sys.stderr)


def _print_entry(e: records.Entry) -> None:
    print(f"key        {e.key}  (collection {e.collection})")
    print(f"function   {e.function}")
    print(f"result     {e.uri}" + (f"  (+{len(e.objects)} files)" if e.objects else ""))
    print(f"size       {format_size(e.size)} ({e.size} bytes)")
    print(f"computed   in {e.seconds:.3f}s on {e.host}, {_when(e.created)}")
    print(f"used       {e.hits} hits, last {_when(e.last_used)}")
    print(f"code       {e.code.get('digest', '')}" + (f"  version {e.version!r}" if e.version else ""))
    for part in ("helpers", "constants", "closure"):
        for name, digest in e.code.get(part, {}).items():
            print(f"  {part[:-1] if part != 'closure' else 'closure'} {name} {digest[:12]}")
    for name, version in sorted(e.dependencies.items()):
        print(f"  depends on {name} {version}")
    print("arguments")
    for name, digest in e.arguments.items():
        print(f"  {name} = {e.summary.get(name, '')}  ({digest[:12]})")
    for link in e.inputs:
        print(f"  input {link['argument']} <- {link.get('key') or link.get('uri')}")


def _show(args: argparse.Namespace) -> int:
    from ..kv import local_store
    from ..lifecycle import queries
    from .trust import writer_of

    try:
        entry = queries.show(args.name)
    except LookupError as exc:
        # A pair with no record here (a hit from a server): its value and who wrote it.
        cfg = get_config()
        value = local_store(cfg).get(cfg.collection, args.name.lower()) if len(args.name) == 40 else None
        if value is None:
            print(f"pairio: {exc}")
            return 1
        writer = writer_of(cfg, cfg.collection, args.name.lower(), value)
        if args.json:
            print(json.dumps({"collection": cfg.collection, "key": args.name.lower(), "value": value,
                              "written_by": writer}, indent=2))
        else:
            print(f"key        {args.name.lower()}  (collection {cfg.collection}; no record here)")
            print(f"value      {value}")
            _print_writer(writer)
        return 0
    writer = writer_of(get_config(), entry.collection, entry.key, entry.sha1)
    if args.json:
        print(json.dumps({**entry.as_dict(), "written_by": writer}, indent=2))
    else:
        _print_entry(entry)
        _print_writer(writer)
    return 0


def _print_writer(writer: dict) -> None:
    trusted = "trusted here" if writer["trusted"] else "not trusted here: its pickles load as data only"
    key = f" {writer['public_key']}" if writer["public_key"] else ""
    print(f"written by {writer['writer']}{key} ({trusted})")


def _forget(args: argparse.Namespace) -> int:
    from ..lifecycle import queries

    removed = queries.forget(args.function, older_than=args.older_than, collection=args.collection)
    if not removed:
        _say_if_unrecorded("its entries cannot be found by function (a cached function's .forget(...) "
                           "removes one call's result)")
    size = sum(e.size for e in removed)
    if args.json:
        print(json.dumps({"forgot": [e.key for e in removed], "bytes": size}, indent=2))
        return 0
    print(f"forgot {len(removed)} entr{'y' if len(removed) == 1 else 'ies'} of {args.function} "
          f"({format_size(size)}; `pairio gc` frees content nothing else refers to)")
    return 0


def _why(args: argparse.Namespace) -> int:
    from ..lifecycle import provenance, queries

    try:
        tree = queries.why(args.name)
    except LookupError as exc:
        print(f"pairio: {exc}")
        return 1
    print(json.dumps(tree, indent=2) if args.json else provenance.format_tree(tree))
    return 0


def _diff(args: argparse.Namespace) -> int:
    from ..lifecycle import queries

    try:
        differences = queries.diff(args.first, args.second)
    except LookupError as exc:
        print(f"pairio: {exc}")
        return 1
    if args.json:
        print(json.dumps(differences, indent=2))
        return 0
    if not differences:
        print("no differences in what the keys are made of")
    for line in differences:
        print(line)
    return 0


def _gc(args: argparse.Namespace) -> int:
    from ..content import content_store
    from ..lifecycle import access, gc

    overrides = {}
    if args.database:
        overrides["database_path"] = args.database
    if args.content_dir:
        overrides["content_dir"] = args.content_dir
    cfg = get_config(**overrides)
    every = not (args.content or args.pairs or args.temp or args.locks)
    report = gc.collect(cfg, grace_s=parse_age(args.grace, "--grace"), dry_run=args.dry_run,
                        content=every or args.content, pairs=every or args.pairs,
                        temp=every or args.temp, idle_locks=every or args.locks)
    by_access = None
    if args.max_size:
        by_access = access.evict_least_recent(content_store(cfg), parse_size(args.max_size, "--max-size"),
                                               grace_s=parse_age(args.grace, "--grace"), dry_run=args.dry_run)
    if args.json:
        print(json.dumps({**report.as_dict(), "by_access": by_access and dataclasses.asdict(by_access)}, indent=2))
        return 0
    verb = "would remove" if args.dry_run else "removed"
    if by_access is not None:
        print(f"{verb} {by_access.objects} object(s) read longest ago, {format_size(by_access.bytes)}: "
              f"{format_size(by_access.size_before)} -> {format_size(by_access.size_after)}")
    if every or args.content:
        print(f"{verb} {report.objects} unreferenced object(s), {format_size(report.object_bytes)}; kept: "
              f"{report.objects_referenced} a pair or record refers to, {report.objects_kept_young} younger than "
              f"{args.grace} (--grace), {report.objects_in_use} a reader holds open")
    if every or args.pairs:
        print(f"{verb} {report.pairs} pair(s) whose content is gone")
    if every or args.temp:
        print(f"{verb} {report.temp_files} abandoned temporary file(s), {format_size(report.temp_bytes)} "
              f"({report.partials} partial download(s) whose object is complete); kept: {report.partials_kept} "
              f"partial download(s) of absent objects, {format_size(report.partials_kept_bytes)} (a later "
              "download resumes them)")
    if every or args.locks:
        print(f"{verb} {report.locks} idle lock file(s) from {cfg.database_dir / 'locks'}")
    return 0


def _evict(args: argparse.Namespace) -> int:
    from ..lifecycle import eviction

    cfg = get_config()
    limit = parse_size(args.size, "SIZE") if args.size else cfg.max_size
    if limit is None:
        raise ConfigurationError("evict: give a SIZE or set max_size (PAIRIO_MAX_SIZE)")
    report = eviction.evict(cfg, limit)
    if args.json:
        print(json.dumps(None if report is None else dataclasses.asdict(report), indent=2))
        return 0
    if report is None:
        print("another process is evicting; nothing done")
        return 0
    print(f"evicted {report.entries} entr{'y' if report.entries == 1 else 'ies'} "
          f"({format_size(report.entry_bytes)} recorded, {report.objects} objects, "
          f"{format_size(report.object_bytes)} freed); results now take {format_size(report.total_after)}")
    return 0
