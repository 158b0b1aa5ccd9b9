"""A lean HTTP/1.1 client for the server's small JSON calls (get, set, get_many, ...).

requests spends most of a small call's CPU time on machinery a signed API call does not use
(preparing the request, merging settings, parsing headers with the email package, building a
Response): about 1 ms a get where this spends a tenth of it. Each :class:`Origin` (one server URL)
keeps its own keep-alive connections, a few idle at most; a request is one ``sendall`` of head
and body, and the answer is read with one ``recv`` when it is small.

What it keeps of requests: a connect and read ``timeout``; TLS for ``https://`` with the
certificate and host name verified against certifi's bundle, or ``REQUESTS_CA_BUNDLE`` /
``CURL_CA_BUNDLE`` (a file or a directory); basic auth from a ``user:password@`` in the URL;
a path prefix in the URL (a reverse proxy). A URL that the environment sends through a proxy is
not this module's: :class:`~pairio.kv.remote.RemoteStore` sends it with requests.

An idle connection the server has closed (its keep-alive timeout, a restart) is noticed before
it is used; one that fails before any byte of the answer arrives is replaced by a fresh one and
the request sent again (every pairio request is safe to send again). Any other failure is a
:class:`WireError` naming it in a few words.
"""

from __future__ import annotations

import base64
import json
import os
import select
import socket
import ssl
import threading
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from .._version import __version__

MAX_HEAD_BYTES = 64 * 1024  # of an answer's status line and headers
_RECV = 64 * 1024
_RESEND_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class WireError(Exception):
    """A request could not be sent, or its answer not read; ``reason`` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Dropped(Exception):
    """The connection was closed before any byte of the answer: send it again on a fresh one."""


class Headers(dict):
    """An answer's headers, names in lower case; ``get`` takes a name in any case."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, name.lower(), default)


class Answer:
    """One HTTP answer, read whole: what RemoteStore reads of a requests.Response."""

    __slots__ = ("status_code", "reason", "headers", "content")

    def __init__(self, status_code: int, reason: str, headers: Headers, content: bytes) -> None:
        self.status_code = status_code
        self.reason = reason
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The decoded JSON body; ValueError if it is not JSON."""
        return json.loads(self.content)

    def close(self) -> None:
        """Nothing to release (the body is read); as requests.Response.close."""


_contexts: dict[str | None, ssl.SSLContext] = {}
_contexts_lock = threading.Lock()


def _ssl_context(bundle: str | None) -> ssl.SSLContext:
    """A verifying TLS context for ``bundle`` (a CA file or directory; None: certifi's), one per process."""
    context = _contexts.get(bundle)
    if context is None:
        with _contexts_lock:
            context = _contexts.get(bundle)
            if context is None:
                if bundle is None:
                    import certifi

                    context = ssl.create_default_context(cafile=certifi.where())
                elif os.path.isdir(bundle):
                    context = ssl.create_default_context(capath=bundle)
                else:
                    context = ssl.create_default_context(cafile=bundle)
                _contexts[bundle] = context
    return context


class _Connection:
    __slots__ = ("sock", "buffer")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Origin:
    """One server URL (scheme, host, port, optional path prefix and basic auth), and its idle connections."""

    def __init__(self, url: str, *, timeout: float, ca_bundle: str | None = None, pool_size: int = 16) -> None:
        parts = urlsplit(url)
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.pool_size = pool_size
        self._context = _ssl_context(ca_bundle) if self.tls else None
        netloc = parts.netloc.rpartition("@")[2]
        fixed = f"Host: {netloc}\r\nUser-Agent: pairio/{__version__}\r\nAccept-Encoding: identity\r\n"
        if parts.username is not None:  # as requests does: the URL's user and password, percent-decoded
            token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode("latin-1")
            fixed += f"Authorization: Basic {base64.b64encode(token).decode('ascii')}\r\n"
        self._fixed = fixed
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the idle connections (one in use is closed when its request ends)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def forget(self) -> None:
        """Drop every connection without closing it (after a fork: the parent's, still in use there)."""
        self._idle = []
        self._lock = threading.Lock()

    def exchange(self, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        """Send ``method path`` with ``body`` and ``headers``; the whole answer (WireError on failure)."""
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head = (f"{method} {self.prefix}{path} HTTP/1.1\r\n{self._fixed}Content-Length: {len(body)}\r\n"
                f"{lines}\r\n")
        try:
            data = head.encode("latin-1") + body
        except UnicodeEncodeError:
            raise WireError("a header cannot be sent (not Latin-1 text)") from None
        while True:
            conn = self._take()
            fresh = conn is None
            if conn is None:
                conn = self._connect()
            try:
                conn.sock.sendall(data)
                answer, keep = _read_answer(conn, method)
            except (_Dropped, *_RESEND_ERRORS) as exc:
                conn.close()
                if fresh:
                    raise WireError(_reason(exc)) from None
                continue  # the server closed a kept connection: once more on a fresh one
            except WireError:
                conn.close()
                raise
            except (OSError, ValueError) as exc:
                conn.close()
                raise WireError(_reason(exc)) from None
            if keep:
                self._give(conn)
            else:
                conn.close()
            return answer

    def _take(self) -> _Connection | None:
        """An idle connection still open, or None."""
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn = self._idle.pop()
            if not conn.buffer and not _readable(conn.sock):
                return conn
            conn.close()

    def _give(self, conn: _Connection) -> None:
        with self._lock:
            if len(self._idle) < self.pool_size:
                self._idle.append(conn)
                return
        conn.close()

    def _connect(self) -> _Connection:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise WireError(_reason(exc)) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._context is not None:
                sock = self._context.wrap_socket(sock, server_hostname=self.host)
        except OSError as exc:
            sock.close()
            raise WireError(_reason(exc)) from None
        return _Connection(sock)


def _readable(sock: socket.socket) -> bool:
    """Whether ``sock`` has something to read: an idle connection has only if the server closed it
    (or sent what was not asked). poll, where there is one: select refuses descriptors over 1023."""
    try:
        if _POLL:
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


_POLL = hasattr(select, "poll")


def _reason(exc: BaseException) -> str:
    """Why a request failed, in a few words (the words RemoteStore's requests path uses)."""
    if isinstance(exc, TimeoutError):  # socket.timeout
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return "TLS failed (is it an https server, and is its certificate trusted?)"
    if isinstance(exc, _Dropped):
        return "the server closed the connection without answering"
    if isinstance(exc, ValueError):
        return "the answer is not HTTP (is the URL a pairio server?)"
    return "connection failed (is it running, and is the URL right?)"


def _bad(what: str) -> WireError:
    return WireError(f"the answer is not valid HTTP ({what}): is the URL a pairio server?")


def _read_answer(conn: _Connection, method: str) -> tuple[Answer, bool]:
    """The answer to the request just sent on ``conn``, and whether the connection may be used again."""
    sock = conn.sock
    buf = conn.buffer
    conn.buffer = b""
    received = bool(buf)
    while True:  # past any 1xx answer
        end = buf.find(b"\r\n\r\n")
        while end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                raise _bad("a head of over 64 KB")
            chunk = sock.recv(_RECV)
            if not chunk:
                if received:
                    raise WireError("the server closed the connection in the middle of its answer")
                raise _Dropped()
            received = True
            buf += chunk
            end = buf.find(b"\r\n\r\n", max(0, len(buf) - len(chunk) - 3))
        lines = buf[:end].decode("latin-1").split("\r\n")
        buf = buf[end + 4 :]
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise _bad(f"status line {lines[0][:60]!r}")
        status = int(code)
        if not 100 <= status < 200 or status == 101:
            break
    headers = Headers()
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise _bad(f"header line {line[:60]!r}")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{dict.__getitem__(headers, name)}, {value}" if name in headers else value
    connection = dict.get(headers, "connection", "").lower()
    keep = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
    length = dict.get(headers, "content-length")
    if method == "HEAD" or status in (204, 304):
        body = b""
    elif "chunked" in dict.get(headers, "transfer-encoding", "").lower():
        body, buf = _read_chunked(sock, buf)
    elif length is not None:
        if not length.isdigit():
            raise _bad(f"Content-Length {length[:30]!r}")
        body, buf = _read_exactly(sock, buf, int(length))
    else:  # the body runs to the end of the connection
        parts = [buf]
        while chunk := sock.recv(_RECV):
            parts.append(chunk)
        body, buf, keep = b"".join(parts), b"", False
    if buf:  # bytes nobody asked for: the connection is out of step
        keep = False
    encoding = dict.get(headers, "content-encoding", "identity").lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        try:
            body = zlib.decompress(body, 47 if "gzip" in encoding else 15)
        except zlib.error:
            if encoding != "deflate":
                raise _bad("a gzip body that cannot be decoded") from None
            body = zlib.decompress(body, -15)  # raw deflate, as some servers send it
    elif encoding != "identity":
        raise _bad(f"Content-Encoding {encoding[:30]!r}")
    return Answer(status, reason, headers, body), keep


def _read_exactly(sock: socket.socket, buf: bytes, length: int) -> tuple[bytes, bytes]:
    """``length`` bytes from ``buf`` and then ``sock``; and what follows them in ``buf``."""
    if len(buf) >= length:
        return buf[:length], buf[length:]
    data = bytearray(length)  # read into in place: no copy of a large body per piece
    view = memoryview(data)
    have = len(buf)
    view[:have] = buf
    while have < length:
        got = sock.recv_into(view[have:], min(length - have, 1 << 20))
        if not got:
            raise WireError("the server closed the connection in the middle of its answer")
        have += got
    return bytes(data), b""


def _read_line(sock: socket.socket, buf: bytes) -> tuple[bytes, bytes]:
    while (end := buf.find(b"\r\n")) < 0:
        if len(buf) > MAX_HEAD_BYTES:
            raise _bad("a chunk line of over 64 KB")
        chunk = sock.recv(_RECV)
        if not chunk:
            raise WireError("the server closed the connection in the middle of its answer")
        buf += chunk
    return buf[:end], buf[end + 2 :]


def _read_chunked(sock: socket.socket, buf: bytes) -> tuple[bytes, bytes]:
    """A chunked body, and what follows it in ``buf``."""
    parts = []
    while True:
        line, buf = _read_line(sock, buf)
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _bad(f"chunk size {size_text[:20]!r}") from None
        if size == 0:
            while True:  # trailers, up to the empty line
                line, buf = _read_line(sock, buf)
                if not line:
                    return b"".join(parts), buf
        data, buf = _read_exactly(sock, buf, size + 2)
        if data[-2:] != b"\r\n":
            raise _bad("a chunk not followed by CRLF")
        parts.append(data[:-2])
