"""``pairio serve DIR``: run the pairio server (or ``--check`` its pairio.json)."""

from __future__ import annotations

import argparse
import importlib.util
import sys

from ..errors import ConfigurationError


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help="serve the pairs of directory DIR over HTTP",
        description=(
            "Serve the key/value pairs of DIR, configured by DIR/pairio.json, with uvicorn. "
            "Needs the server extra: pip install 'pairio[server]'. Run one process per DIR: "
            "the replay cache and rate limits live in its memory."
        ),
    )
    p.add_argument("directory", metavar="DIR", help="directory holding pairio.json")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8080, help="port to listen on (default: 8080)")
    p.add_argument("--check", action="store_true", help="validate DIR/pairio.json and exit")
    p.add_argument("--root-path", default="",
                   help="path prefix a reverse proxy strips before forwarding (e.g. /pairio)")
    p.add_argument("--access-log", action="store_true", help="log every request (slower)")
    p.add_argument("--log-level", default="info",
                   choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(handler=_serve)


def _port(text: str) -> int:
    # uvicorn would otherwise report a port over 65535 as listening.
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number from 1 to 65535")
    return int(text)


def _serve(args: argparse.Namespace) -> int:
    from ..server.settings import load_settings

    settings = load_settings(args.directory)
    if args.check:
        channels = ", ".join(
            f"{c.name} ({len(c.collections)} collection{'s' * (len(c.collections) != 1)})"
            for c in settings.channels.values()
        )
        print(f"{args.directory}/pairio.json is valid: channels {channels}; "
              f"store {'postgresql' if settings.database else settings.store.backend}; legacy protocol {'on' if settings.legacy else 'off'}")
        return 0
    try:
        import uvicorn

        from ..server.app import create_app
    except ImportError as exc:
        raise ConfigurationError(
            f"pairio serve needs the server extra ({exc.name} is missing): pip install 'pairio[server]'"
        ) from None
    app = create_app(settings)
    options = {}
    if importlib.util.find_spec("httptools"):
        options["http"] = "httptools"
    if importlib.util.find_spec("uvloop"):
        options["loop"] = "uvloop"
    print(f"pairio: serving {args.directory} on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    uvicorn.run(
        app, host=args.host, port=args.port, root_path=args.root_path,
        access_log=args.access_log, log_level=args.log_level, server_header=False, **options,
    )
    return 0
