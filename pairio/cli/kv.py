"""``pairio get``, ``pairio set``, ``pairio config``."""

from __future__ import annotations

import argparse
import json
import sys

from .. import api
from ..config import get_config
from ..errors import InvalidKeyError


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("get", help="print the value stored under KEY", description=(
        "Print the value stored under KEY. Exit code 1, with a message on stderr, when absent."))
    p.add_argument("key", metavar="KEY")
    _add_key_options(p)
    p.set_defaults(handler=_get)

    p = subparsers.add_parser("set", help="store VALUE under KEY", description=(
        "Store VALUE (at most 80 characters) under KEY. --delete removes KEY instead."))
    p.add_argument("key", metavar="KEY")
    p.add_argument("value", metavar="VALUE", nargs="?")
    p.add_argument("--delete", action="store_true", help="remove KEY instead of setting it")
    _add_key_options(p)
    p.set_defaults(handler=_set)

    p = subparsers.add_parser("config", help="print the effective configuration (password masked)",
                              description="Print the effective configuration as JSON, password masked.")
    p.set_defaults(handler=_config)


def _add_key_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collection", help="collection of the pair (default: config's collection)")
    p.add_argument("--json", action="store_true",
                   help="KEY is JSON (a dict or list), hashed to its canonical SHA-1")


def _parse_key(args: argparse.Namespace) -> object:
    if not args.json:
        return args.key
    try:
        return json.loads(args.key)
    except json.JSONDecodeError as exc:
        raise InvalidKeyError(f"--json KEY is not valid JSON: {exc}") from None


def _get(args: argparse.Namespace) -> int:
    value = api.get(_parse_key(args), collection=args.collection)
    if value is None:
        collection = args.collection or get_config().collection
        print(f"pairio: key {args.key!r} not found in collection {collection!r}", file=sys.stderr)
        return 1
    print(value)
    return 0


def _set(args: argparse.Namespace) -> int:
    if args.delete == (args.value is not None):
        print("pairio: error: give either VALUE or --delete", file=sys.stderr)
        return 2
    api.set(_parse_key(args), args.value, collection=args.collection)
    return 0


def _config(args: argparse.Namespace) -> int:
    print(json.dumps(get_config().masked(), indent=2))
    return 0
