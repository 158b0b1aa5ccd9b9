"""One content store and one hash cache per location, shared by every call in the process."""

from __future__ import annotations

import threading
from pathlib import Path

from ..config import DEFAULT_DATABASE_PATH, Config
from ..files import make_private_dir
from .hash_cache import HashCache
from .store import ContentStore

_lock = threading.Lock()
_stores: dict[tuple[str | None, str, bool], ContentStore] = {}
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
    """The content store at ``config.content_path`` (using the hash cache of ``config.database_dir``).
    With the directory store (``store_backend='directory'``) small results are files too."""
    key = (config.content_dir, config.database_path, config.store_backend == "directory")
    store = _stores.get(key)
    if store is None:
        cache = file_hash_cache(config)
        with _lock:
            store = _stores.get(key)
            if store is None:
                if config.database_path == DEFAULT_DATABASE_PATH:
                    make_private_dir(config.database_dir)
                store = ContentStore(config.content_path, hash_cache=cache)
                if key[2]:
                    store.inline_max = 0
                _stores[key] = store
    return store
