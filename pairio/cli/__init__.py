"""The ``pairio`` command line: one module per command group, each with ``add_commands``.

Options every command takes (``--url``, ``--channel``, ``--collection``, ``--get-from``,
``--set-to``, ``--password-file``, ``--json``) are added here to the main parser and to
each command's parser, so a command module defines only its own; they override the
configuration for this run. The password never comes from the command line (other
users see it in ``ps``): PAIRIO_PASSWORD or ``--password-file``.

Each command module imports the stores and layers its handlers use inside those handlers:
building the parser (``pairio --help``, a usage error) loads none of them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from .._version import __version__
from ..config import GET_FROM_CHOICES, SET_TO_CHOICES, set_config
from ..errors import (
    AuthenticationError,
    ConfigurationError,
    ContentNotFoundError,
    CorruptContentError,
    InvalidKeyError,
    InvalidPathError,
    InvalidURIError,
    InvalidValueError,
    PairioError,
    PermissionDeniedError,
    RateLimitedError,
    ServerUnavailableError,
)

# Each module defines add_commands(subparsers); a command's handler is set with
# set_defaults(handler=...) and returns the exit code.
_COMMAND_MODULES = (
    "pairio.cli.kv",
    "pairio.cli.content",
    "pairio.cli.cache",
    "pairio.cli.lifecycle",
    "pairio.cli.trust",
    "pairio.cli.serve",
    "pairio.cli.ui",
)

# Exit codes. A handler returns NOT_FOUND itself; the others follow from the error raised.
OK = 0
NOT_FOUND = 1
USAGE = 2
PATH = 3
UNREACHABLE = 4
AUTHENTICATION = 5
DENIED = 6
CORRUPT = 7
OTHER = 8
INTERRUPTED = 130
CLOSED_PIPE = 141

# (code, errors that give it, what it means): the first row whose errors match wins.
EXIT_CODES: tuple[tuple[int, tuple[type[BaseException], ...], str], ...] = (
    (OK, (), "success"),
    (NOT_FOUND, (ContentNotFoundError,), "not found: the key is not set, or the content is not in the store"),
    (USAGE, (InvalidKeyError, InvalidValueError, InvalidURIError, ConfigurationError),
     "usage: a bad command line, argument value or configuration"),
    (PATH, (InvalidPathError,), "a local file or directory is missing or cannot be used"),
    (UNREACHABLE, (ServerUnavailableError,), "the server cannot be reached (or keeps failing)"),
    (AUTHENTICATION, (AuthenticationError,), "the server refused the channel or password"),
    (DENIED, (PermissionDeniedError, RateLimitedError),
     "the channel may not do this on this collection (or is over its rate limit)"),
    (CORRUPT, (CorruptContentError,), "stored content is corrupt (its bytes do not match its hash)"),
    (OTHER, (PairioError,), "any other error (a store that cannot be opened, a request the server refused)"),
    (INTERRUPTED, (), "interrupted (Ctrl-C)"),
    (CLOSED_PIPE, (), "the reader of the output went away (`pairio cat URI | head`)"),
)


def exit_code_for(exc: BaseException) -> int:
    """The exit code for the error ``exc``."""
    for code, errors, _ in EXIT_CODES:
        if errors and isinstance(exc, errors):
            return code
    return OTHER


def _epilog() -> str:
    rows = "\n".join(f"  {code:>3}  {meaning}" for code, _, meaning in EXIT_CODES)
    return ("Every command takes the connection options above (after the command too), and --json.\n"
            "The password comes from PAIRIO_PASSWORD or --password-file, never the command line.\n\n"
            f"exit codes:\n{rows}")


class _NoPasswordOnCommandLine(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        parser.error("a password is never given on the command line (other users can see it in the "
                     "process list): set PAIRIO_PASSWORD, or put it in a file and pass --password-file FILE")


def _add_common_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """The options every command takes; on a command's parser they default to 'not given'
    (SUPPRESS), so that an option given before the command is not reset by the command's parser."""
    taken = set(parser._option_string_actions)  # a command may define one itself (--collection)
    default = None if top else argparse.SUPPRESS
    group = parser.add_argument_group("connection and output (every command)")

    def add(flag: str, **kwargs: Any) -> None:
        if flag not in taken:
            group.add_argument(flag, default=kwargs.pop("default", default), **kwargs)

    add("--url", metavar="URL", help="the pairio server (overrides PAIRIO_URL)")
    add("--channel", metavar="NAME", help="the channel to sign requests as (overrides PAIRIO_CHANNEL)")
    add("--password-file", metavar="FILE",
        help="read the channel's password from FILE (else PAIRIO_PASSWORD)")
    add("--collection", metavar="NAME", help="the collection (overrides PAIRIO_COLLECTION)")
    add("--get-from", choices=GET_FROM_CHOICES, help="where to look pairs up (overrides PAIRIO_GET_FROM)")
    add("--set-to", choices=SET_TO_CHOICES, help="where to store pairs (overrides PAIRIO_SET_TO)")
    add("--json", action="store_true", default=False if top else argparse.SUPPRESS,
        help="machine-readable output: JSON on stdout")
    add("--password", nargs="?", action=_NoPasswordOnCommandLine, help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pairio",
        description="Cache pipeline results: a key/value store of hashes and a content store of files.",
        epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"pairio {__version__}")
    _add_common_options(parser, top=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).add_commands(subparsers)
    for sub in {id(p): p for p in subparsers.choices.values()}.values():
        sub.allow_abbrev = False  # --pass would otherwise be taken for --password-file
        _add_common_options(sub, top=False)
    return parser


def apply_common_options(args: argparse.Namespace) -> None:
    """Make the connection options given on the command line this run's configuration."""
    fields: dict[str, Any] = {}
    for name in ("url", "channel", "collection", "get_from", "set_to"):
        value = getattr(args, name, None)
        if value is not None:
            fields[name] = value
    password_file = getattr(args, "password_file", None)
    if password_file is not None:
        try:
            with open(password_file, encoding="utf-8") as f:
                fields["password"] = f.read().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"--password-file {password_file!r} cannot be read: "
                                     f"{getattr(exc, 'strerror', None) or exc}") from None
        if not fields["password"]:
            raise ConfigurationError(f"--password-file {password_file!r} is empty")
    if fields:
        set_config(**fields)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    if not hasattr(args, "json"):
        args.json = False
    # What registers as it loads, whichever layers a handler imports (the parser alone loads none):
    # lifecycle's table families (a store a command makes has them all) and memo's helper for a
    # cached result's files in content loaded as data only.
    from ..lifecycle import counts, schema  # noqa: F401
    from ..memo import values  # noqa: F401

    try:
        apply_common_options(args)
        code = args.handler(args)
        sys.stdout.flush()  # so a closed pipe is reported below, not at interpreter exit
        return code
    except PairioError as exc:
        print(f"pairio: error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`pairio get KEY | head`): leave quietly, and point stdout
        # at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return CLOSED_PIPE
