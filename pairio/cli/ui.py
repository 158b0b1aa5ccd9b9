"""``pairio ui``: the status page of this machine's cache, served on 127.0.0.1 with a token in its URL."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ..config import Config, get_config
from ..errors import ConfigurationError

if TYPE_CHECKING:
    from ..server.status import LocalSource

UI_HOST = "127.0.0.1"  # never another address: the page shows this user's cache


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ui", help="open the status page of the local cache in a browser", description=(
        "Serve the status page of the local store (entries, hit rates over time, top steps, recent "
        "misses and why, each entry's record and provenance, leases in flight) on 127.0.0.1 only. "
        "Prints a URL with a random token, as Jupyter does: every request must show it (the page keeps "
        "it in a cookie). Needs the server extra: pip install 'pairio[server]'."))
    p.add_argument("--port", type=_port, default=0, help="port to listen on (default: a free one)")
    p.add_argument("--no-browser", action="store_true", help="print the URL only; do not open a browser")
    p.set_defaults(handler=_ui)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"--port must be a port number from 0 to 65535, not {text!r}")
    return int(text)


def local_source(cfg: Config | None = None) -> LocalSource:
    """The status source of the local store of ``cfg`` (default: the effective config)."""
    from ..kv import local_store
    from ..kv.directory import DirectoryStore
    from ..server.status import LocalSource

    cfg = get_config() if cfg is None else cfg
    store = local_store(cfg)
    leases = [store.directory] if isinstance(store, DirectoryStore) else []
    return LocalSource(store, cfg.max_size, leases, cfg.database_dir)  # type: ignore[arg-type]


def _ui(args: argparse.Namespace) -> int:
    import secrets

    try:
        import uvicorn

        from ..server.status_routes import ui_app
    except ImportError as exc:
        raise ConfigurationError(
            f"pairio ui needs the server extra ({exc.name} is missing): pip install 'pairio[server]'") from None
    from .serve import _listen

    token = secrets.token_urlsafe(32)
    sock = _listen(UI_HOST, args.port)
    port = sock.getsockname()[1]
    url = f"http://{UI_HOST}:{port}/?token={token}"
    print(f"pairio: the status page of {get_config().database_dir} is at\n    {url}", flush=True)
    if not args.no_browser:
        import webbrowser

        webbrowser.open(url)
    config = uvicorn.Config(ui_app(local_source(), token), log_level="warning", access_log=False)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        print("pairio: ui stopped", file=sys.stderr)
    return 0
