"""pairio: compute every pipeline step once, ever.

A key/value store of hashes (``get``/``set``), a content store of files by SHA-1,
and a ``cached`` decorator built on both. This module is the public API.
"""

from ._version import __version__
from .config import Config, config, get_config, reset_config, set_config
from .content import (
    ContentURI,
    content_store,
    get_file_hash,
    load_bytes,
    load_dir,
    load_file,
    load_object,
    load_pickle,
    load_text,
    parse_uri,
    read_dir,
    store_bytes,
    store_dir,
    store_file,
    store_object,
    store_pickle,
    store_text,
)
from .content.safe_pickle import add_safe_globals
from .errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContentFormatError,
    ContentNotFoundError,
    CorruptContentError,
    InvalidInputError,
    InvalidKeyError,
    InvalidManifestError,
    InvalidPathError,
    InvalidURIError,
    InvalidValueError,
    PairioError,
    PermissionDeniedError,
    RateLimitedError,
    RemoteError,
    ServerUnavailableError,
    StoreNotWritableError,
    StoreUnavailableError,
    UnhashableArgumentError,
    UnstorableResultError,
    UntrustedContentError,
)
from .hashing import key_string
from .key_value import delete, get, get_many, set, set_many
from .lifecycle.queries import entries, why
from .lifecycle.records import Entry
from .memo import BoundCachedMethod, CachedFunction, cached, reset_stats, stats
from .memo.refs import Ref


def __getattr__(name: str):
    # Rarely used names whose modules load on first use (PEP 562), not with ``import pairio``.
    if name == "KEY_FORMAT":
        from .memo.key import KEY_FORMAT

        return KEY_FORMAT
    if name in ("sync", "SyncReport"):
        from .memo import outbox

        return getattr(outbox, name)
    if name in ("Memory", "MemorizedFunc", "MemorizedResult"):
        from . import memory  # loads joblib, when installed: only on first use of pairio.Memory

        return getattr(memory, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "__version__",
    # key/value
    "get",
    "set",
    "delete",
    "add_safe_globals",
    "UntrustedContentError",
    "get_many",
    "set_many",
    "key_string",
    # config
    "Config",
    "config",
    "get_config",
    "set_config",
    "reset_config",
    # content store
    "store_file",
    "store_text",
    "store_bytes",
    "store_object",
    "store_pickle",
    "store_dir",
    "read_dir",
    "load_dir",
    "load_file",
    "load_text",
    "load_bytes",
    "load_object",
    "load_pickle",
    "get_file_hash",
    "parse_uri",
    "ContentURI",
    "content_store",
    "InvalidPathError",
    # cached decorator
    "cached",
    "Ref",
    "CachedFunction",
    "BoundCachedMethod",
    "stats",
    "reset_stats",
    "KEY_FORMAT",
    # living with the cache
    "entries",
    "why",
    "Entry",
    "sync",
    "SyncReport",
    # errors
    "PairioError",
    "InvalidKeyError",
    "InvalidValueError",
    "ConfigurationError",
    "InvalidURIError",
    "InvalidManifestError",
    "InvalidInputError",
    "UnhashableArgumentError",
    "UnstorableResultError",
    "StoreNotWritableError",
    "StoreUnavailableError",
    "ContentNotFoundError",
    "CorruptContentError",
    "ContentFormatError",
    "RemoteError",
    "AuthenticationError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServerUnavailableError",
    "BadRequestError",
]
