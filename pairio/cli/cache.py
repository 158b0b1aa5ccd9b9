"""``pairio stats``: hits, misses and time saved per cached function, totalled across runs."""

from __future__ import annotations

import argparse
import json
import time

from ..config import get_config
from ..memo.call_stats import clear_persistent, read_persistent


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("stats", help="hits, misses and time saved per cached function", description=(
        "Print, for each @pairio.cached function run against this database, its hits, misses, "
        "seconds computed and seconds saved, totalled across runs."))
    p.add_argument("--clear", action="store_true", help="reset the totals to zero")
    p.set_defaults(handler=_stats)


def _stats(args: argparse.Namespace) -> int:
    directory = get_config().database_dir
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
    print(f"{'function':<{width}}  {'hits':>7}  {'misses':>7}  {'computed s':>10}  {'saved s':>10}  last used")
    for name, row in rows.items():
        last = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["last_used"]))
        print(f"{name:<{width}}  {row['hits']:>7}  {row['misses']:>7}  {row['seconds_computed']:>10.2f}  "
              f"{row['seconds_saved']:>10.2f}  {last}")
    return 0
