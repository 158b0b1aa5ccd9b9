"""pairio: compute every pipeline step once, ever.

A key/value store of hashes (``get``/``set``), a content store of files by SHA-1,
and a ``cached`` decorator built on both. This module is the public API.

``import pairio`` loads only the version and the error classes: every other public name is
imported from its submodule at its first use (``pairio.cached``, ``from pairio import get``),
and kept here (PEP 562).
"""

from __future__ import annotations

import sys
from types import ModuleType

from ._version import __version__
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

TYPE_CHECKING = False  # (not typing's: it costs `import pairio` a quarter of its time)
if TYPE_CHECKING:  # what type checkers and editors see: the names below, as if imported here
    from typing import Any

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
    from .hashing import key_string
    from .key_value import delete, get, get_many, set, set_many
    from .lifecycle.queries import entries, why
    from .lifecycle.records import Entry
    from .memo import BoundCachedMethod, CachedFunction, cached, reset_stats, stats
    from .memo.key import KEY_FORMAT
    from .memo.outbox import SyncReport, sync
    from .memo.refs import Ref
    from .memory import MemorizedFunc as MemorizedFunc
    from .memory import MemorizedResult as MemorizedResult
    from .memory import Memory as Memory

# Public name -> the submodule that defines it, imported at the name's first use.
_SUBMODULES = {
    **dict.fromkeys(("Config", "config", "get_config", "set_config", "reset_config"), "config"),
    **dict.fromkeys(("ContentURI", "content_store", "get_file_hash", "load_bytes", "load_dir", "load_file",
                     "load_object", "load_pickle", "load_text", "parse_uri", "read_dir", "store_bytes",
                     "store_dir", "store_file", "store_object", "store_pickle", "store_text"), "content"),
    "add_safe_globals": "content.safe_pickle",
    "key_string": "hashing",
    **dict.fromkeys(("get", "set", "delete", "get_many", "set_many"), "key_value"),
    **dict.fromkeys(("entries", "why"), "lifecycle.queries"),
    "Entry": "lifecycle.records",
    **dict.fromkeys(("cached", "CachedFunction", "BoundCachedMethod", "stats", "reset_stats"), "memo"),
    "KEY_FORMAT": "memo.key",
    "Ref": "memo.refs",
    **dict.fromkeys(("sync", "SyncReport"), "memo.outbox"),
    # Not in __all__ (pairio.Memory is the joblib.Memory drop-in; joblib loads with it).
    **dict.fromkeys(("Memory", "MemorizedFunc", "MemorizedResult"), "memory"),
}


# The table families lifecycle keeps in the embedded store register as their modules load: these
# names' modules open the store without them, so they load first, as when `import pairio` loaded
# everything (a store is made with all its tables; made later, they would need a writable store).
# A cached function's first call loads them itself.
_OPENS_STORES = ("key_value", "lifecycle.queries", "lifecycle.records", "memo.outbox")
# Content loaded as data only rebuilds a cached result's files with memo's own helper, which the
# safe unpickler learns of as memo.values loads: it loads with the content store's names.
_LOADS_RESULTS = ("content", "content.safe_pickle")


def __getattr__(name: str) -> Any:
    submodule = _SUBMODULES.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    if submodule in _OPENS_STORES:
        from .lifecycle import counts, schema  # noqa: F401
    elif submodule in _LOADS_RESULTS:
        from .memo import values  # noqa: F401

    value = globals()[name] = getattr(import_module(f"{__name__}.{submodule}"), name)
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


class _Pairio(ModuleType):
    """This module's class. ``pairio.config`` is the function ``config``, although a submodule
    has that name too: importing a submodule sets it as an attribute of its package, and the
    submodule ``pairio.config`` loads whenever anything first needs the configuration, which
    is no longer ``import pairio`` itself."""

    @property
    def config(self) -> Any:
        given = self.__dict__.get("config")
        if given is None or given is sys.modules.get(f"{__name__}.config"):
            from .config import config

            return config
        return given  # set by the program (a test's monkeypatch)

    @config.setter
    def config(self, value: Any) -> None:
        self.__dict__["config"] = value

    @config.deleter
    def config(self) -> None:
        self.__dict__.pop("config", None)


sys.modules[__name__].__class__ = _Pairio


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
