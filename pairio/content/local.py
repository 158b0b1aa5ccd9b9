"""One content store and one hash cache per location, shared by every call in the process."""

from __future__ import annotations

import threading
from pathlib import Path

from ..config import DEFAULT_DATABASE_PATH, Config
from ..files import make_private_dir
from .hash_cache import HashCache
from .store import ContentStore

_lock = threading.Lock()
_stores: dict[tuple[str | None, str], ContentStore] = {}
_hash_caches: dict[Path, HashCache] = {}


def file_hash_cache(config: Config) -> HashCache:
    """The hash cache in ``config.database_dir``."""
    key = config.database_dir
    cache = _hash_caches.get(key)
    if cache is None:
        with _lock:
            cache = _hash_caches.get(key)
            if cache is None:
                cache = _hash_caches[key] = HashCache(key)
    return cache


def content_store(config: Config) -> ContentStore:
    """The content store at ``config.content_path`` (using the hash cache of ``config.database_dir``)."""
    key = (config.content_dir, config.database_path)
    store = _stores.get(key)
    if store is None:
        cache = file_hash_cache(config)
        with _lock:
            store = _stores.get(key)
            if store is None:
                if config.database_path == DEFAULT_DATABASE_PATH:
                    make_private_dir(config.database_dir)
                store = _stores[key] = ContentStore(config.content_path, hash_cache=cache)
    return store
