"""SHA-1 hashing shared by every layer: key canonicalisation, bytes and streams.

A dict or list key becomes the SHA-1 hex of its canonical JSON,
``json.dumps(key, sort_keys=True, separators=(',', ':'))`` in UTF-8: the formula
existing pairio clients use, so keys stay identical across clients.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any, BinaryIO

from .errors import ConfigurationError, InvalidKeyError, InvalidValueError

MAX_KEY_LENGTH = 80
MAX_VALUE_LENGTH = 80
MAX_COLLECTION_LENGTH = 80
CHUNK_SIZE = 1 << 20

_SHA1_HEX = re.compile(r"[0-9a-f]{40}")


def canonical_json(obj: Any) -> str:
    """The canonical JSON text of ``obj``: sorted keys, no spaces."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def sha1_hex(data: bytes | bytearray | memoryview) -> str:
    """SHA-1 hex digest of ``data``."""
    return hashlib.sha1(data).hexdigest()


def sha1_of_stream(stream: BinaryIO, chunk_size: int = CHUNK_SIZE) -> tuple[str, int]:
    """SHA-1 hex digest and size of everything left in a binary stream, read in chunks."""
    h = hashlib.sha1()
    size = 0
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    while True:
        n = stream.readinto(view)
        if not n:
            return h.hexdigest(), size
        h.update(view[:n])
        size += n


def sha1_of_chunks(chunks: Iterable[bytes]) -> str:
    """SHA-1 hex digest of the concatenation of ``chunks``."""
    h = hashlib.sha1()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


def is_sha1_hex(text: object) -> bool:
    """True if ``text`` is a 40-character lowercase hex string."""
    return isinstance(text, str) and len(text) == 40 and _SHA1_HEX.fullmatch(text) is not None


def is_valid_unicode(text: str) -> bool:
    """False if ``text`` holds a lone surrogate (as JSON and undecodable file names can), which
    cannot be encoded as UTF-8, stored, signed or sent."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def key_string(key: object) -> str:
    """The stored form of a key: a str as is, a dict, list or tuple as its canonical-JSON SHA-1.

    Raises InvalidKeyError for any other type, an empty or over-long str, or a
    dict/list that is not JSON-serialisable.
    """
    if type(key) is str:
        if 0 < len(key) <= MAX_KEY_LENGTH and (key.isascii() or is_valid_unicode(key)):
            return key
        if not key:
            raise InvalidKeyError("key must not be empty")
        if len(key) > MAX_KEY_LENGTH:
            raise InvalidKeyError(
                f"key is {len(key)} characters long; the limit is {MAX_KEY_LENGTH} "
                "(pass a dict or list to have it hashed)"
            )
        raise InvalidKeyError(f"key {key!r} is not valid Unicode text (it holds a lone surrogate)")
    if isinstance(key, (dict, list, tuple)):  # a tuple is a list, in JSON as in the original pairio
        try:
            # NaN and infinity are not JSON (json.dumps would write NaN, which other languages refuse).
            text = json.dumps(key, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except ValueError as exc:
            if "Out of range float" in str(exc):
                raise InvalidKeyError("key holds NaN or infinity, which are not JSON: "
                                      "use None or a string for them") from None
            raise InvalidKeyError(f"key is not JSON-serialisable: {exc}") from None
        except (TypeError, RecursionError) as exc:  # RecursionError: nested too deeply
            raise InvalidKeyError(f"key is not JSON-serialisable: {exc}") from None
        return sha1_hex(text.encode("utf-8"))
    if isinstance(key, str):  # a str subclass: normalise to a plain str
        return key_string(str(key))
    raise InvalidKeyError(
        f"key must be a str (at most {MAX_KEY_LENGTH} characters), dict, list or tuple; "
        f"got {type(key).__name__}"
    )


def key_strings(keys: list) -> list[str]:
    """The stored forms of ``keys`` (see :func:`key_string`), without repeats, in order.

    A batch of plain ASCII str keys of valid length, the common case, is checked in a few
    passes at C speed instead of key by key.
    """
    if (keys and all(type(k) is str for k in keys) and 0 < min(map(len, keys))
            and max(map(len, keys)) <= MAX_KEY_LENGTH and "".join(keys).isascii()):
        return list(dict.fromkeys(keys))
    return list(dict.fromkeys(map(key_string, keys)))


def check_value(value: object, key: str | None = None) -> str:
    """``value`` if it is a str of at most 80 characters, else InvalidValueError."""
    if type(value) is str and len(value) <= MAX_VALUE_LENGTH and (value.isascii() or is_valid_unicode(value)):
        return value
    where = f" for key {key!r}" if key is not None else ""
    if isinstance(value, str):
        if len(value) > MAX_VALUE_LENGTH:
            raise InvalidValueError(
                f"value{where} is {len(value)} characters long; the limit is {MAX_VALUE_LENGTH}"
            )
        if not is_valid_unicode(value):
            raise InvalidValueError(f"value{where} is not valid Unicode text (it holds a lone surrogate)")
        return str(value)
    raise InvalidValueError(
        f"value{where} must be a str of at most {MAX_VALUE_LENGTH} characters "
        f"(or None to delete); got {type(value).__name__}"
    )


def check_collection(collection: object, what: str = "collection") -> str:
    """``collection`` if it is a non-empty str of at most 80 characters, else ConfigurationError."""
    if (
        type(collection) is str
        and 0 < len(collection) <= MAX_COLLECTION_LENGTH
        and (collection.isascii() or is_valid_unicode(collection))
    ):
        return collection
    if not isinstance(collection, str) or not collection:
        raise ConfigurationError(
            f"{what} must be a non-empty str of at most {MAX_COLLECTION_LENGTH} characters, got {collection!r}"
        )
    if len(collection) > MAX_COLLECTION_LENGTH:
        raise ConfigurationError(
            f"{what} is {len(collection)} characters long; the limit is {MAX_COLLECTION_LENGTH}"
        )
    if not is_valid_unicode(collection):
        raise ConfigurationError(f"{what} {collection!r} is not valid Unicode text (it holds a lone surrogate)")
    return str(collection)
