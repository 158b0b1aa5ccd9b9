"""The ``pairio`` command line: one module per command group, each with ``add_commands``."""

from __future__ import annotations

import argparse
import importlib
import os
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
        code = args.handler(args)
        sys.stdout.flush()  # so a closed pipe is reported below, not at interpreter exit
        return code
    except PairioError as exc:
        print(f"pairio: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`pairio get KEY | head`): leave quietly, and point stdout
        # at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as the shell reports for other tools
