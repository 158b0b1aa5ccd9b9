"""The server's settings: ``pairio.json`` loaded and validated into frozen values.

Every problem is reported as a ConfigurationError naming the field, e.g.
``pairio.json: channels[1].collections[0].maxNumSetsPerMinute must be ...``.
Passwords are kept out of every repr and message.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ..hashing import MAX_KEY_LENGTH, is_valid_unicode
from ..signing import CHANNEL_PATTERN

SETTINGS_FILENAME = "pairio.json"
# How ``pairio serve --workers N`` tells its worker processes which directory they serve.
SERVE_DIRECTORY_VARIABLE = "PAIRIO_SERVE_DIRECTORY"
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_PAIRS_PER_REQUEST = 10_000
# A request head (request line and headers) longer than this is answered 431 (see pairio.server.http).
MAX_HEADER_BYTES = 64 << 10
# A rate beyond any server's reach; larger integers would overflow the limiter's floats.
MAX_PER_MINUTE = 10**9
# The status page's views (HTML or JSON) a channel may ask for per minute, unless pairio.json says.
DEFAULT_STATUS_VIEWS_PER_MINUTE = 300
BACKENDS = ("embedded",)
CONTENT_BACKENDS = ("directory", "s3")
# S3's rule for bucket names (3 to 63 lowercase letters, digits, dots and hyphens).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
DEFAULT_MAX_OBJECT_BYTES = 16 << 30
DEFAULT_MAX_UPLOAD_BYTES_PER_DAY = 256 << 30
MAX_BYTES_SETTING = 1 << 50  # a petabyte: any larger limit is a typo


@dataclasses.dataclass(frozen=True)
class CollectionSettings:
    """What one channel may do with one collection, per minute."""

    name: str
    max_gets_per_minute: int
    max_sets_per_minute: int


@dataclasses.dataclass(frozen=True)
class ContentRights:
    """What one channel may do with the content (files by SHA-1)."""

    read: bool = False
    write: bool = False
    max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES
    max_upload_bytes_per_day: int = DEFAULT_MAX_UPLOAD_BYTES_PER_DAY


@dataclasses.dataclass(frozen=True)
class ChannelSettings:
    """A channel: its password, the collections it may use and its rights on content."""

    name: str
    password: str = dataclasses.field(repr=False)
    collections: Mapping[str, CollectionSettings]
    content: ContentRights = ContentRights()
    # View only: the channel may look (get, the status page) but never write (set, delete, leases, content).
    view: bool = False
    # The status page's views (HTML or JSON) it may ask for per minute; past it, 429.
    max_status_views_per_minute: int = DEFAULT_STATUS_VIEWS_PER_MINUTE


@dataclasses.dataclass(frozen=True)
class StoreSettings:
    """Where the pairs live: ``embedded``, the SQLite store in ``path`` (relative to the server directory)."""

    backend: str = "embedded"
    path: Path | None = None


@dataclasses.dataclass(frozen=True)
class ContentSettings:
    """Where the content lives: ``directory``, a content store in ``path`` (relative to the server
    directory), or ``s3``, objects in ``bucket`` under ``prefix`` (at ``endpoint``, an S3-compatible
    service, or AWS in ``region``; credentials from the standard AWS environment and files)."""

    backend: str = "directory"
    path: Path | None = None
    bucket: str | None = None
    prefix: str = ""
    endpoint: str | None = None
    region: str | None = None


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """Everything in pairio.json, validated."""

    directory: Path
    channels: Mapping[str, ChannelSettings]
    store: StoreSettings
    content: ContentSettings = ContentSettings()
    legacy: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # A postgresql:// URL: the pairs and the coordination of replicas live there instead of
    # in the embedded store and this process's memory. Kept out of repr (it may hold a password).
    database: str | None = dataclasses.field(default=None, repr=False)

    @property
    def shared(self) -> bool:
        """True if several server processes may serve these settings at once."""
        return self.database is not None

    @property
    def passwords(self) -> dict[str, str]:
        """Channel name -> password."""
        return {name: channel.password for name, channel in self.channels.items()}


def load_settings(directory: str | os.PathLike[str]) -> ServerSettings:
    """Read and validate ``DIR/pairio.json``."""
    directory = Path(directory)
    path = directory / SETTINGS_FILENAME
    if not directory.is_dir():
        raise ConfigurationError(f"server directory {str(directory)!r} does not exist or is not a directory")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(
            f"{str(path)!r} is missing (see server/example_pairio.json)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read {str(path)!r}: {exc}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"{SETTINGS_FILENAME} is not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
        ) from None
    return parse_settings(obj, directory)


def parse_settings(obj: Any, directory: str | os.PathLike[str]) -> ServerSettings:
    """Validate the parsed JSON of pairio.json."""
    directory = Path(directory)
    _require(isinstance(obj, dict), "(top level)", "must be a JSON object")
    _no_unknown(obj, "", {"channels", "content", "database", "legacy", "maxBodyBytes", "store"})
    channels_obj = obj.get("channels")
    _require(isinstance(channels_obj, list) and channels_obj, "channels", "must be a non-empty list")
    channels: dict[str, ChannelSettings] = {}
    for i, channel_obj in enumerate(channels_obj):
        channel = _parse_channel(channel_obj, f"channels[{i}]")
        _require(channel.name not in channels, f"channels[{i}].name",
                 f"repeats the channel name {channel.name!r}")
        channels[channel.name] = channel
    legacy = obj.get("legacy", False)
    _require(isinstance(legacy, bool), "legacy", "must be true or false")
    max_body = obj.get("maxBodyBytes", DEFAULT_MAX_BODY_BYTES)
    _require(_is_int(max_body) and 1024 <= max_body <= 1 << 30, "maxBodyBytes",
             "must be an integer from 1024 to 1073741824")
    database = obj.get("database")
    if database is not None:
        _require(isinstance(database, str) and database.startswith(("postgresql://", "postgres://")),
                 "database", "must be a URL starting with postgresql:// (e.g. postgresql://pairio@db/pairio)")
        _require("store" not in obj, "store",
                 "cannot be given with database: the pairs live in the database (remove one of them)")
    return ServerSettings(
        directory=directory,
        channels=channels,
        store=_parse_store(obj.get("store", {}), directory),
        content=_parse_content(obj.get("content", {}), directory),
        legacy=legacy,
        max_body_bytes=max_body,
        database=database,
    )


def _parse_channel(obj: Any, where: str) -> ChannelSettings:
    _require(isinstance(obj, dict), where, "must be a JSON object")
    _no_unknown(obj, where, {"name", "password", "collections", "view", "maxStatusViewsPerMinute", *_CONTENT_FIELDS})
    view = obj.get("view", False)
    _require(isinstance(view, bool), f"{where}.view", "must be true or false")
    views = obj.get("maxStatusViewsPerMinute", DEFAULT_STATUS_VIEWS_PER_MINUTE)
    _require(_is_int(views) and 1 <= views <= MAX_PER_MINUTE, f"{where}.maxStatusViewsPerMinute",
             f"must be a whole number from 1 to {MAX_PER_MINUTE}")
    name = obj.get("name")
    _require(isinstance(name, str) and CHANNEL_PATTERN.fullmatch(name), f"{where}.name",
             "must be 1 to 80 printable ASCII characters, with no space at either end "
             "(clients send it in an HTTP header)")
    password = obj.get("password")
    _require(isinstance(password, str) and len(password) >= 8, f"{where}.password",
             "must be a string of at least 8 characters")
    _require(is_valid_unicode(password), f"{where}.password", "is not valid Unicode text (it holds a lone surrogate)")
    collections_obj = obj.get("collections")
    _require(isinstance(collections_obj, list), f"{where}.collections", "must be a list")
    collections: dict[str, CollectionSettings] = {}
    for j, c in enumerate(collections_obj):
        cwhere = f"{where}.collections[{j}]"
        _require(isinstance(c, dict), cwhere, "must be a JSON object")
        _no_unknown(c, cwhere, {"name", "maxNumGetsPerMinute", "maxNumSetsPerMinute"})
        cname = c.get("name")
        _require(_is_name(cname), f"{cwhere}.name",
                 f"must be a non-empty string of at most {MAX_KEY_LENGTH} characters")
        _require(is_valid_unicode(cname), f"{cwhere}.name", "is not valid Unicode text (it holds a lone surrogate)")
        _require(cname not in collections, f"{cwhere}.name", f"repeats the collection {cname!r}")
        limits = []
        for field in ("maxNumGetsPerMinute", "maxNumSetsPerMinute"):
            if view and field == "maxNumSetsPerMinute":
                _require(c.get(field, 0) == 0, f"{cwhere}.{field}",
                         "must be 0 or left out: the channel is view only (\"view\": true)")
                limits.append(0)
                continue
            value = c.get(field)
            _require(_is_int(value) and 0 <= value <= MAX_PER_MINUTE, f"{cwhere}.{field}",
                     f"must be a non-negative integer of at most {MAX_PER_MINUTE}")
            limits.append(value)
        collections[cname] = CollectionSettings(cname, limits[0], limits[1])
    rights = _parse_rights(obj, where)
    _require(not (view and rights.write), f"{where}.writeContent",
             "must be false or left out: the channel is view only (\"view\": true)")
    return ChannelSettings(name=name, password=password, collections=collections, content=rights, view=view,
                           max_status_views_per_minute=views)


_CONTENT_FIELDS = ("readContent", "writeContent", "maxObjectBytes", "maxUploadBytesPerDay")


def _parse_rights(obj: dict, where: str) -> ContentRights:
    values = {}
    for field in ("readContent", "writeContent"):
        value = values[field] = obj.get(field, False)
        _require(isinstance(value, bool), f"{where}.{field}", "must be true or false")
    for field, default in (("maxObjectBytes", DEFAULT_MAX_OBJECT_BYTES),
                           ("maxUploadBytesPerDay", DEFAULT_MAX_UPLOAD_BYTES_PER_DAY)):
        value = values[field] = obj.get(field, default)
        _require(_is_int(value) and 0 <= value <= MAX_BYTES_SETTING, f"{where}.{field}",
                 f"must be a number of bytes from 0 to {MAX_BYTES_SETTING}")
    return ContentRights(values["readContent"], values["writeContent"], values["maxObjectBytes"],
                         values["maxUploadBytesPerDay"])


def _parse_store(obj: Any, directory: Path) -> StoreSettings:
    _require(isinstance(obj, dict), "store", "must be a JSON object")
    _no_unknown(obj, "store", {"backend", "path"})
    backend = obj.get("backend", "embedded")
    _require(backend in BACKENDS, "store.backend", f"must be one of {', '.join(BACKENDS)}")
    path = obj.get("path", "store")
    _require(isinstance(path, str) and path, "store.path", "must be a non-empty path")
    return StoreSettings(backend, path=directory / os.path.expanduser(path))


def _parse_content(obj: Any, directory: Path) -> ContentSettings:
    _require(isinstance(obj, dict), "content", "must be a JSON object")
    backend = obj.get("backend", "directory")
    _require(backend in CONTENT_BACKENDS, "content.backend", f"must be one of {', '.join(CONTENT_BACKENDS)}")
    if backend == "s3":
        return _parse_s3(obj)
    _no_unknown(obj, "content", {"backend", "path"})
    path = obj.get("path", "content")
    _require(isinstance(path, str) and path, "content.path", "must be a non-empty path")
    return ContentSettings(backend, path=directory / os.path.expanduser(path))


def _parse_s3(obj: dict) -> ContentSettings:
    _no_unknown(obj, "content", {"backend", "bucket", "prefix", "endpoint", "region"})
    bucket = obj.get("bucket")
    _require(isinstance(bucket, str) and _BUCKET.fullmatch(bucket), "content.bucket",
             "must be an S3 bucket name (3 to 63 lowercase letters, digits, dots and hyphens)")
    prefix = obj.get("prefix", "")
    _require(isinstance(prefix, str) and len(prefix) <= 512 and not prefix.startswith("/"), "content.prefix",
             "must be a key prefix of at most 512 characters, not starting with / (e.g. \"pairio/\")")
    endpoint = obj.get("endpoint")
    _require(endpoint is None or (isinstance(endpoint, str) and endpoint.startswith(("http://", "https://"))),
             "content.endpoint", "must be the URL of an S3-compatible service (https://...), or left out for AWS")
    region = obj.get("region")
    _require(region is None or (isinstance(region, str) and region), "content.region",
             "must be a region name such as \"us-east-1\"")
    return ContentSettings("s3", bucket=bucket, prefix=prefix, endpoint=endpoint, region=region)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_name(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_KEY_LENGTH


def _no_unknown(obj: dict, where: str, known: set[str]) -> None:
    unknown = sorted(set(obj) - known)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigurationError(
            f"{SETTINGS_FILENAME}: unknown field {prefix}{unknown[0]} (known: {', '.join(sorted(known))})"
        )


def _require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise ConfigurationError(f"{SETTINGS_FILENAME}: {field} {message}")
