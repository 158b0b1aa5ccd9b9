"""Key/value stores: the interface, the embedded SQLite store, the HTTP client.

:func:`local_store` and :func:`remote_store` hand out one store object per
location, so connections and sessions are reused across calls.
"""

from __future__ import annotations

import threading

from ..config import DEFAULT_DATABASE_PATH, Config
from ..errors import ConfigurationError
from ..files import make_private_dir
from .base import KeyValueStore
from .embedded import EmbeddedStore

__all__ = ["KeyValueStore", "EmbeddedStore", "local_store", "remote_store"]

_lock = threading.Lock()
_local_stores: dict[str, EmbeddedStore] = {}
_remote_stores: dict[tuple, KeyValueStore] = {}


def local_store(config: Config) -> EmbeddedStore:
    """The embedded store at ``config.database_path``."""
    try:
        return _local_stores[config.database_path]
    except KeyError:
        with _lock:
            store = _local_stores.get(config.database_path)
            if store is None:
                if config.database_path == DEFAULT_DATABASE_PATH:
                    make_private_dir(config.database_dir)
                store = _local_stores[config.database_path] = EmbeddedStore(config.database_dir)
            return store


def remote_store(config: Config) -> KeyValueStore:
    """The client of the pairio server at ``config.url``, signing as ``config.channel``."""
    if not config.url:
        raise ConfigurationError(
            "no server configured: get_from/set_to modes that use the remote store need "
            "url, channel and password (set_config(url=..., channel=..., password=...) "
            "or PAIRIO_URL, PAIRIO_CHANNEL, PAIRIO_PASSWORD)"
        )
    if not config.channel or config.password is None:
        raise ConfigurationError(
            f"server {config.url} is configured but channel or password is missing "
            "(set them with set_config(channel=..., password=...) or PAIRIO_CHANNEL, PAIRIO_PASSWORD)"
        )
    identity = (config.url, config.channel, config.password, config.timeout)
    store = _remote_stores.get(identity)
    if store is None:
        from .remote import RemoteStore

        with _lock:
            store = _remote_stores.get(identity)
            if store is None:
                store = _remote_stores[identity] = RemoteStore(
                    config.url, config.channel, config.password, timeout=config.timeout
                )
    return store
