"""Key/value stores: the interface, the embedded SQLite store, the directory store, the HTTP client.

:func:`local_store` and :func:`remote_store` hand out one store object per
location, so connections and sessions are reused across calls.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import TYPE_CHECKING, Any

from ..config import DEFAULT_DATABASE_PATH, Config
from ..errors import ConfigurationError
from ..files import make_private_dir
from ..identity import load_identity
from .base import KeyValueStore
from .embedded import DATABASE_FILENAME, EmbeddedStore

if TYPE_CHECKING:
    from .directory import DirectoryStore

__all__ = ["KeyValueStore", "EmbeddedStore", "DirectoryStore", "local_store", "remote_store"]

logger = logging.getLogger("pairio")
_lock = threading.Lock()
_local_stores: dict[tuple[str, str], EmbeddedStore | DirectoryStore] = {}
_remote_stores: dict[tuple, KeyValueStore] = {}


def __getattr__(name: str) -> Any:
    if name == "DirectoryStore":  # imported where it is used: `import pairio` stays light
        from .directory import DirectoryStore

        return DirectoryStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def local_store(config: Config) -> EmbeddedStore | DirectoryStore:
    """The local store at ``config.database_path``: the embedded (SQLite) store, or the directory
    store where ``config.store_backend`` says so or, by default, where the directory is on a
    network or FUSE file system (:func:`pairio.filesystems.shared_file_system`)."""
    try:
        return _local_stores[config.database_path, config.store_backend]
    except KeyError:
        with _lock:
            ident = (config.database_path, config.store_backend)
            store = _local_stores.get(ident)
            if store is None:
                if config.database_path == DEFAULT_DATABASE_PATH:
                    make_private_dir(config.database_dir)
                store = _local_stores[ident] = _open_local(config)
            return store


def _open_local(config: Config) -> EmbeddedStore | DirectoryStore:
    from .directory import DirectoryStore

    directory = config.database_dir
    if config.store_backend == "sqlite":
        return EmbeddedStore(directory, config.content_path)
    if config.store_backend == "directory":
        return DirectoryStore(directory)
    from ..filesystems import shared_file_system

    found = shared_file_system(directory)
    if found is None:
        return EmbeddedStore(directory, config.content_path)
    left = (f"; the SQLite database {DATABASE_FILENAME} there is not used (store_backend='sqlite' uses "
            "it, in rollback-journal mode, safe for one host at a time)"
            if (directory / DATABASE_FILENAME).exists() else "")
    logger.warning(
        "pairio: the store %s is on %s, where SQLite's WAL mode does not work across hosts: using the "
        "directory store (pairs as files, safe for many hosts; no records, so no ls/show/why details "
        "and no max_size eviction)%s. Set store_backend (PAIRIO_STORE_BACKEND) to 'directory' to "
        "choose it and silence this, or to 'sqlite'.", directory, found, left)
    return DirectoryStore(directory)


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
    # Per user and writer too: the pairs this store sets are signed with the writer's key.
    identity = (config.url, config.channel, config.password, config.timeout, str(config.identity_path),
                config.writer_name)
    store = _remote_stores.get(identity)
    if store is None:
        from .remote import RemoteStore

        with _lock:
            store = _remote_stores.get(identity)
            if store is None:
                store = _remote_stores[identity] = RemoteStore(
                    config.url, config.channel, config.password, timeout=config.timeout,
                    signer=functools.partial(load_identity, config.identity_path, config.writer_name),
                )
    return store
