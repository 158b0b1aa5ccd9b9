"""RemoteStore's lean HTTP/1.1 transport (pairio.kv.wire): keep-alive, reconnects, failures, TLS, proxies.

Against a real ``pairio serve`` where the server's behaviour is the point, and against small
socket servers of a few lines where the answer must be one a pairio server never gives (cut off,
chunked, not HTTP, over TLS with a test certificate).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import os
import socket
import ssl
import threading
import uuid

import pytest
from server_process import RW_PASSWORD, ServerProcess, default_settings, free_port

import pairio as pa
from pairio.kv.remote import RemoteStore


def key() -> str:
    return hashlib.sha1(uuid.uuid4().bytes).hexdigest()


def local_port(store: RemoteStore) -> int:
    """The local port of the store's one idle connection to its server."""
    (conn,) = store.origins[store.url]._idle
    return conn.sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("server"), default_settings()) as s:
        yield s


# --- a raw server: each connection handled by a script ------------------------------------------


def read_request(conn: socket.socket) -> tuple[str, dict[str, str], bytes] | None:
    """One request from ``conn``: its request line, headers (lower-case names) and body; None at EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    line, *rest = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in rest)}
    while len(body) < int(headers.get("content-length", 0)):
        body += conn.recv(65536)
    return line, headers, body


def answer(conn: socket.socket, obj: object, *, extra: str = "", status: str = "200 OK") -> None:
    body = json.dumps(obj).encode()
    conn.sendall(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                 f"{extra}\r\n".encode() + body)


class RawServer:
    """A loopback server that hands each accepted connection to ``handle(conn, index)``; TLS with ``context``."""

    def __init__(self, handle, context: ssl.SSLContext | None = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"{'https' if context else 'http'}://127.0.0.1:{self.port}"
        self.handle, self.context = handle, context
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            index = self.connections
            self.connections += 1
            threading.Thread(target=self._run, args=(conn, index), daemon=True).start()

    def _run(self, conn: socket.socket, index: int) -> None:
        try:
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
            self.handle(self, conn, index)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def next_request(self, conn: socket.socket):
        request = read_request(conn)
        if request is not None:
            self.requests.append(request)
        return request

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def raw():
    made = []

    def make(handle, context=None):
        made.append(RawServer(handle, context))
        return made[-1]

    yield make
    for s in made:
        s.close()


def store_of(url: str, **options) -> RemoteStore:
    return RemoteStore(url, "c", "p" * 8, backoff=0.0, **options)


# --- keep-alive and reconnects against a real server --------------------------------------------


def test_calls_reuse_one_kept_connection(server):
    store = RemoteStore(server.url, "lab-rw", RW_PASSWORD)
    k = key()
    store.set("spikes", k, "v")
    port = local_port(store)
    for _ in range(5):
        assert store.get("spikes", k) == "v"
        assert store.get_many("spikes", [k, key()]) == {k: "v"}
    assert local_port(store) == port


def test_a_restarted_server_is_reached_on_a_fresh_connection_without_a_retry(tmp_path):
    port = free_port()
    k = key()
    with ServerProcess(tmp_path / "s", default_settings(), port=port) as s:
        store = RemoteStore(s.url, "lab-rw", RW_PASSWORD, retries=0)
        store.set("spikes", k, "before")
        old = local_port(store)
    with ServerProcess(tmp_path / "s", default_settings(), port=port):
        assert store.get("spikes", k) == "before"  # retries=0: the dead kept connection cost no attempt
        assert local_port(store) != old


def test_a_killed_server_is_unavailable_not_a_none(tmp_path):
    port = free_port()
    with ServerProcess(tmp_path / "s", default_settings(), port=port) as s:
        store = RemoteStore(s.url, "lab-rw", RW_PASSWORD, retries=1, backoff=0.0)
        store.set("spikes", key(), "v")
        s.process.kill()
        s.process.wait()
        with pytest.raises(pa.ServerUnavailableError, match="unreachable: connection failed"):
            store.get("spikes", key())


def test_close_closes_the_kept_connections_and_the_store_still_works(server):
    store = RemoteStore(server.url, "lab-rw", RW_PASSWORD)
    k = key()
    store.set("spikes", k, "v")
    (conn,) = store.origins[store.url]._idle
    store.close()
    assert conn.sock.fileno() == -1
    assert store.get("spikes", k) == "v"


# --- answers a pairio server never gives ---------------------------------------------------------


def test_a_kept_connection_closed_mid_request_is_sent_again_once_on_a_fresh_one(raw):
    def handle(srv, conn, index):
        while srv.next_request(conn) is not None:
            if index == 0 and len(srv.requests) == 2:
                return  # the second request on the first connection: closed without an answer
            answer(conn, {"value": f"from connection {index}"})

    s = raw(handle)
    store = store_of(s.url, retries=0)
    assert store.get("spikes", "k") == "from connection 0"
    assert store.get("spikes", "k") == "from connection 1"
    assert len(s.requests) == 3 and s.connections == 2


def test_a_server_that_closes_a_fresh_connection_without_answering_is_unavailable(raw):
    s = raw(lambda srv, conn, index: srv.next_request(conn))
    store = store_of(s.url, retries=2)
    with pytest.raises(pa.ServerUnavailableError, match="closed the connection without answering"):
        store.get("spikes", "k")
    assert len(s.requests) == 3  # the retries, each on a fresh connection, and no more


def test_an_answer_cut_off_in_its_body_is_unavailable(raw):
    def handle(srv, conn, index):
        srv.next_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"value\"")

    store = store_of(raw(handle).url, retries=0)
    with pytest.raises(pa.ServerUnavailableError, match="closed the connection in the middle of its answer"):
        store.get("spikes", "k")


def test_a_server_that_does_not_answer_in_time_times_out(raw):
    done = threading.Event()
    s = raw(lambda srv, conn, index: (srv.next_request(conn), done.wait(10)))
    store = store_of(s.url, retries=0, timeout=0.3)
    with pytest.raises(pa.ServerUnavailableError, match="unreachable: timed out"):
        store.get("spikes", "k")
    done.set()


def test_an_answer_that_is_not_http_is_named(raw):
    def handle(srv, conn, index):
        srv.next_request(conn)
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")

    store = store_of(raw(handle).url, retries=0)
    with pytest.raises(pa.ServerUnavailableError, match="not valid HTTP.*status line.*SSH"):
        store.get("spikes", "k")


def test_chunked_and_close_delimited_answers_are_read(raw):
    def handle(srv, conn, index):
        srv.next_request(conn)
        body = json.dumps({"values": {"a": "1", "b": "2"}}).encode()
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + b"".join(b"%x;x=y\r\n%s\r\n" % (len(part), part) for part in (body[:5], body[5:]))
                     + b"0\r\nX-Trailer: 1\r\n\r\n")
        srv.next_request(conn)  # kept: the next request comes on the same connection
        conn.sendall(b'HTTP/1.0 200 OK\r\n\r\n{"value": "till the end"}')

    s = raw(handle)
    store = store_of(s.url, retries=0)
    assert store.get_many("spikes", ["a", "b"]) == {"a": "1", "b": "2"}
    assert store.get("spikes", "k") == "till the end"
    assert s.connections == 1 and store.origins[store.url]._idle == []  # the second was closed after


def test_error_answers_keep_their_messages(raw):
    def handle(srv, conn, index):
        while srv.next_request(conn) is not None:
            answer(conn, {"error": "invalid signature for this channel and request"}, status="401 Unauthorized")

    store = store_of(raw(handle).url)
    with pytest.raises(pa.AuthenticationError, match="rejected channel 'c': invalid signature.*check the channel"):
        store.get("spikes", "k")


def test_the_request_carries_the_url_prefix_basic_auth_and_a_signature(raw):
    def handle(srv, conn, index):
        while srv.next_request(conn) is not None:
            answer(conn, {"value": "ok"})

    s = raw(handle)
    url = s.url.replace("http://", "http://us%40er:p%3Ass@") + "/pairio/"
    store = store_of(url)
    assert store.get("spikes", "k") == "ok"
    line, headers, body = s.requests[0]
    assert line == "POST /pairio/api/v1/get HTTP/1.1"
    assert headers["authorization"] == "Basic dXNAZXI6cDpzcw=="  # us@er:p:ss
    assert headers["host"] == f"127.0.0.1:{s.port}" and headers["content-type"] == "application/json"
    assert headers["x-pairio-channel"] == "c" and len(headers["x-pairio-signature"]) == 64
    assert json.loads(body) == {"collection": "spikes", "key": "k"}
    assert "p:ss" not in repr(store)


def test_a_url_the_environment_sends_through_a_proxy_goes_through_it(raw, monkeypatch):
    def handle(srv, conn, index):
        while srv.next_request(conn) is not None:
            answer(conn, {"value": "via the proxy"})

    proxy = raw(handle)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    store = store_of("http://pairio.example:8080", retries=0)
    assert store.get("spikes", "k") == "via the proxy"
    assert proxy.requests[0][0] == "POST http://pairio.example:8080/api/v1/get HTTP/1.1"


# --- TLS --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (its PEM file, a server context serving it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key_ = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pairio test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key_.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key_, hashes.SHA256()))
    root = tmp_path_factory.mktemp("tls")
    (root / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (root / "key.pem").write_bytes(key_.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(root / "cert.pem", root / "key.pem")
    return str(root / "cert.pem"), context


def _tls_answers(srv, conn, index):
    while srv.next_request(conn) is not None:
        answer(conn, {"value": "over tls"})


def test_https_with_a_trusted_certificate_works_and_keeps_its_connection(raw, certificate, monkeypatch):
    pem, context = certificate
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", pem)
    s = raw(_tls_answers, context)
    store = store_of(s.url, retries=0)
    assert store.get("spikes", "k") == "over tls"
    assert store.get("spikes", "k") == "over tls"
    assert s.connections == 1


def test_https_with_an_untrusted_certificate_says_tls_failed(raw, certificate, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    s = raw(_tls_answers, certificate[1])
    store = store_of(s.url, retries=0)
    with pytest.raises(pa.ServerUnavailableError, match="TLS failed.*certificate trusted"):
        store.get("spikes", "k")
    assert s.requests == []  # nothing was sent to a server not verified


def test_threads_share_a_store_each_request_on_a_connection_of_its_own(server):
    store = RemoteStore(server.url, "lab-rw", RW_PASSWORD, pool_size=3)
    pairs = {key(): str(i) for i in range(40)}
    store.set_many("spikes", pairs)
    wrong = []

    def work(items):
        for k, v in items:
            if store.get("spikes", k) != v:
                wrong.append(k)

    items = list(pairs.items())
    threads = [threading.Thread(target=work, args=(items[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == [] and 1 <= len(store.origins[store.url]._idle) <= 3


def test_a_connection_on_a_descriptor_over_1023_is_still_kept(server):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"this process may open only {hard} files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    read_end, write_end = os.pipe()
    held = [os.dup(read_end) for _ in range(1030)]  # the store's socket comes after them
    try:
        store = RemoteStore(server.url, "lab-rw", RW_PASSWORD)
        k = key()
        store.set("spikes", k, "v")
        port = local_port(store)
        assert store.origins[store.url]._idle[0].sock.fileno() > 1023
        assert store.get("spikes", k) == "v" and local_port(store) == port
        store.close()
    finally:
        for fd in (*held, read_end, write_end):
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
