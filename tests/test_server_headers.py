"""Request heads are bounded: past 64 KiB of request line and headers the server answers 431 at once
and closes the connection, without reading (or keeping) the rest. A real server on loopback."""

from __future__ import annotations

import socket

import pytest
from server_process import ServerProcess, default_settings

from pairio.server.settings import MAX_HEADER_BYTES

WAIT_S = 60.0  # a bound, so that a server that waits for the rest fails the test instead of hanging it


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("server"), default_settings()) as s:
        yield s


def connect(server) -> socket.socket:
    host, port = server.url.split("//")[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=WAIT_S)
    return sock


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        if b"\r\n\r\n" in data:
            head, _, body = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), None)
            if length is not None and len(body) >= length:
                break
    return data


@pytest.mark.parametrize("chunk", [1 << 10, 16 << 10, 1 << 20])
def test_a_head_over_the_limit_is_answered_431_before_it_ends(server, chunk):
    sock = connect(server)
    with sock:
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        # Twice the limit, never ending the head: a server waiting for its end would never answer.
        while sent < 2 * MAX_HEADER_BYTES:
            try:
                sock.sendall(b"a" * chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # closed on us: the answer is already there
            sent += chunk
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert str(MAX_HEADER_BYTES).encode() in answer


def test_many_headers_over_the_limit_are_answered_431(server):
    sock = connect(server)
    with sock:
        head = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n" + b"".join(
            b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(MAX_HEADER_BYTES // 100 + 10))
        try:
            sock.sendall(head)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_a_head_just_under_the_limit_is_served_and_the_connection_kept(server):
    sock = connect(server)
    with sock:
        filler = b"v" * (MAX_HEADER_BYTES - 200)
        for _ in range(2):  # keep-alive: the second request's head is counted from zero
            sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + filler + b"\r\n\r\n")
            answer = read_all(sock)
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
