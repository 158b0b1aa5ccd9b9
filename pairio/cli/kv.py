"""``pairio get``, ``pairio set``, ``pairio config``, ``pairio ping``."""

from __future__ import annotations

import argparse
import json
import sys
import time

from ..config import Config, get_config, mask_url
from ..errors import BadRequestError, InvalidKeyError
from ..hashing import key_string
from . import DENIED, NOT_FOUND, USAGE


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
                              description=("Print the effective configuration as JSON, password masked, "
                                           "with the paths as they are used (~ expanded, the content "
                                           "directory filled in)."))
    p.set_defaults(handler=_config)

    p = subparsers.add_parser("ping", help="check the server connection and the channel's rights", description=(
        "Connect to the configured server, sign a request as the channel, and print which collections "
        "it may read and write. Exit code 4 if the server cannot be reached, 5 if it refuses the "
        "channel or password, 6 if the channel may not use the configured collection."))
    p.set_defaults(handler=_ping)


def _add_key_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json-key", action="store_true",
                   help="KEY is JSON (a dict or list), hashed to its canonical SHA-1")


def _parse_key(args: argparse.Namespace) -> object:
    if not args.json_key:
        return args.key
    try:
        return json.loads(args.key)
    except json.JSONDecodeError as exc:
        raise InvalidKeyError(f"--json-key KEY is not valid JSON: {exc}") from None


def _get(args: argparse.Namespace) -> int:
    from .. import key_value

    key = _parse_key(args)
    cfg = get_config()
    value = key_value.get(key)
    if args.json:
        print(json.dumps({"key": key_string(key), "collection": cfg.collection, "value": value,
                          "searched": _searched(cfg)}))
    if value is None:
        if not args.json:
            print(f"pairio: key {args.key!r} not found in collection {cfg.collection!r}{_where(cfg)}",
                  file=sys.stderr)
        return NOT_FOUND
    if not args.json:
        print(value)
    return 0


def _searched(cfg: Config) -> list[str]:
    """Which stores a lookup asks, in order."""
    return {"local": ["local"], "remote": ["remote"], "local_then_remote": ["local", "remote"],
            "remote_then_local": ["remote", "local"]}[cfg.get_from]


def _where(cfg: Config) -> str:
    """Where a lookup looked, for a miss message: a configured server that was not asked is named."""
    if cfg.get_from == "local":
        where = f" of the local store {str(cfg.database_dir)!r}"
        if cfg.url:
            where += (f" (only the local store was searched: a server is configured at {mask_url(cfg.url)}, "
                      f"but get_from is 'local'; add --get-from local_then_remote to ask it too)")
        return where
    return f" (searched: {' then '.join(_searched(cfg))} store)"


def _set(args: argparse.Namespace) -> int:
    from .. import key_value

    if args.delete == (args.value is not None):
        print("pairio: error: give either VALUE or --delete", file=sys.stderr)
        return USAGE
    key = _parse_key(args)
    key_value.set(key, args.value)
    if args.json:
        print(json.dumps({"key": key_string(key), "collection": get_config().collection, "value": args.value}))
    return 0


def _config(args: argparse.Namespace) -> int:
    cfg = get_config()
    shown = cfg.masked()
    shown["database_path"] = str(cfg.database_dir.absolute())
    shown["content_dir"] = str(cfg.content_path.absolute())
    print(json.dumps(shown, indent=2))
    return 0


def _ping(args: argparse.Namespace) -> int:
    from ..kv import remote_store

    cfg = get_config()
    store = remote_store(cfg)  # a ConfigurationError naming what is missing if no server is configured
    started = time.perf_counter()
    answer = store.probe()
    seconds = time.perf_counter() - started
    collections = answer.get("collections") if isinstance(answer, dict) else None
    if not isinstance(collections, dict):
        raise BadRequestError(f"the server at {mask_url(cfg.url or '')} answered the probe without "
                              "a 'collections' field: is it a pairio server?")
    rights = collections.get(cfg.collection)
    report = {"url": mask_url(cfg.url or ""), "channel": cfg.channel, "seconds": round(seconds, 4),
              "collection": cfg.collection, "rights": rights, "collections": collections}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"connected to {report['url']} as channel {cfg.channel!r} ({seconds * 1000:.0f} ms)")
        for name, r in sorted(collections.items()):
            can = " and ".join(v for v, ok in (("read", r.get("get")), ("write", r.get("set"))) if ok)
            mark = "*" if name == cfg.collection else " "
            print(f" {mark} {name}: {can or 'no access'}")
    if rights is None:
        print(f"pairio: channel {cfg.channel!r} has no collection {cfg.collection!r} on this server "
              f"(it has: {', '.join(sorted(collections)) or 'none'})", file=sys.stderr)
        return DENIED
    if not (rights.get("get") or rights.get("set")):
        print(f"pairio: channel {cfg.channel!r} may neither read nor write collection {cfg.collection!r}",
              file=sys.stderr)
        return DENIED
    return 0
