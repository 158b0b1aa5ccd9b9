"""Request signatures: the one place that builds and checks them, for client and server.

A request is signed with HMAC-SHA256, keyed by the channel's password, over the
canonical string::

    channel \\n METHOD \\n path \\n sorted query \\n sha256(body) hex \\n timestamp \\n nonce

carried in the ``X-Pairio-*`` headers. ``path`` is the API path (``/api/v1/get``),
relative to the server's root, so a reverse proxy may mount the server under a
prefix. The channel is signed too, so a signature is valid for one channel only.
The password itself never crosses the wire.

The body's digest is its SHA-256 hex, except for a content upload
(``PUT /api/v1/content/sha1/<hash>``), whose digest is the content's own SHA-1
(``<hash>``): the client signs without a second pass over the file, and the
server, which hashes the body while it receives it, refuses a body that does not
match, so the signature still covers the body.

The server rejects a timestamp more than :data:`MAX_CLOCK_SKEW` seconds off and a
nonce it has already seen (:class:`NonceCache` remembers nonces for as long as
their timestamp is acceptable, so a replay is caught for its whole lifetime).

The legacy protocol of older pairio clients is here too (:func:`legacy_signature`);
see server/README.md for why it is weaker.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, quote

from .hashing import canonical_json

HEADER_CHANNEL = "X-Pairio-Channel"
HEADER_TIMESTAMP = "X-Pairio-Timestamp"
HEADER_NONCE = "X-Pairio-Nonce"
HEADER_SIGNATURE = "X-Pairio-Signature"

MAX_CLOCK_SKEW = 300  # seconds a request's timestamp may differ from the server's clock
NONCE_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")
# A channel name travels in a header: printable ASCII (HTTP clients refuse, or
# garble, other text there), no space at either end (HTTP strips it), 1 to 80 characters.
CHANNEL_PATTERN = re.compile(r"[!-~](?:[ -~]{0,78}[!-~])?")
_TIMESTAMP_PATTERN = re.compile(r"[0-9]{1,12}")
_SIGNATURE_PATTERN = re.compile(r"[0-9a-f]{64}")
_EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()


def body_sha256(body: bytes) -> str:
    """SHA-256 hex of a request body."""
    return hashlib.sha256(body).hexdigest() if body else _EMPTY_BODY_SHA256


def canonical_query(query: str | Mapping[str, str]) -> str:
    """The query string with its parameters sorted and percent-encoded uniformly."""
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else list(query.items())
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(pairs))


def compute_signature(
    password: str,
    channel: str,
    method: str,
    path: str,
    query: str | Mapping[str, str],
    body_hash: str,
    timestamp: str,
    nonce: str,
) -> str:
    """The HMAC-SHA256 hex signature of one request."""
    message = "\n".join(
        (channel, method.upper(), path, canonical_query(query), body_hash, timestamp, nonce)
    )
    return hmac.new(password.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def sign_request(
    channel: str,
    password: str,
    method: str,
    path: str,
    body: bytes = b"",
    query: str | Mapping[str, str] = "",
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
    body_hash: str | None = None,
) -> dict[str, str]:
    """The headers that sign a request: channel, timestamp, a fresh nonce and the signature.

    ``body_hash`` replaces the SHA-256 of ``body`` as the body's digest (a content
    upload signs with the content's SHA-1 and streams the body separately).
    """
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = secrets.token_urlsafe(18) if nonce is None else nonce
    digest = body_sha256(body) if body_hash is None else body_hash
    signature = compute_signature(password, channel, method, path, query, digest, ts, nonce)
    return {
        HEADER_CHANNEL: channel,
        HEADER_TIMESTAMP: ts,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: signature,
    }


# The message of a well-formed, timely request whose signature is not its channel's (a wrong password).
INVALID_SIGNATURE = "invalid signature for this channel and request"


class SignatureError(Exception):
    """A request's signature is missing, malformed, wrong, stale or replayed.

    The message is for the server's log and the 401 body; it never says whether
    the channel exists.
    """


def verify_request(
    headers: Mapping[str, str],
    password_of: Mapping[str, str],
    method: str,
    path: str,
    query: str,
    body: bytes,
    add_nonce: Callable[[str, str, float, float], bool],
    now: float | None = None,
    body_hash: str | None = None,
) -> str:
    """The channel of a correctly signed request, or SignatureError.

    ``headers`` is looked up with lowercase names (as ASGI gives them).
    ``password_of`` maps channel names to passwords. An unknown channel is checked
    against a dummy password, so it fails exactly like a wrong password.
    ``add_nonce(channel, nonce, expires_at, now)`` records a nonce, False on a replay
    (:meth:`NonceCache.add`, or the server's coordination backend).
    ``body_hash``, if given, is the body's digest instead of the SHA-256 of ``body``
    (a content upload: the caller then checks that the body matches it).
    """
    channel = headers.get(HEADER_CHANNEL.lower())
    timestamp = headers.get(HEADER_TIMESTAMP.lower())
    nonce = headers.get(HEADER_NONCE.lower())
    signature = headers.get(HEADER_SIGNATURE.lower())
    if not channel or timestamp is None or nonce is None or signature is None:
        raise SignatureError(
            f"request is not signed: headers {HEADER_CHANNEL}, {HEADER_TIMESTAMP}, "
            f"{HEADER_NONCE} and {HEADER_SIGNATURE} are required"
        )
    if not _TIMESTAMP_PATTERN.fullmatch(timestamp):
        raise SignatureError(f"header {HEADER_TIMESTAMP} must be whole seconds since the epoch")
    if not NONCE_PATTERN.fullmatch(nonce):
        raise SignatureError(f"header {HEADER_NONCE} must be 16 to 64 characters of [A-Za-z0-9_-]")
    now = time.time() if now is None else now
    if abs(int(timestamp) - now) > MAX_CLOCK_SKEW:
        raise SignatureError(
            f"header {HEADER_TIMESTAMP} is more than {MAX_CLOCK_SKEW} seconds off the server's "
            "clock (check the client's clock)"
        )
    password = password_of.get(channel)
    expected = compute_signature(
        _DUMMY_PASSWORD if password is None else password,
        channel, method, path, query, body_sha256(body) if body_hash is None else body_hash,
        timestamp, nonce,
    )
    # compare_digest needs ASCII; a malformed signature is compared as "" (and fails).
    valid = hmac.compare_digest(expected, signature if _SIGNATURE_PATTERN.fullmatch(signature) else "")
    if not valid or password is None:
        raise SignatureError(INVALID_SIGNATURE)
    # Only a valid signature reaches the nonce cache, so strangers cannot fill it.
    if not add_nonce(channel, nonce, int(timestamp) + MAX_CLOCK_SKEW, now):
        raise SignatureError(f"header {HEADER_NONCE} was already used (replayed request)")
    return channel


# Unknown channels are verified against this, so they cost the same as a wrong password.
_DUMMY_PASSWORD = secrets.token_hex(32)


class NonceCacheFull(Exception):
    """The nonce cache holds its maximum of live nonces; the server is overloaded."""


class NonceCache:
    """The nonces seen within the clock-skew window, bounded in size; thread-safe.

    A nonce is remembered until its request's timestamp is too old to be
    accepted (``expires_at``), after which a replay fails the timestamp check
    instead. When ``max_size`` live nonces are held, :meth:`add` raises
    NonceCacheFull rather than forget one early (which would allow a replay).
    """

    def __init__(self, max_size: int = 2_000_000) -> None:
        self.max_size = max_size
        self._seen: set[tuple[str, str]] = set()
        self._expiry: list[tuple[float, tuple[str, str]]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, channel: str, nonce: str, expires_at: float, now: float | None = None) -> bool:
        """Record ``nonce``; False if it was already recorded (a replay)."""
        now = time.time() if now is None else now
        item = (channel, nonce)
        with self._lock:
            expiry = self._expiry
            while expiry and expiry[0][0] < now:
                self._seen.discard(heapq.heappop(expiry)[1])
            if item in self._seen:
                return False
            if len(self._seen) >= self.max_size:
                raise NonceCacheFull(f"{len(self._seen)} requests within the replay window")
            self._seen.add(item)
            heapq.heappush(expiry, (expires_at, item))
            return True


# --- the legacy protocol ---------------------------------------------------------


def legacy_signature(
    password: str, name: str, collection: str, key: str, value: str | None = None
) -> str:
    """The legacy signature: SHA-1 hex of the canonical JSON of the request and password.

    ``name`` is ``'get'`` or ``'set'``; ``value`` is signed for a set only.
    """
    obj = {"collection": collection, "key": key, "name": name, "password": password}
    if value is not None:
        obj["value"] = value
    return hashlib.sha1(canonical_json(obj).encode("utf-8")).hexdigest()


def verify_legacy(
    password: str | None, signature: str, name: str, collection: str, key: str, value: str | None = None
) -> bool:
    """True if ``signature`` is the legacy signature under ``password`` (None: unknown channel)."""
    expected = legacy_signature(
        _DUMMY_PASSWORD if password is None else password, name, collection, key, value
    )
    ok = hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace"))
    return ok and password is not None


def legacy_content_signature(password: str, name: str, algorithm: str, hash_: str) -> str:
    """The original kachery server's signature of a content request.

    SHA-1 hex of ``json.dumps({algorithm, hash, name, password}, sort_keys=True,
    separators=(',', ':'))``; ``name`` is ``'check'``, ``'download'`` or ``'upload'``.
    """
    obj = {"algorithm": algorithm, "hash": hash_, "name": name, "password": password}
    return hashlib.sha1(canonical_json(obj).encode("utf-8")).hexdigest()


def verify_legacy_content(password: str | None, signature: str, name: str, algorithm: str, hash_: str) -> bool:
    """True if ``signature`` is :func:`legacy_content_signature` under ``password`` (None: unknown channel)."""
    expected = legacy_content_signature(_DUMMY_PASSWORD if password is None else password, name, algorithm, hash_)
    ok = hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace"))
    return ok and password is not None
