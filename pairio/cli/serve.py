"""``pairio serve DIR``: run the pairio server (``--check`` its pairio.json, ``--init`` a new one)."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigurationError, InvalidPathError, StoreUnavailableError

if TYPE_CHECKING:
    import socket

LOCK_FILENAME = ".pairio-serve.lock"
# The passwords of server/example_pairio.json: a server still using them is open to anyone.
EXAMPLE_PASSWORDS = frozenset({"change-me-to-a-long-random-secret", "another-long-random-secret"})
# Below this many bits (estimated from length and the kinds of characters used) a password is weak.
MIN_PASSWORD_BITS = 80


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help="serve the pairs of directory DIR over HTTP",
        description=(
            "Serve the key/value pairs of DIR, configured by DIR/pairio.json, with uvicorn. "
            "Needs the server extra: pip install 'pairio[server]'. One process per DIR (the replay "
            "cache and rate limits live in its memory): a second one on the same DIR is refused. "
            "--init DIR writes a new pairio.json with fresh random passwords."
        ),
    )
    p.add_argument("directory", metavar="DIR", help="directory holding pairio.json")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8080, help="port to listen on (default: 8080)")
    p.add_argument("--check", action="store_true",
                   help="validate DIR/pairio.json, warn about example or weak passwords, and exit")
    p.add_argument("--init", action="store_true",
                   help="create DIR/pairio.json with fresh random passwords (never overwrites one)")
    p.add_argument("--root-path", default="",
                   help="path prefix a reverse proxy strips before forwarding (e.g. /pairio)")
    p.add_argument("--workers", type=_workers, default=1, metavar="N",
                   help="serve with N processes on the one port (default 1); needs a shared backend "
                        "(\"database\" in pairio.json)")
    p.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True,
                   help="one JSON line per request on stderr, at --log-level info or debug (default: on)")
    p.add_argument("--log-level", default="info",
                   choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(handler=_serve)


def _workers(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 256:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers from 1 to 256")
    return int(text)


def _port(text: str) -> int:
    # uvicorn would otherwise report a port over 65535 as listening.
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number from 1 to 65535")
    return int(text)


def password_warnings(passwords: dict[str, str]) -> list[str]:
    """What is wrong with the channels' passwords: the example's, weak ones, one shared by channels."""
    out = []
    owners: dict[str, list[str]] = {}
    for channel, password in passwords.items():
        owners.setdefault(password, []).append(channel)
        if password in EXAMPLE_PASSWORDS:
            out.append(f"channel {channel!r} still has the example's password: anyone who has read "
                       f"server/example_pairio.json can use it (pairio serve --init writes random ones)")
        elif _password_bits(password) < MIN_PASSWORD_BITS:
            out.append(f"channel {channel!r} has a weak password (about {_password_bits(password):.0f} bits; "
                       f"use at least {MIN_PASSWORD_BITS}, e.g. python -c 'import secrets; "
                       f"print(secrets.token_urlsafe(32))')")
    for channels in owners.values():
        if len(channels) > 1:
            out.append(f"channels {', '.join(map(repr, channels))} share one password: each can sign as the others")
    return out


def readable_by_others(paths: list[str | os.PathLike[str] | None]) -> list[str]:
    """A warning for each file of ``paths`` (None skipped) that every user of the machine may read:
    pairio.json and a password file hold passwords."""
    out = []
    for path in paths:
        if path is None:
            continue
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if mode & stat.S_IROTH:
            out.append(f"{os.fspath(path)} holds passwords and is readable by every user of this machine "
                       f"(mode {stat.S_IMODE(mode):04o}): chmod o-r {os.fspath(path)} (or chmod 600)")
    return out


def _password_bits(password: str) -> float:
    """A generous estimate of a password's strength: its length times the bits of the alphabet it draws on,
    counting a character repeated as no new information."""
    alphabet = 0
    for present, size in ((any(c.islower() for c in password), 26), (any(c.isupper() for c in password), 26),
                          (any(c.isdigit() for c in password), 10),
                          (any(not c.isalnum() for c in password), 33)):
        alphabet += size if present else 0
    distinct = len(set(password))
    return min(len(password), 2 * distinct) * math.log2(max(alphabet, 2))


def _serve(args: argparse.Namespace) -> int:
    from ..server.settings import SETTINGS_FILENAME, load_settings

    if args.init:
        return _init(Path(args.directory), SETTINGS_FILENAME, args.json)
    settings = load_settings(args.directory)
    warnings = password_warnings(settings.passwords) + readable_by_others(
        [Path(args.directory) / SETTINGS_FILENAME, getattr(args, "password_file", None)])
    if args.check:
        store = "postgresql" if settings.database else settings.store.backend
        channels = ", ".join(
            f"{c.name} ({len(c.collections)} collection{'s' * (len(c.collections) != 1)})"
            for c in settings.channels.values()
        )
        if args.json:
            print(json.dumps({"valid": True, "directory": str(args.directory),
                              "channels": {c.name: sorted(c.collections) for c in settings.channels.values()},
                              "store": store, "legacy": settings.legacy,
                              "warnings": warnings}, indent=2))
        else:
            print(f"{args.directory}/pairio.json is valid: channels {channels}; "
                  f"store {store}; legacy protocol {'on' if settings.legacy else 'off'}")
        for warning in warnings:
            print(f"pairio: warning: {warning}", file=sys.stderr)
        return 0
    try:
        import uvicorn

        from ..server.app import create_app
    except ImportError as exc:
        raise ConfigurationError(
            f"pairio serve needs the server extra ({exc.name} is missing): pip install 'pairio[server]'"
        ) from None
    for warning in warnings:
        _tell(f"pairio: warning: {warning}")
    if args.workers > 1 and not settings.shared:
        raise ConfigurationError(
            f"--workers {args.workers} needs a backend the processes share, and {args.directory}/pairio.json "
            "names the embedded store: each process would keep its own replay cache and rate limits in "
            f"memory, so a request replayed to another process would be accepted and every limit would be "
            f"multiplied by {args.workers}. Put \"database\": \"postgresql://...\" in pairio.json (see "
            "server/README.md), or run one process (one is plenty for the embedded store: its reads take "
            "microseconds)"
        )
    _check_backends(args.directory, settings)
    # With PostgreSQL the replay cache and rate limits are shared: replicas may serve one directory.
    with _only_server(Path(args.directory)) if settings.database is None else contextlib.nullcontext():
        sock = _listen(args.host, args.port)
        if args.workers > 1:
            _serve_workers(args, settings, sock)
            return 0
        config = uvicorn.Config(create_app(settings), **_uvicorn_options(args))
        # Listening already: a port taken is reported above, never after "serving".
        _tell(f"pairio: serving {args.directory} on http://{_shown_host(args.host)}:{args.port}")
        uvicorn.Server(config).run(sockets=[sock])
    return 0


def _check_backends(directory: str, settings) -> None:
    """StoreUnavailableError naming each backend that cannot be used (a database unreachable, a store
    lost or corrupt, a content directory that is none): a server never says it serves without them."""
    from ..server.app import backend_problems, open_backends, open_content

    store, coordination = open_backends(settings)
    content = open_content(settings)
    try:
        causes = backend_problems(store, coordination, content, detail=True)
    finally:
        for backend in (store, coordination, content):
            with contextlib.suppress(Exception):
                backend.close()
    if causes:
        raise StoreUnavailableError(f"cannot serve {directory}: " + "; ".join(causes))


def _tell(message: str) -> None:
    """``message`` on stderr, if it can be written: a full disk under the log never stops the server."""
    try:
        print(message, file=sys.stderr, flush=True)
    except OSError:
        from ..server.logs import SafeStreamHandler

        SafeStreamHandler.failures += 1


def _uvicorn_options(args: argparse.Namespace) -> dict:
    options = {"host": args.host, "port": args.port, "root_path": args.root_path, "access_log": False,
               "log_config": log_config(args.log_level, args.access_log), "log_level": args.log_level,
               "server_header": False}
    # Request heads are bounded (431 past 64 KiB): see pairio.server.http.
    if importlib.util.find_spec("httptools"):
        from ..server.http import HeadLimitedHttpToolsProtocol

        options["http"] = HeadLimitedHttpToolsProtocol
    else:
        from ..server.settings import MAX_HEADER_BYTES

        options["h11_max_incomplete_event_size"] = MAX_HEADER_BYTES
    if importlib.util.find_spec("uvloop"):
        options["loop"] = "uvloop"
    return options


def _serve_workers(args: argparse.Namespace, settings, sock: socket.socket) -> None:
    """Run ``args.workers`` processes accepting on ``sock``, over the shared backend of ``settings``."""
    import shutil
    import tempfile

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from ..server.backends.postgres import PostgresDatabase
    from ..server.settings import SERVE_DIRECTORY_VARIABLE

    # Reach the database (and create or upgrade its schema) once, before any worker starts:
    # a wrong URL is one clear error here, not N tracebacks.
    database = PostgresDatabase(settings.database)
    database.schema_version()
    database.close()
    # The workers load the app themselves (uvicorn spawns them): they find DIR here.
    os.environ[SERVE_DIRECTORY_VARIABLE] = str(Path(args.directory).resolve())
    # prometheus-client adds up the workers' figures from files in this directory.
    own_metrics_dir = None
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if metrics_dir:
        for stale in Path(metrics_dir).glob("*.db"):  # a previous run's figures would be added in
            stale.unlink()
    else:
        own_metrics_dir = metrics_dir = tempfile.mkdtemp(prefix="pairio-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    config = uvicorn.Config("pairio.server.app:app_from_environment", factory=True, workers=args.workers,
                            **_uvicorn_options(args))
    _tell(f"pairio: serving {args.directory} on http://{_shown_host(args.host)}:{args.port} "
          f"with {args.workers} worker processes")
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        if own_metrics_dir is not None:
            shutil.rmtree(own_metrics_dir, ignore_errors=True)


@contextlib.contextmanager
def _only_server(directory: Path) -> Iterator[None]:
    """Hold ``DIR/.pairio-serve.lock`` for the life of the server: a second one on DIR is refused."""
    import filelock

    path = directory / LOCK_FILENAME
    lock = filelock.FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise StoreUnavailableError(
            f"another pairio server is already serving {str(directory)!r} (it holds {str(path)!r}); "
            "run one server per directory: the replay cache and rate limits live in its memory"
        ) from None
    except OSError as exc:
        raise StoreUnavailableError(f"cannot create the lock file {str(path)!r}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        lock.release()


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and listening; a clear error if that is impossible."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ConfigurationError(f"--host {host!r} is not an address to listen on: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {_shown_host(host)}:{port}: {exc.strerror or exc} "
                                 "(is another server using the port? choose another with --port)") from None
    sock.set_inheritable(True)
    return sock


def _shown_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _init(directory: Path, filename: str, as_json: bool) -> int:
    """Write ``DIR/pairio.json`` with two channels and fresh random passwords."""
    import secrets

    path = directory / filename
    if path.exists():
        raise InvalidPathError(f"{str(path)!r} already exists: --init never overwrites a server's settings")
    if directory.exists() and not directory.is_dir():
        raise InvalidPathError(f"server directory {str(directory)!r} is a file")
    settings = {
        "channels": [
            {"name": "lab-rw", "password": secrets.token_urlsafe(32),
             "readContent": True, "writeContent": True, "collections": [
                {"name": "default", "maxNumGetsPerMinute": 100000, "maxNumSetsPerMinute": 10000}]},
            {"name": "public-ro", "password": secrets.token_urlsafe(32), "readContent": True, "collections": [
                {"name": "default", "maxNumGetsPerMinute": 10000, "maxNumSetsPerMinute": 0}]},
        ],
        "legacy": False,
        "store": {"backend": "embedded", "path": "store"},
    }
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # Readable by the owner only, from the first byte: it holds the passwords.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidPathError(f"{str(path)!r} already exists: --init never overwrites a server's settings") from None
    except OSError as exc:
        raise InvalidPathError(f"cannot create {str(path)!r}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(settings, indent=2) + "\n")
    channels = [c["name"] for c in settings["channels"]]
    if as_json:
        print(json.dumps({"settings": str(path), "channels": channels}))
    else:
        print(f"wrote {path} (readable by you only): channels {', '.join(channels)} on collection 'default', "
              f"each with a fresh random password.\nGive a client its channel's password through "
              f"PAIRIO_PASSWORD (or pairio --password-file); start with: pairio serve {directory}")
    return 0


def log_config(level: str, access_log: bool) -> dict:
    """uvicorn's logging configuration, plus pairio's loggers: ``pairio.server`` (errors, refusals)
    and ``pairio.server.access`` (one JSON line per request, replacing uvicorn's access log, which
    would show query strings: the legacy protocol's signatures)."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["pairio_line"] = {"format": "%(message)s"}
    config["handlers"]["pairio_access"] = {"class": "logging.StreamHandler", "formatter": "pairio_line",
                                           "stream": "ext://sys.stderr"}
    # A log on a full disk must never stop the server: every handler swallows write failures.
    for handler in config["handlers"].values():
        if handler.get("class") == "logging.StreamHandler":
            handler["class"] = "pairio.server.logs.SafeStreamHandler"
    config["loggers"]["pairio.server"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    config["loggers"]["pairio.server.access"] = {
        "handlers": ["pairio_access"], "propagate": False,
        "level": level.upper() if access_log else "WARNING",
    }
    return config
