"""``pairio identity`` and ``pairio trust``: this user's writer key, and the writers whose results run here."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from typing import Any

from ..config import Config, get_config
from ..errors import ConfigurationError, ContentNotFoundError, CorruptContentError, StoreUnavailableError


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("identity", help="print this user's writer name and public key", description=(
        "Print the name and public key this user signs the pairs it writes with (the key pair is made on "
        "first use in the pairio directory; the private key never leaves it). Teammates trust it with "
        "`pairio trust add KEY`."))
    p.set_defaults(handler=_identity)

    p = subparsers.add_parser("trust", help="the writers whose results may run code here", description=(
        "Results written by a trusted writer load as pickle loads them; others load as data only. "
        "Trusted: this user's own key, the trusted_writers config field (PAIRIO_TRUSTED_WRITERS), the "
        "keys added here, and those of the project's .pairio-trusted file."))
    sub = p.add_subparsers(dest="trust_command", metavar="SUBCOMMAND", required=True)
    q = sub.add_parser("list", help="print every trusted writer and where it is listed")
    q.set_defaults(handler=_list)
    q = sub.add_parser("add", help="trust a writer's public key (as `pairio identity` prints it)")
    q.add_argument("key", metavar="KEY")
    q.add_argument("name", metavar="NAME", nargs="?", default="", help="a name to remember it by")
    q.set_defaults(handler=_add)
    q = sub.add_parser("remove", help="stop trusting a writer added with `pairio trust add`")
    q.add_argument("key", metavar="KEY")
    q.set_defaults(handler=_remove)
    q = sub.add_parser("adopt", help="sign the pairs of a collection that this user vouches for", description=(
        "Sign, as this user, the pairs of COLLECTION on the server whose values are those of this user's "
        "local store (pairs written before writers signed, or by others, that this user has checked): "
        "readers who trust this user then load them as pickle does."))
    q.add_argument("--collection", required=True, metavar="C")
    q.set_defaults(handler=_adopt)
    for q in sub.choices.values():  # (the common options are given to `trust` itself, not to these)
        q.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")


def _identity(args: argparse.Namespace) -> int:
    from ..identity import PRIVATE_KEY_FILE, load_identity

    cfg = get_config()
    me = load_identity(cfg.identity_path, cfg.writer_name)
    key_file = str(cfg.identity_path / PRIVATE_KEY_FILE)
    if args.json:
        print(json.dumps({"name": me.name, "public_key": me.public_key, "key_file": key_file}))
    else:
        print(f"{me.name} {me.public_key}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from ..identity import read_trust_file, trusted_writers, user_trust_file

    cfg = get_config()
    names = read_trust_file(user_trust_file(cfg.identity_path))
    found = trusted_writers(cfg.identity_path, cfg.trusted_writers, cfg.writer_name)
    if args.json:
        print(json.dumps([{"public_key": k, "name": names.get(k, ""), "listed_in": v} for k, v in found.items()],
                         indent=2))
    else:
        for key, where in found.items():
            print(f"{key}  {names.get(key, '')}  ({where})".replace("   (", " ("))
    return 0


def _write_trust_file(cfg: Config, entries: dict[str, str]) -> None:
    from ..identity import user_trust_file

    path = user_trust_file(cfg.identity_path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = "# writers trusted by `pairio trust add`: public key, then a name\n"
    text += "".join(f"{k} {n}".rstrip() + "\n" for k, n in entries.items())
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(text, encoding="utf-8")
    temp.replace(path)


def _add(args: argparse.Namespace) -> int:
    from ..identity import check_public_key, read_trust_file, user_trust_file

    cfg = get_config()
    try:
        key = check_public_key(args.key.strip(), "KEY")
    except ConfigurationError as exc:
        print(f"pairio: error: {exc}", file=sys.stderr)
        return 2
    entries = read_trust_file(user_trust_file(cfg.identity_path))
    entries[key] = args.name.strip() or entries.get(key, "")
    _write_trust_file(cfg, entries)
    print(json.dumps({"trusted": key}) if args.json else f"trusted {key}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from ..identity import read_trust_file, user_trust_file

    cfg = get_config()
    entries = read_trust_file(user_trust_file(cfg.identity_path))
    if args.key.strip() not in entries:
        print(f"pairio: {args.key!r} is not in {str(user_trust_file(cfg.identity_path))!r} "
              "(`pairio trust list` says where each trusted key is listed)", file=sys.stderr)
        return 1
    del entries[args.key.strip()]
    _write_trust_file(cfg, entries)
    print(json.dumps({"removed": args.key.strip()}) if args.json else f"no longer trusted: {args.key.strip()}")
    return 0


def _adopt(args: argparse.Namespace) -> int:
    from ..identity import load_identity, signature_key
    from ..kv import local_store, remote_store

    cfg = get_config()
    local = local_store(cfg)
    items = getattr(local, "items", None)
    if items is None:
        print(f"pairio: {local!r} cannot list its pairs", file=sys.stderr)
        return 1
    mine = {k: v for k, v in items(args.collection)}
    signatures = {signature_key(k) for k in mine}
    mine = {k: v for k, v in mine.items() if k not in signatures}
    remote = remote_store(cfg)
    on_server = remote.get_many(args.collection, list(mine))
    vouched = {k: v for k, v in mine.items() if on_server.get(k) == v}
    remote.set_many(args.collection, vouched)  # signed by this user
    differ = len(on_server) - len(vouched)
    if args.json:
        print(json.dumps({"collection": args.collection, "signed": len(vouched), "differ": differ}))
    else:
        me = load_identity(cfg.identity_path, cfg.writer_name).name
        print(f"signed {len(vouched)} pair(s) of collection {args.collection!r} as {me}"
              + (f"; {differ} on the server differ from this store's and were left as they are" if differ else ""))
    return 0


def writer_of(cfg: Config, collection: str, key: str, value: str) -> dict[str, Any]:
    """Who wrote the local pair ``key`` -> ``value``: ``{"writer", "public_key", "trusted"}``, from its
    signed record when it came from a server, else this user (a result computed here)."""
    from ..content import content_store
    from ..identity import default_name, existing_identity, signature_key, trusted_writers, verify_record
    from ..kv import local_store

    record = local_store(cfg).get(collection, signature_key(key))
    if record is None:
        store = content_store(cfg)
        if len(value) == 40 and store.is_foreign(value):
            return {"writer": "unknown (unsigned, from a server)", "public_key": None, "trusted": False}
        me = existing_identity(cfg.identity_path, cfg.writer_name)  # (a read: no key is made for it)
        return {"writer": f"{me.name if me else default_name()} (this user)",
                "public_key": me.public_key if me else None, "trusted": True}
    try:
        with content_store(cfg).open(record) as f:
            data = f.read(1 << 20)
    except (ContentNotFoundError, CorruptContentError, StoreUnavailableError, ValueError):
        return {"writer": "unknown (its signed record is not here)", "public_key": None, "trusted": False}
    writer = verify_record(data, collection, key, value) if hashlib.sha1(data).hexdigest() == record else None
    if writer is None:
        return {"writer": "nobody: its signature is not valid for this pair", "public_key": None, "trusted": False}
    trusted = writer.public_key in trusted_writers(cfg.identity_path, cfg.trusted_writers, cfg.writer_name)
    return {"writer": writer.name, "public_key": writer.public_key, "trusted": trusted}
