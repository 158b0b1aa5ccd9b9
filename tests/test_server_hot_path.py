"""The server's hot path (pairio.server.dispatch) answers exactly as Starlette's stack behind it does,
and uvicorn's protocol (pairio.server.http) writes a small response in one write.

The first tests call the one app two ways, the same requests each time: through its hot path, and
through Starlette's stack directly (which is what the hot path passes everything else to), and compare
the answers and the metrics they count. The last ones run the real protocol on a loopback socket."""

from __future__ import annotations

import asyncio
import json

import pytest
from server_process import RO_PASSWORD, RW_PASSWORD, default_settings
from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware

from pairio.server.app import create_app
from pairio.server.settings import parse_settings
from pairio.signing import sign_request

MAX_BODY = 4096


@pytest.fixture()
def app(tmp_path):
    app = create_app(parse_settings(default_settings(maxBodyBytes=MAX_BODY), tmp_path / "server"))
    app.state.store.set("spikes", "a" * 40, "value-a")
    yield app
    app.state.store.close()


def call(asgi, method: str, path: str, body: bytes = b"", channel: str = "lab-rw", password: str = RW_PASSWORD,
         headers: list[tuple[bytes, bytes]] | None = None, sign: bool = True, chunks: int = 1):
    """One request to the ASGI app ``asgi``, signed afresh: (status, headers, body, scope)."""
    signed = sign_request(channel, password, method, path, body) if sign else {}
    raw = [(b"host", b"127.0.0.1"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in signed.items()] + (headers or [])
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": raw, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}
    size = -(-len(body) // chunks) or 1
    parts = [body[i:i + size] for i in range(0, len(body), size)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(asgi(scope, receive, send))
    start = sent[0]
    return start["status"], start["headers"], b"".join(m.get("body", b"") for m in sent[1:]), scope


def starlette_stack(app):
    """What the hot path passes other requests to: Starlette's middleware, router and routes."""
    stack = Starlette.build_middleware_stack(app)

    async def asgi(scope, receive, send):
        scope["app"] = app
        await stack(scope, receive, send)
    return asgi


def get(key: str, collection: str = "spikes") -> bytes:
    return json.dumps({"collection": collection, "key": key}).encode()


REQUESTS = [
    ("POST", "/api/v1/get", get("a" * 40), {}),                      # a hit
    ("POST", "/api/v1/get", get("b" * 40), {}),                      # a miss
    ("POST", "/api/v1/get", get("a" * 40), {"chunks": 3}),           # the body in several messages
    ("POST", "/api/v1/get", get("a" * 40, "nope"), {}),              # not the channel's collection: 404
    ("POST", "/api/v1/get", get("a" * 40), {"password": RO_PASSWORD}),  # wrong password: 401
    ("POST", "/api/v1/get", get("a" * 40), {"sign": False}),         # unsigned: 401
    ("POST", "/api/v1/get", b"{not json", {}),                       # 400
    ("POST", "/api/v1/get", b"[1, 2]", {}),                          # 400: not an object
    ("POST", "/api/v1/get", b"{}", {}),                              # 400: no collection
    ("POST", "/api/v1/get", b" " * (MAX_BODY + 1), {}),              # 413 from Content-Length
    ("POST", "/api/v1/get", b'{"collection": "spikes", "key": 7}', {}),  # 400: not a key
    ("POST", "/api/v1/set", json.dumps({"collection": "spikes", "key": "c" * 40, "value": "v"}).encode(), {}),
    ("POST", "/api/v1/set", json.dumps({"collection": "spikes", "key": "c" * 40, "value": "v"}).encode(),
     {"channel": "public-ro", "password": RO_PASSWORD}),             # 403: read-only
    ("POST", "/api/v1/get_many", json.dumps({"collection": "spikes", "keys": ["a" * 40, "d" * 40]}).encode(), {}),
    ("POST", "/api/v1/set_many", json.dumps({"collection": "spikes", "pairs": {"e" * 40: "v"}}).encode(), {}),
    ("POST", "/api/v1/delete", get("e" * 40), {}),
    ("GET", "/api/v1/probe", b"", {}),
    ("HEAD", "/api/v1/probe", b"", {}),
    ("GET", "/api/v1/leases", b"", {}),
    ("POST", "/api/v1/lease/acquire", json.dumps({"collection": "spikes", "key": "f" * 40, "owner": "me",
                                                  "ttl": 30}).encode(), {}),
]


@pytest.mark.parametrize(("method", "path", "body", "options"), REQUESTS,
                         ids=[f"{m} {p} {i}" for i, (m, p, _, _) in enumerate(REQUESTS)])
def test_the_hot_path_answers_as_starlettes_stack(app, method, path, body, options):
    hot = call(app, method, path, body, **options)
    assert "endpoint" not in hot[3], "the request went through Starlette's router"
    slow = call(starlette_stack(app), method, path, body, **options)
    assert "endpoint" in slow[3]
    assert comparable(hot) == comparable(slow)


def comparable(answer):
    """An answer's status, headers and body, but the clock time a lease listing gives."""
    status, headers, body, _ = answer
    if body.startswith(b'{"now":'):
        obj = json.loads(body)
        obj.pop("now")
        return status, [h for h in headers if h[0] != b"content-length"], obj
    return status, headers, body


def requests_counted(app) -> dict[tuple, float]:
    counted = {}
    for metric in app.state.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name.startswith(("pairio_requests_total", "pairio_received_bytes_total",
                                       "pairio_sent_bytes_total", "pairio_lookups_total",
                                       "pairio_request_seconds_count")):
                counted[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    # A lease listing gives the clock time: its length varies by a digit or two.
    counted.pop(("pairio_sent_bytes_total", (("route", "/api/v1/leases"),)))
    return counted


def test_the_hot_path_counts_what_starlettes_stack_counts(app):
    for method, path, body, options in REQUESTS:
        call(app, method, path, body, **options)
    once = requests_counted(app)
    assert once[("pairio_requests_total", (("route", "/api/v1/get"), ("status", "200")))] == 3
    for method, path, body, options in REQUESTS:
        call(starlette_stack(app), method, path, body, **options)
    twice = requests_counted(app)
    assert twice == {name: 2 * value for name, value in once.items()}


def test_other_requests_go_through_starlette(app):
    # A method the path does not take, a path with parameters, a trailing slash, a page.
    assert call(app, "GET", "/api/v1/get")[0] == 405
    assert "endpoint" in call(app, "GET", "/api/v1/health")[3]
    assert call(app, "GET", "/api/v1/content/sha1/" + "0" * 40)[0] in (401, 404)
    assert call(app, "POST", "/api/v1/get/", get("a" * 40))[0] in (307, 404)
    assert call(app, "GET", "/metrics", sign=False)[0] == 200


def test_a_middleware_added_sees_every_request(app):
    seen = []

    async def note(request, call_next):
        seen.append(request.url.path)
        response = await call_next(request)
        response.headers["x-seen"] = "yes"
        return response

    app.add_middleware(BaseHTTPMiddleware, dispatch=note)
    status, headers, body, scope = call(app, "POST", "/api/v1/get", get("a" * 40))
    assert (status, body, seen) == (200, b'{"value":"value-a"}', ["/api/v1/get"])
    assert (b"x-seen", b"yes") in headers


# --- uvicorn's protocol: one write for a small response ---------------------------------------------


class WriteCounter:
    """A real transport, its writes noted."""

    def __init__(self, transport) -> None:
        self._transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


def serve_once(app, requests_: list[bytes], head_only: bool = False) -> tuple[list[bytes], bytes]:
    """Send ``requests_`` one after the other on one loopback connection to uvicorn's protocol as
    ``pairio serve`` runs it: the protocol's writes, and all the client read (``head_only``: the
    answers have no body, as to HEAD)."""
    import uvicorn
    from uvicorn.server import ServerState

    from pairio.server.http import HeadLimitedHttpToolsProtocol

    config = uvicorn.Config(app, http=HeadLimitedHttpToolsProtocol, lifespan="off", log_level="warning")
    config.load()
    counters: list[WriteCounter] = []

    class Counted(HeadLimitedHttpToolsProtocol):
        def connection_made(self, transport) -> None:
            counters.append(WriteCounter(transport))
            super().connection_made(counters[-1])

    async def run() -> bytes:
        state = ServerState()
        server = await asyncio.get_running_loop().create_server(
            lambda: Counted(config=config, server_state=state, app_state={}), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answers = b""
        for n, request in enumerate(requests_, 1):
            writer.write(request)
            while answers.count(b"HTTP/1.1 ") < n or not _complete(answers, head_only):
                chunk = await asyncio.wait_for(reader.read(65536), 10)
                if not chunk:
                    break
                answers += chunk
        writer.close()
        server.close()
        await server.wait_closed()
        return answers

    answers = asyncio.run(run())
    return counters[0].writes, answers


def _complete(data: bytes, head_only: bool) -> bool:
    """Whether the last response in ``data`` has its head and (unless ``head_only``) all its body."""
    last = data[data.rfind(b"HTTP/1.1 "):]
    head, sep, body = last.partition(b"\r\n\r\n")
    if not sep or head_only:
        return bool(sep)
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    return len(body) >= length


def http_request(method: str, path: str, body: bytes = b"", extra: str = "") -> bytes:
    signed = sign_request("lab-rw", RW_PASSWORD, method, path, body)
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n{extra}"
    return (head + "".join(f"{k}: {v}\r\n" for k, v in signed.items()) + "\r\n").encode() + body


def test_a_small_response_goes_out_in_one_write(app):
    writes, answers = serve_once(app, [http_request("POST", "/api/v1/get", get("a" * 40)),
                                       http_request("POST", "/api/v1/get", get("b" * 40))])
    assert len(writes) == 2, writes  # one a response
    assert writes[0].startswith(b"HTTP/1.1 200") and writes[0].endswith(b'{"value":"value-a"}')
    assert writes[1].startswith(b"HTTP/1.1 200") and writes[1].endswith(b'{"value":null}')
    assert answers == writes[0] + writes[1]


def test_a_response_without_body_bytes_still_has_its_head(app):
    # HEAD: uvicorn writes no body, so the head goes out alone at the end of the response.
    writes, answers = serve_once(app, [http_request("HEAD", "/api/v1/probe")], head_only=True)
    assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 200") and writes[0].endswith(b"\r\n\r\n")


def test_a_closing_response_is_written_before_the_connection_closes(app):
    writes, answers = serve_once(app, [http_request("POST", "/api/v1/get", get("a" * 40), "Connection: close\r\n")])
    assert len(writes) == 1 and b"connection: close" in writes[0].lower()
    assert answers == writes[0] and answers.endswith(b'{"value":"value-a"}')
