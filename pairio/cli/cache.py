"""``pairio stats``: hits, misses and time saved per cached function, totalled across runs;
``pairio leases``: the computations the server knows to be running; ``pairio sync``: what the
server lacks of this store's results, uploaded."""

from __future__ import annotations

import argparse
import json
import time

from ..config import get_config
from ..errors import ConfigurationError
from ..units import format_size, parse_age


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("stats", help="hits, misses and time saved per cached function", description=(
        "Print, for each @pairio.cached function run against this database, its hits (and how many "
        "of them came through the server), misses, seconds computed and seconds saved, and megabytes "
        "of results downloaded from and uploaded to the server, totalled across runs. Saved is the net "
        "saving: for each hit, what computing took minus what loading the result took (negative when "
        "loading is slower than computing)."))
    p.add_argument("--clear", action="store_true", help="reset the totals to zero")
    p.add_argument("--since", metavar="AGE", help=(
        "hourly counts of the last AGE (90m, 36h, 7d; kept 90 days) instead of the totals: hits, misses, "
        "hit rate, seconds saved and computed, bytes up and down"))
    p.add_argument("--by", choices=("function", "collection"), help=(
        "group the counts since --since (default 7d) by function (the default) or collection"))
    p.add_argument("--server", action="store_true", help=(
        "the configured server's counts (of the collections the channel may read) instead of this store's"))
    p.set_defaults(handler=_stats)
    p = subparsers.add_parser("leases", help="the leases held on the server (steps being computed)", description=(
        "List the leases held on the configured server (PAIRIO_URL, PAIRIO_CHANNEL, PAIRIO_PASSWORD) "
        "in the collections the channel may read: which step, on which host and process, for how "
        "long, and for how long more unless renewed."))
    p.set_defaults(handler=_leases)
    p = subparsers.add_parser("sync", help="upload the results the server lacks (those made during an outage)",
                              description=(
        "Upload to the configured server what it lacks of this store's cached results: those stored here "
        "while it was unreachable or refused them (the outbox), and every recorded entry whose key it does "
        "not hold (of --collection, if given; else of every collection). Content goes first, then the "
        "pairs; a key the server holds with another value is left as it is. Prints the counts."))
    p.add_argument("--dry-run", action="store_true", help="count what would be uploaded; send nothing")
    p.set_defaults(handler=_sync)


def _stats(args: argparse.Namespace) -> int:
    from ..memo.call_stats import clear_persistent, read_persistent

    directory = get_config().database_dir
    if args.clear and (args.since or args.by or args.server):
        raise ConfigurationError("--clear resets this store's totals: it takes no --since, --by or --server")
    if args.since or args.by or args.server:
        return _counts(args)
    if args.clear:
        clear_persistent(directory)
        print(f"cleared the cache statistics in {directory}")
        return 0
    rows = read_persistent(directory)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no cached calls recorded in {directory}")
        return 0
    width = max(len("function"), *(len(name) for name in rows))
    print(f"{'function':<{width}}  {'hits':>7}  {'misses':>7}  {'computed s':>10}  {'saved s':>10}  "
          f"{'remote hits':>11}  {'down MB':>8}  {'up MB':>8}  last used")
    for name, row in rows.items():
        last = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["last_used"]))
        print(f"{name:<{width}}  {row['hits']:>7}  {row['misses']:>7}  {row['seconds_computed']:>10.2f}  "
              f"{row['seconds_saved']:>10.2f}  {row['remote_hits']:>11}  "
              f"{row['bytes_downloaded'] / 1e6:>8.1f}  {row['bytes_uploaded'] / 1e6:>8.1f}  {last}")
    return 0


def _counts(args: argparse.Namespace) -> int:
    """``pairio stats --since AGE --by function|collection [--server]``: the hourly counts, grouped."""
    from ..kv import local_store, remote_store
    from ..lifecycle import counts

    since = time.time() - parse_age(args.since or "7d", "--since")
    by = args.by or "function"
    collection = getattr(args, "collection", None)
    cfg = get_config()
    if args.server:
        answer = remote_store(cfg).counts(since, by=by, collection=collection)  # type: ignore[attr-defined]
        groups, total = answer["groups"], answer["totals"]
    else:
        rows = counts.read(local_store(cfg), since, by=by, collection=collection)
        groups, total = counts.by_group(rows, by), counts.totals(rows)
    where = "the server" if args.server else str(cfg.database_dir)
    if args.json:
        print(json.dumps({"since": since, "by": by, "groups": groups, "totals": total}, indent=2))
        return 0
    if not groups:
        print(f"no cached calls counted in {where} in the last {args.since or '7d'}")
        return 0
    width = max(len(by), *(len(g[by] or "(content)") for g in groups))
    print(f"{by:<{width}}  {'hits':>7}  {'misses':>7}  {'hit rate':>8}  {'saved s':>10}  {'computed s':>10}  "
          f"{'up':>9}  {'down':>9}")
    for g in [*groups, {by: "total", **total}]:
        rate = "" if g["hit_rate"] is None else f"{g['hit_rate']:.0%}"
        print(f"{g[by] or '(content)':<{width}}  {g['hits']:>7}  {g['misses']:>7}  {rate:>8}  "
              f"{g['seconds_saved']:>10.2f}  {g['seconds_computed']:>10.2f}  {format_size(g['bytes_up']):>9}  "
              f"{format_size(g['bytes_down']):>9}")
    return 0


def _leases(args: argparse.Namespace) -> int:
    from ..kv import remote_store

    answer = remote_store(get_config()).leases()  # type: ignore[attr-defined]
    if args.json:
        print(json.dumps(answer["leases"], indent=2))
        return 0
    if not answer["leases"]:
        print("no leases held")
        return 0
    now = answer.get("now", time.time())
    print(f"{'collection':<12}  {'key':<8}  {'function':<30}  {'host':<16}  {'pid':>7}  {'held s':>8}  {'expires in':>10}")
    for lease in answer["leases"]:
        info = lease.get("info") or {}
        print(f"{str(lease['collection']):<12}  {str(lease['key'])[:8]:<8}  {str(info.get('function', '?')):<30}  "
              f"{str(info.get('host', '?')):<16}  {str(info.get('pid', '?')):>7}  "
              f"{now - lease['acquired_at']:>8.1f}  {lease['expires_at'] - now:>10.1f}")
    return 0


def _sync(args: argparse.Namespace) -> int:
    import sys

    from ..content.progress import ProgressBar
    from ..memo.outbox import sync

    bars: list[ProgressBar] = []

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(ProgressBar(total, "pairio sync: uploading"))
        bars[0](done)

    shown = not args.json and sys.stderr.isatty()
    try:
        report = sync(dry_run=args.dry_run, collection=getattr(args, "collection", None),
                      progress=progress if shown else None)
    finally:
        for bar in bars:
            bar.close()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    verb = "would upload" if report.dry_run else "uploaded"
    print(f"{report.entries} local entr{'y' if report.entries == 1 else 'ies'}: {report.pushed} the server lacked "
          f"({verb}: {report.objects} object(s), {report.bytes / 1e6:.1f} MB), {report.on_server} on the server "
          f"already, {report.differing} held there with another value (left), {report.missing_content} whose "
          f"content is gone here, {report.refused} refused; {report.outbox_left} result(s) still waiting in the "
          f"outbox ({report.seconds:.1f} s)")
    return 0
