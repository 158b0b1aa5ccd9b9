"""Configuration as an immutable value, with scoped overrides.

``Config`` is a frozen dataclass. The process-wide default comes from the
environment (PAIRIO_*) and is replaced with :func:`set_config`; ``with config(...)``
overrides fields for a block through a ContextVar, so overrides are local to a
thread or an asyncio task. Every public call also takes the fields as keyword
overrides.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import math
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigurationError
from .hashing import check_collection
from .units import parse_size

GET_FROM_CHOICES = ("local", "remote", "local_then_remote", "remote_then_local")
SET_TO_CHOICES = ("local", "remote", "local_and_remote")
CACHE_CHOICES = ("on", "off", "readonly", "refresh")
# The local store: SQLite, pairs as files (for a directory shared by hosts), or chosen by its file system.
STORE_BACKEND_CHOICES = ("auto", "sqlite", "directory")
# Content from elsewhere: pickles run only for trusted writers ("writers"), or for anyone ("all").
TRUST_CHOICES = ("writers", "all")
_ALL_CHOICES = frozenset(GET_FROM_CHOICES + SET_TO_CHOICES + CACHE_CHOICES + STORE_BACKEND_CHOICES + TRUST_CHOICES)

# The default store: created private (0700), as it holds the user's results.
DEFAULT_DATABASE_PATH = "~/.pairio"

# Field name -> environment variable.
ENV_VARS = {
    "url": "PAIRIO_URL",
    "channel": "PAIRIO_CHANNEL",
    "password": "PAIRIO_PASSWORD",
    "collection": "PAIRIO_COLLECTION",
    "database_path": "PAIRIO_DB_PATH",
    "content_dir": "PAIRIO_CONTENT_DIR",
    "get_from": "PAIRIO_GET_FROM",
    "set_to": "PAIRIO_SET_TO",
    "verbose": "PAIRIO_VERBOSE",
    "cache": "PAIRIO_CACHE",
    "timeout": "PAIRIO_TIMEOUT",
    "strict_remote": "PAIRIO_STRICT_REMOTE",
    "strict_store": "PAIRIO_STRICT_STORE",
    "lease_ttl": "PAIRIO_LEASE_TTL",
    "max_wait": "PAIRIO_MAX_WAIT",
    "max_size": "PAIRIO_MAX_SIZE",
    "mmap": "PAIRIO_MMAP",
    "store_backend": "PAIRIO_STORE_BACKEND",
    "trust": "PAIRIO_TRUST",
    "safe_globals": "PAIRIO_SAFE_GLOBALS",
    "trusted_writers": "PAIRIO_TRUSTED_WRITERS",
    "writer_name": "PAIRIO_WRITER_NAME",
    "identity_dir": "PAIRIO_IDENTITY_DIR",
}

# PAIRIO_* variables read elsewhere (the server's), and prefixes left to the test suite and benchmarks.
OTHER_ENV_VARS = ("PAIRIO_SERVE_DIRECTORY", "PAIRIO_STRICT_STORE")
_UNCHECKED_PREFIXES = ("PAIRIO_TEST_", "PAIRIO_BENCH_")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything pairio needs to know about where pairs and files live.

    ``password`` never appears in ``repr`` or in error messages. ``url`` may name several
    replicas of one server, comma-separated (or given as a list): the client moves to the
    next when one cannot be reached.
    """

    url: str | None = None
    channel: str | None = None
    password: str | None = None
    collection: str = "default"
    database_path: str = DEFAULT_DATABASE_PATH
    content_dir: str | None = None
    get_from: str = "local"
    set_to: str = "local"
    verbose: bool | None = None  # None: the short line of each cached call in IPython and Jupyter only
    cache: str = "on"
    timeout: float = 30.0
    strict_remote: bool = False
    strict_store: bool = False
    lease_ttl: float = 60.0
    max_wait: float | None = None
    max_size: int | None = None
    mmap: bool = False
    store_backend: str = "auto"
    trust: str = "writers"
    safe_globals: tuple[str, ...] = ()
    trusted_writers: tuple[str, ...] = ()
    writer_name: str | None = None
    identity_dir: str | None = None

    def __post_init__(self) -> None:
        # Choices in any case, with spaces around (PAIRIO_CACHE=OFF): as written in the docs.
        for name in ("get_from", "set_to", "cache", "store_backend", "trust"):
            value = getattr(self, name)
            if isinstance(value, str) and value not in _ALL_CHOICES:
                object.__setattr__(self, name, value.strip().lower())
        _check_choice("get_from", self.get_from, GET_FROM_CHOICES)
        _check_choice("set_to", self.set_to, SET_TO_CHOICES)
        _check_choice("cache", self.cache, CACHE_CHOICES)
        _check_choice("store_backend", self.store_backend, STORE_BACKEND_CHOICES)
        _check_choice("trust", self.trust, TRUST_CHOICES)
        object.__setattr__(self, "safe_globals", _names_list("safe_globals", self.safe_globals))
        object.__setattr__(self, "trusted_writers", _names_list("trusted_writers", self.trusted_writers))
        if isinstance(self.url, (list, tuple)) and self.url and all(isinstance(u, str) for u in self.url):
            # Several servers (replicas): kept as one comma-separated str, as in PAIRIO_URL.
            object.__setattr__(self, "url", ",".join(u.strip() for u in self.url))
        for name in ("url", "channel", "password", "content_dir", "writer_name", "identity_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise ConfigurationError(
                    f"config field {name!r} must be a str or None, got {type(value).__name__}"
                )
        check_collection(self.collection, "config field 'collection'")
        if not isinstance(self.database_path, (str, os.PathLike)) or not str(self.database_path):
            raise ConfigurationError("config field 'database_path' must be a non-empty path")
        for name in ("verbose", "strict_remote", "strict_store", "mmap"):
            value = getattr(self, name)
            if not isinstance(value, bool) and not (name == "verbose" and value is None):
                raise ConfigurationError(f"config field {name!r} must be True or False"
                                         + (" (or None: in IPython and Jupyter only)" if name == "verbose" else ""))
        _check_seconds("timeout", self.timeout)
        # The server takes leases of 0.5 s to an hour.
        _check_seconds("lease_ttl", self.lease_ttl, 0.5, 3600.0)
        if self.max_wait is not None:
            _check_seconds("max_wait", self.max_wait, zero=True)
        if self.url is not None:
            object.__setattr__(self, "url", ",".join(u.strip().rstrip("/") for u in str(self.url).split(",")))
        if self.max_size is not None and (type(self.max_size) is not int or self.max_size < 0):
            # "50GB", "512MiB" or a number of bytes; stored as bytes.
            object.__setattr__(self, "max_size", parse_size(self.max_size, "config field 'max_size'"))

    def __repr__(self) -> str:
        fields = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "password" and value is not None:
                fields.append("password='***'")
            elif f.name == "url" and value is not None:
                fields.append(f"url={mask_url(value)!r}")
            else:
                fields.append(f"{f.name}={value!r}")
        return f"Config({', '.join(fields)})"

    # Computed once per Config value (a frozen dataclass may still fill its __dict__):
    # a cache hit asks for these several times.
    @functools.cached_property
    def database_dir(self) -> Path:
        """The database directory, with ``~`` expanded."""
        return Path(os.path.expanduser(os.fspath(self.database_path)))

    @functools.cached_property
    def content_path(self) -> Path:
        """The content directory: ``content_dir``, or ``<database_path>/content``."""
        if self.content_dir is not None:
            return Path(os.path.expanduser(os.fspath(self.content_dir)))
        return self.database_dir / "content"

    @functools.cached_property
    def identity_path(self) -> Path:
        """Where this user's writer key and trust list live: ``identity_dir``, or ``<database_path>/identity``."""
        if self.identity_dir is not None:
            return Path(os.path.expanduser(os.fspath(self.identity_dir)))
        return self.database_dir / "identity"

    def replace(self, **fields: Any) -> Config:
        """A copy with ``fields`` changed; unknown names raise ConfigurationError."""
        _check_names(fields)
        return dataclasses.replace(self, **fields) if fields else self

    def masked(self) -> dict[str, Any]:
        """The fields as a dict, with the password masked: for display."""
        out = dataclasses.asdict(self)
        if out["password"] is not None:
            out["password"] = "***"
        if out["url"] is not None:
            out["url"] = mask_url(out["url"])
        return out

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """The defaults, overridden by any PAIRIO_* environment variables."""
        environ = os.environ if environ is None else environ
        _warn_unknown_variables(environ)
        fields: dict[str, Any] = {}
        for name, var in ENV_VARS.items():
            raw = environ.get(var)
            if raw is None or raw == "":
                continue
            if name in ("verbose", "strict_remote", "strict_store", "mmap"):
                fields[name] = _parse_bool(var, raw)
            elif name in ("timeout", "lease_ttl", "max_wait"):
                try:
                    fields[name] = float(raw)
                except ValueError:
                    raise ConfigurationError(f"{var} must be a number, got {raw!r}") from None
            else:
                fields[name] = raw
        # Check each variable alone, so an error names the variable the user set.
        for name, value in fields.items():
            try:
                cls(**{name: value})
            except ConfigurationError as exc:
                raise ConfigurationError(f"{ENV_VARS[name]}: {exc}") from None
        return cls(**fields)


_warned_variables: set[str] = set()  # unknown PAIRIO_* variables this process has warned about


def _warn_unknown_variables(environ: Mapping[str, str]) -> None:
    """Warn once per process about each PAIRIO_* variable pairio does not know (a typo is silently
    ignored otherwise), naming the closest known one."""
    known = (*ENV_VARS.values(), *OTHER_ENV_VARS)
    for var in environ:
        if (not var.startswith("PAIRIO_") or var in known or var.startswith(_UNCHECKED_PREFIXES)
                or var in _warned_variables):
            continue
        import difflib  # only when there is a variable to match

        from .user_warnings import warn_user

        _warned_variables.add(var)
        close = difflib.get_close_matches(var, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(sorted(ENV_VARS.values()))}"
        warn_user(f"environment variable {var} is not a pairio setting and is ignored; {hint} (said once)")


# The password part of a URL's user info: http://user:PASSWORD@host
_URL_PASSWORD = re.compile(r"(//[^/?#@:]*:)[^/?#@]*@")


def mask_url(url: str) -> str:
    """``url`` (or several, comma-separated) with any password written into it (``http://user:pw@host``) masked."""
    return ",".join(_URL_PASSWORD.sub(r"\1***@", part, count=1) for part in url.split(","))


def _check_seconds(name: str, value: object, low: float = 0.0, high: float = math.inf,
                   zero: bool = False) -> None:
    """``value`` must be a finite number of seconds above ``low`` (or 0, if ``zero``) and at most ``high``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        ok = False
    else:
        ok = (value >= low if zero or low > 0 else value > low) and value <= high
    if not ok:
        bound = f"from {low:g} to {high:g}" if math.isfinite(high) else ("0 or more" if zero else "positive")
        raise ConfigurationError(
            f"config field {name!r} must be a finite number of seconds, {bound}, got {value!r}")


def _names_list(name: str, value: object) -> tuple[str, ...]:
    """A list of names given as a list, a tuple or a comma-separated str, as a tuple of str."""
    if isinstance(value, str):
        value = [v for v in (v.strip() for v in value.split(",")) if v]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigurationError(f"config field {name!r} must be a list of names (or a comma-separated str), "
                                 f"got {value!r}")
    return tuple(v.strip() for v in value)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigurationError(
            f"config field {name!r} is {value!r}; allowed: {', '.join(choices)}"
        )


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Config))


def _check_names(fields: Mapping[str, Any]) -> None:
    unknown = set(fields) - _FIELD_NAMES
    if unknown:
        raise ConfigurationError(
            f"unknown config field(s): {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_FIELD_NAMES))}"
        )


def _parse_bool(var: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{var} must be true or false, got {raw!r}")


# The process-wide default, read from the environment at first use (so a bad
# PAIRIO_* variable is reported by the call that needs it, not by `import pairio`).
# Rebinding it is the only way it changes; the value itself is immutable.
# _generation lets scoped overrides notice a rebinding.
_default: Config | None = None
_generation = 0


def _default_config() -> Config:
    global _default
    if _default is None:
        _default = Config.from_env()
    return _default

# (overrides, resolved config, generation of _default it was resolved against)
_scoped: contextvars.ContextVar[tuple[dict[str, Any], Config, int] | None] = contextvars.ContextVar(
    "pairio_config", default=None
)


def get_config(**overrides: Any) -> Config:
    """The effective config here: default, then ``with config()`` blocks, then ``overrides``."""
    scoped = _scoped.get()
    if scoped is None:
        current = _default if _default is not None else _default_config()
    elif scoped[2] == _generation:
        current = scoped[1]
    else:  # set_config() was called inside a `with config()` block
        current = _default_config().replace(**scoped[0])
    return current.replace(**overrides) if overrides else current


def set_config(**fields: Any) -> Config:
    """Change fields of the process-wide default config; returns the new default."""
    global _default, _generation
    _default = _default_config().replace(**fields)
    _generation += 1
    return _default


def reset_config() -> Config:
    """Reset the process-wide default to the environment's values; returns it."""
    global _default, _generation
    _default = Config.from_env()
    _generation += 1
    return _default


@contextlib.contextmanager
def config(**fields: Any) -> Iterator[Config]:
    """Override config fields for the duration of a ``with`` block (thread/task local)."""
    _check_names(fields)
    outer = _scoped.get()
    merged = {**outer[0], **fields} if outer is not None else dict(fields)
    resolved = _default_config().replace(**merged)
    token = _scoped.set((merged, resolved, _generation))
    try:
        yield resolved
    finally:
        _scoped.reset(token)
