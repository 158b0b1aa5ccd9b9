"""The content store: files by SHA-1 (``sha1://`` URIs), local, streamed and verified.

:func:`content_store` hands out one :class:`ContentStore` per content directory;
the ``store_*``/``load_*`` functions are thin calls on it.
"""

from __future__ import annotations

from .functions import (
    get_file_hash,
    load_bytes,
    load_dir,
    load_file,
    load_object,
    load_pickle,
    load_text,
    read_dir,
    store_bytes,
    store_dir,
    store_file,
    store_object,
    store_pickle,
    store_text,
)
from .hash_cache import HashCache
from .local import content_store, file_hash_cache
from .store import ContentStore, FsckReport, ObjectWriter
from .uri import ContentURI, dir_uri, file_uri, parse_uri

__all__ = [
    "ContentStore",
    "ContentURI",
    "FsckReport",
    "HashCache",
    "ObjectWriter",
    "content_store",
    "dir_uri",
    "file_uri",
    "get_file_hash",
    "file_hash_cache",
    "load_bytes",
    "load_dir",
    "load_file",
    "load_object",
    "load_pickle",
    "load_text",
    "parse_uri",
    "read_dir",
    "store_bytes",
    "store_dir",
    "store_file",
    "store_object",
    "store_pickle",
    "store_text",
]
