"""The ``pairio`` command line: one module per command group, each with ``add_commands``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import PairioError

# Each module defines add_commands(subparsers); a command's handler is set with
# set_defaults(handler=...) and returns the exit code.
_COMMAND_MODULES = (
    "pairio.cli.kv",
    "pairio.cli.content",
    "pairio.cli.cache",
    "pairio.cli.serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pairio",
        description="Cache pipeline results: a key/value store of hashes and a content store of files.",
    )
    parser.add_argument("--version", action="version", version=f"pairio {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except PairioError as exc:
        print(f"pairio: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
