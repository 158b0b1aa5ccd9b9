"""The HTTP client of a pairio server: a KeyValueStore whose pairs live on the server.

Every request is signed (:mod:`pairio.signing`); the password never leaves the
process. The small JSON calls (get, set, get_many, leases, ...) go over
:mod:`pairio.kv.wire`'s keep-alive connections, content and a URL the environment sends
through a proxy over a pooled ``requests.Session``: each per store and process (a forked
child makes its own). Connection errors, 5xx and 429 are retried with exponential
backoff (honouring Retry-After up to ``max_retry_after``); then the error for
the cause is raised, naming the server's URL:

=========================  ====================================================
401                        AuthenticationError
403                        PermissionDeniedError
404 (collection unknown    BadRequestError: the collection is not available to
to the channel)            the channel (the server does not say whether it
                           exists for others)
400, 413                   BadRequestError, with the server's message (a batch
                           refused with 413 is first sent again in halves)
429                        RateLimitedError (``retry_after`` in seconds)
unreachable, 5xx           ServerUnavailableError
=========================  ====================================================

A URL that is not ``http://`` or ``https://``, a channel name that cannot be
sent in a header or a password that is not text is a ConfigurationError when
the store is made.

A server that is down never turns ``get`` into None.

``url`` may name several servers (replicas of one service: ``"http://a:8080,http://b:8080"``
or a list). The client uses one at a time and moves to the next when a request cannot
reach it (connection refused or reset, timeout), at once and without counting a retry
until every URL has failed in turn; it stays on the one that answered. Every request is
safe to send again (a set of the same value, a read), so a request cut off by a replica
that died is simply sent to the next.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from ..config import mask_url
from ..errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    PermissionDeniedError,
    RateLimitedError,
    RemoteError,
    ServerUnavailableError,
)
from ..identity import Identity, signature_key, signed_record
from ..signing import CHANNEL_PATTERN, sign_request
from .base import KeyValueStore
from .wire import Answer, Headers, Origin, WireError

API = "/api/v1"
logger = logging.getLogger("pairio")
MAX_PAIRS_PER_REQUEST = 10_000
# Batches are split further so a request body stays well under the server's limit.
MAX_BODY_BYTES = 4 * 1024 * 1024

_stores: weakref.WeakSet[RemoteStore] = weakref.WeakSet()


def _forget_sessions_after_fork() -> None:
    # A pooled connection shared by two processes would interleave their requests.
    for store in list(_stores):
        store._session = None
        for origin in (store._origins or {}).values():
            origin.forget()
        store._origins = None
        store._lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_sessions_after_fork)


class RemoteStore(KeyValueStore):
    """The pairs of ``collection``s on the pairio server at ``url``, as ``channel``."""

    def __init__(
        self,
        url: str | Sequence[str],
        channel: str,
        password: str,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.2,
        max_retry_after: float = 10.0,
        pool_size: int = 16,
        signer: Callable[[], Identity] | None = None,
    ) -> None:
        self.urls = _check_urls(url)
        self._current = 0  # index in urls of the server in use
        if not isinstance(channel, str) or not CHANNEL_PATTERN.fullmatch(channel):
            raise ConfigurationError(
                f"channel {channel!r} must be 1 to 80 printable ASCII characters, with no space "
                "at either end (it is sent in an HTTP header)"
            )
        self.channel = channel
        try:
            password.encode("utf-8")  # it keys every signature
        except (AttributeError, UnicodeEncodeError):
            raise ConfigurationError("password must be a str of valid Unicode text") from None
        self._password = password
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self.pool_size = pool_size
        # Lowered when the server refuses a body as too large (its maxBodyBytes is smaller).
        self.max_body_bytes = MAX_BODY_BYTES
        self._session: requests.Session | None = None
        # Per URL, its lean connections (None where the environment names a proxy for it); made on first use.
        self._origins: dict[str, Origin | None] | None = None
        self._lock = threading.Lock()
        # The writer whose key signs the pairs set (see pairio.identity); None: sent unsigned.
        self._signer = signer
        self._signing = signer is not None  # off once the server refuses the records (no content rights)
        _stores.add(self)

    def __repr__(self) -> str:
        shown = ",".join(mask_url(u) for u in self.urls)
        return f"RemoteStore({shown!r}, channel={self.channel!r})"

    @property
    def url(self) -> str:
        """The URL of the server in use."""
        return self.urls[self._current]

    @property
    def _shown_url(self) -> str:
        # For messages: a password in the URL stays out.
        return mask_url(self.url)

    def _fail_over(self, tried: int) -> bool:
        """Move to the next URL after one failed to answer; False once all ``tried`` in this round."""
        if tried >= len(self.urls):
            return False
        self._current = (self._current + 1) % len(self.urls)
        return True

    # --- the KeyValueStore interface --------------------------------------------------

    def get(self, collection: str, key: str) -> str | None:
        return self._field(self._call("get", {"collection": collection, "key": key}), "value", "get")

    def get_many(self, collection: str, keys: Iterable[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for chunk in _chunks(list(dict.fromkeys(keys))):
            answer = self._call("get_many", {"collection": collection, "keys": chunk})
            found.update(self._field(answer, "values", "get_many"))
        return found

    def get_many_inline(self, collection: str, keys: list[str],
                        max_inline: int) -> tuple[dict[str, str], dict[str, bytes]]:
        """The stored pairs among ``keys`` (at most 10,000), and in the same request the content
        of values that are SHA-1s of objects of at most ``max_inline`` bytes that the server holds
        and the channel may read: ``(values, {sha1: bytes})``. The bytes are not verified here."""
        answer = self._call("get_many", {"collection": collection, "keys": keys, "inline": max_inline})
        values = self._field(answer, "values", "get_many")
        content: dict[str, bytes] = {}
        for sha1, encoded in (answer.get("content") or {}).items():
            try:
                content[sha1] = base64.b64decode(encoded, validate=True)
            except (binascii.Error, TypeError, ValueError):
                continue  # an object that cannot be decoded is fetched the usual way
        return values, content

    def set(self, collection: str, key: str, value: str) -> None:
        if self._signing:
            self.set_many(collection, {key: value})
        else:
            self._call("set", {"collection": collection, "key": key, "value": value})

    def set_many(self, collection: str, pairs: Mapping[str, str | None],
                 records: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """Store ``pairs``; each request of up to 10,000 pairs is one transaction on the server.

        Signed (see :mod:`pairio.identity`): with each request goes, for each of its keys, a pair
        pointing to the writer's signed record of them, in the same transaction. ``records``: key ->
        the record of the result it names (function, code, dependencies, arguments, size, seconds,
        host, created), sent in the request of its pair (a server older than records ignores them)."""
        items = list(pairs.items())
        for chunk in _chunks(items, MAX_PAIRS_PER_REQUEST // 2 if self._signing else MAX_PAIRS_PER_REQUEST):
            body: dict[str, Any] = {"collection": collection, "pairs": self._signed(collection, dict(chunk))}
            if records:
                mine = {k: dict(records[k]) for k, _ in chunk if k in records}
                if mine:
                    body["records"] = mine
            self._call("set_many", body)

    def _signed(self, collection: str, pairs: dict[str, str | None]) -> dict[str, str | None]:
        """``pairs`` and the pairs of their signed record (uploaded first); ``pairs`` alone if this
        store does not sign, or the channel may not write the record."""
        if not self._signing or self._signer is None:
            return pairs
        values = {k: v for k, v in pairs.items() if v is not None}
        record_sha1 = None
        if values:
            try:
                signer = self._signer()
            except (OSError, ConfigurationError) as exc:  # no key can be made or read here
                logger.warning("pairs are set unsigned on %s: %s", self._shown_url, exc)
                return pairs
            data = signed_record(signer, collection, values)
            record_sha1 = hashlib.sha1(data).hexdigest()
            try:
                self._exchange("PUT", f"{API}/content/sha1/{record_sha1}", data, body_hash=record_sha1,
                               headers={"Content-Type": "application/octet-stream"})
            except (PermissionDeniedError, BadRequestError) as exc:
                logger.info("pairs are set unsigned on %s: the signed record was refused (%s)", self._shown_url, exc)
                self._signing = False
                return pairs
        out = dict(pairs)
        for key, value in pairs.items():
            out[signature_key(key)] = None if value is None else record_sha1
        return out

    def delete(self, collection: str, key: str) -> None:
        self._call("delete", {"collection": collection, "key": key})

    # --- leases (one computation per key across clients; see pairio.server.leases) ----------

    def acquire_lease(self, collection: str, key: str, owner: str, ttl: float,
                      info: Mapping[str, Any]) -> dict[str, Any]:
        """Ask for ``key``'s lease: ``{held, value, lease}`` (``value`` set if the key has one)."""
        answer = self._call("lease/acquire", {"collection": collection, "key": key, "owner": owner,
                                              "ttl": ttl, "info": dict(info)})
        self._field(answer, "held", "lease/acquire")
        return answer

    def renew_lease(self, collection: str, key: str, owner: str, ttl: float) -> bool:
        """Extend ``owner``'s lease to ``ttl`` seconds from now; False if it was lost."""
        answer = self._call("lease/renew", {"collection": collection, "key": key, "owner": owner, "ttl": ttl})
        return bool(self._field(answer, "held", "lease/renew"))

    def release_lease(self, collection: str, key: str, owner: str) -> bool:
        """Give up ``owner``'s lease; False if it was not held (any more)."""
        answer = self._call("lease/release", {"collection": collection, "key": key, "owner": owner})
        return bool(self._field(answer, "released", "lease/release"))

    def leases(self) -> dict[str, Any]:
        """``{now, leases}``: the leases held in the collections this channel may read."""
        answer = self._request("GET", f"{API}/leases", b"")
        self._field(answer, "leases", "leases")
        return answer

    def records(self, *, collection: str | None = None, function: str | None = None, sort: str = "created",
                limit: int = 100) -> list[dict[str, Any]]:
        """The records the server keeps of results in the collections this channel may read (or in
        ``collection``), most first by ``sort`` (created, size, seconds, hits), of ``function`` if given."""
        body: dict[str, Any] = {"sort": sort, "limit": limit}
        if collection is not None:
            body["collection"] = collection
        if function is not None:
            body["function"] = function
        return self._field(self._call("records", body), "records", "records")

    def counts(self, since: float, until: float | None = None, by: str | None = "function",
               collection: str | None = None) -> dict[str, Any]:
        """The server's hourly counts since ``since`` (Unix seconds) in the collections this channel
        may read (or in ``collection``): ``{counts, totals, groups}`` (see ``POST /api/v1/counts``)."""
        body: dict[str, Any] = {"since": since, "until": until, "by": by}
        if collection is not None:
            body["collection"] = collection
        answer = self._call("counts", body)
        self._field(answer, "counts", "counts")
        return answer

    def probe(self) -> dict[str, Any]:
        """The channel's name and, per collection, whether it may get and set."""
        return self._request("GET", f"{API}/probe", b"")

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None
            origins, self._origins = self._origins, None
        for origin in (origins or {}).values():
            if origin is not None:
                origin.close()

    # --- the wire ------------------------------------------------------------------

    @property
    def session(self) -> requests.Session:
        """This process's pooled session."""
        session = self._session
        if session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._new_session()
                session = self._session
        return session

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        adapter = _Adapter(pool_connections=len(self.urls), pool_maxsize=self.pool_size, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["Content-Type"] = "application/json"
        # Resolve the environment's proxy and CA settings once, for each URL: requests
        # would otherwise re-read them on every call, a third of a small request's time.
        self._proxies = {u: requests.utils.get_environ_proxies(u) for u in self.urls}
        session.proxies = self._proxies[self.urls[0]]
        ca_bundle = _ca_bundle()
        if ca_bundle:
            session.verify = ca_bundle
        session.trust_env = False
        return session

    @property
    def origins(self) -> dict[str, Origin | None]:
        """This process's lean connections per URL: None for a URL the environment sends through a proxy."""
        origins = self._origins
        if origins is None:
            with self._lock:
                if self._origins is None:
                    ca_bundle = _ca_bundle()
                    self._origins = {
                        u: None if requests.utils.select_proxy(u, requests.utils.get_environ_proxies(u))
                        else Origin(u, timeout=self.timeout, ca_bundle=ca_bundle, pool_size=self.pool_size)
                        for u in self.urls}
                origins = self._origins
        return origins

    def _call(self, operation: str, obj: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(obj, separators=(",", ":")).encode("ascii")
        batch = len(obj.get("keys") or obj.get("pairs") or ()) > 1
        if batch and len(body) > self.max_body_bytes:
            return self._split(operation, obj)
        try:
            return self._request("POST", f"{API}/{operation}", body)
        except _BodyTooLargeError:
            if not batch:
                raise
            self.max_body_bytes = min(self.max_body_bytes, len(body) - 1)
            return self._split(operation, obj)

    def _split(self, operation: str, obj: dict[str, Any]) -> dict[str, Any]:
        if operation == "get_many":
            keys = obj["keys"]
            half = len(keys) // 2
            values = {}
            for part in (keys[:half], keys[half:]):
                values.update(self._call(operation, {**obj, "keys": part})["values"])
            return {"values": values}
        items = list(obj["pairs"].items())
        half = len(items) // 2
        records = obj.get("records")
        for part in (items[:half], items[half:]):
            body = {**obj, "pairs": dict(part)}
            if records:
                body["records"] = {k: records[k] for k, _ in part if k in records}
            self._call(operation, body)
        return {"ok": True}

    def _request(self, method: str, path: str, body: bytes) -> dict[str, Any]:
        response = self._exchange(method, path, body)
        try:
            return response.json()
        except ValueError:
            raise ServerUnavailableError(
                f"pairio server {self._shown_url} answered {path} with a body that is not JSON"
            ) from None

    def _exchange(self, method: str, path: str, body: bytes, *, body_hash: str | None = None,
                  headers: Mapping[str, str] | None = None) -> Answer:
        """One small signed request, retrying as :meth:`request` does: its whole answer (status 200).

        Sent over :mod:`pairio.kv.wire`'s connections, or with requests where a proxy applies."""
        fixed = {"Content-Type": "application/json", **headers} if headers else _JSON

        def send(base: str, data: bytes, signed: dict[str, str]) -> Answer:
            origin = self.origins.get(base)
            if origin is None:  # through the environment's proxy
                response = self._send(method, base + path, data, {**signed, **fixed})
                answer = Answer(response.status_code, response.reason or "",
                                Headers((k.lower(), v) for k, v in response.headers.items()), response.content)
                response.close()
                return answer
            signed.update(fixed)
            return origin.exchange(method, path, data, signed)

        return self._retrying(method, path, body, body_hash, (200,), self.retries, send)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | Callable[[], Any] = b"",
        *,
        body_hash: str | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        accept: Container[int] = (200,),
        retries: int | None = None,
    ) -> requests.Response:
        """Send one signed request with requests, retrying as the class says; the response if its
        status is in ``accept``.

        Any other status raises the error for it. ``body`` is bytes, or a callable that makes
        the body afresh for each attempt (an open file, read as it is sent); then
        ``body_hash`` is the digest it is signed with (see :mod:`pairio.signing`).
        With ``stream`` the caller reads (and closes) the response's body.
        """
        def send(base: str, data: Any, signed: dict[str, str]) -> requests.Response:
            if headers:
                signed.update(headers)
            return self._send(method, base + path, data, signed, stream)

        return self._retrying(method, path, body, body_hash, accept,
                              self.retries if retries is None else retries, send)

    def _retrying(self, method: str, path: str, body: bytes | Callable[[], Any], body_hash: str | None,
                  accept: Container[int], retries: int, send: Callable[[str, Any, dict[str, str]], Any]) -> Any:
        """``send(base_url, body, signed_headers)`` until its answer's status is in ``accept``
        (retrying and failing over as the class says); that answer, or the error for the last."""
        attempt = 0
        tried = 1  # servers tried in this round of the attempt
        while True:
            data = body() if callable(body) else body
            signed = sign_request(self.channel, self._password, method, path,
                                  data if isinstance(data, bytes) else b"", body_hash=body_hash)
            try:
                response = send(self.url, data, signed)
            except (requests.RequestException, WireError) as exc:
                failure: RemoteError = ServerUnavailableError(
                    f"pairio server {self._shown_url} is unreachable: {reason(exc)}"
                )
                if self._fail_over(tried):
                    tried += 1
                    continue
                tried = 1
                wait = self._backoff(attempt)
            else:
                status = response.status_code
                if status in accept:
                    return response
                failure = self._error(response, path)
                response.close()
                if status == 429:
                    retry_after = getattr(failure, "retry_after", None)
                    if retry_after is not None and retry_after > self.max_retry_after:
                        raise failure
                    wait = max(self._backoff(attempt), retry_after or 0.0)
                elif status >= 500:
                    # A 503 may say when to come back (the server's replay window is full).
                    retry_after = min(_retry_after(response) or 0.0, self.max_retry_after)
                    wait = max(self._backoff(attempt), retry_after)
                else:
                    raise failure
            if attempt >= retries:
                raise failure
            attempt += 1
            time.sleep(wait)

    def _send(self, method: str, url: str, body: Any, headers: dict[str, str],
              stream: bool = False) -> requests.Response:
        # Straight to the session's adapter (its connection pool): Session.request would merge
        # settings, cookies and hooks and follow redirects, none of which a signed API call
        # uses, at a third of a small request's CPU time.
        session = self.session
        prepared = requests.PreparedRequest()
        prepared.prepare(method=method, url=url, headers={**session.headers, **headers}, data=body or None)
        return session.get_adapter(url).send(prepared, stream=stream, timeout=self.timeout,
                                             verify=session.verify, proxies=self._proxies[self.url])

    def _field(self, answer: Any, name: str, operation: str) -> Any:
        """``answer[name]``; a server that answers without it is not a pairio server of this version."""
        if not isinstance(answer, dict) or name not in answer:
            raise ServerUnavailableError(
                f"{self._shown_url} answered {operation} without the field {name!r}: is it a pairio server?")
        return answer[name]

    def _backoff(self, attempt: int) -> float:
        # Jitter spreads the retries of many clients after a shared outage.
        return self.backoff * (2**attempt) * (0.5 + random.random())

    def _error(self, response: requests.Response | Answer, path: str) -> RemoteError:
        status = response.status_code
        try:
            message = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200] or response.reason
        where = f"pairio server {self._shown_url}"
        if status == 401:
            return AuthenticationError(f"{where} rejected channel {self.channel!r}: {message} "
                                       "(check the channel and password)")
        if status == 403:
            return PermissionDeniedError(f"{where}: {message}")
        if status == 429:
            return RateLimitedError(f"{where}: {message}", _retry_after(response))
        if status >= 500:
            return ServerUnavailableError(f"{where} failed on {path} (HTTP {status}): {message}")
        if status == 413:
            return _BodyTooLargeError(f"{where} refused {path} (HTTP 413): {message}")
        return BadRequestError(f"{where} refused {path} (HTTP {status}): {message}")


class _Adapter(HTTPAdapter):
    """The session's adapter: a streamed request body (a content upload) is sent a megabyte
    per call, not urllib3's 16 KB (a Python loop turn each: a large share of an upload's time)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["blocksize"] = 1 << 20
        super().init_poolmanager(*args, **kwargs)


_JSON = {"Content-Type": "application/json"}


def _ca_bundle() -> str | None:
    """The CA bundle the environment names for requests (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE), if any."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None


class _BodyTooLargeError(BadRequestError):
    """The server refused a request body as too large (HTTP 413)."""


def _check_urls(urls: object) -> list[str]:
    """``urls`` (one URL, several separated by commas, or a list of them) checked, as a list."""
    parts = urls.split(",") if isinstance(urls, str) else urls
    if isinstance(parts, (list, tuple)) and parts and all(isinstance(u, str) for u in parts):
        checked = [_check_url(u.strip()) for u in parts]
        return list(dict.fromkeys(checked))
    raise ConfigurationError(f"server url must be a str (several separated by commas) or a list of str, got {urls!r}")


def _check_url(url: object) -> str:
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        host = parts.hostname if parts else None
    except ValueError:  # e.g. an unclosed IPv6 bracket
        host = None
    if not host or parts.scheme not in ("http", "https"):
        raise ConfigurationError(
            f"server url {url!r} must start with http:// or https:// and name a host "
            "(e.g. http://127.0.0.1:8080)"
        )
    return url.rstrip("/")


def _chunks(items: list, size: int = MAX_PAIRS_PER_REQUEST) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _retry_after(response: requests.Response | Answer) -> float | None:
    raw = response.headers.get("Retry-After")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def reason(exc: requests.RequestException | WireError) -> str:
    """Why a request failed, in a few words."""
    if isinstance(exc, WireError):
        return exc.reason
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.SSLError):  # before ConnectionError, its base
        return "TLS failed (is it an https server, and is its certificate trusted?)"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed (is it running, and is the URL right?)"
    return type(exc).__name__
