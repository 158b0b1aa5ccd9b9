"""The hot path: the API's signed JSON endpoints answered by one dictionary lookup.

Starlette's stack (its error middleware, :class:`~pairio.server.metrics.Observer`, its exception
middleware, the router trying each route's pattern in turn, a Request and a response object sent
through two wrapped ``send`` functions) cost a single get more than its signature check and its
SQLite read together. :class:`HotPath` sits in front of that stack: a request whose method and
exact path name an endpoint made by ``_Api.endpoint`` is answered here, with the same checks, the
same responses, the same metrics and access-log line; every other request (a path with parameters,
a method the path does not take, a trailing slash, the HTML and metrics pages) goes on through
Starlette, unchanged.

A middleware given to the app besides the Observer must see every request: with one, the hot path
is left out and everything goes through Starlette (correct, and slower).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from .metrics import SCOPE_KEY, Metrics, Observer

log = logging.getLogger("pairio.server")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]
# An endpoint's answer to one request, from its scope and receive (``_Api.endpoint``'s ``answer``):
# the bytes of the request body, and the response.
Answer = Callable[[dict[str, Any], Receive], Awaitable[tuple[int, Response]]]


def hot_routes(routes: Iterable[Route]) -> dict[tuple[str, str], tuple[str, Answer]]:
    """``(method, path) -> (route path, answer)`` for each route of a fixed path whose endpoint has an
    ``answer`` (made by ``_Api.endpoint``); the first route of a path and method wins, as in Starlette."""
    table: dict[tuple[str, str], tuple[str, Answer]] = {}
    taken: set[tuple[str, str]] = set()
    for route in routes:
        for method in sorted(route.methods or ()):
            key = (method, route.path)
            if key in taken:
                continue
            taken.add(key)
            answer = getattr(route.endpoint, "answer", None)
            if answer is not None and "{" not in route.path:
                table[key] = (route.path, answer)
    return table


class ServerApp(Starlette):
    """Starlette with :class:`HotPath` in front of its middleware for the routes of ``hot`` (set it
    after construction: a table of :func:`hot_routes`); built when the app first runs, as Starlette's
    stack is, so routes and middleware may still be added until then."""

    hot: Mapping[tuple[str, str], tuple[str, Answer]] | None = None

    def build_middleware_stack(self) -> ASGIApp:  # noqa: D102
        stack = super().build_middleware_stack()
        metrics = getattr(self.state, "metrics", None)
        if not self.hot or metrics is None or any(m.cls is not Observer for m in self.user_middleware):
            return stack
        return HotPath(stack, self.hot, metrics)


class HotPath:
    """ASGI app: the endpoints of ``table`` answered directly, everything else passed to ``app``."""

    def __init__(self, app: ASGIApp, table: Mapping[tuple[str, str], tuple[str, Answer]],
                 metrics: Metrics) -> None:
        self.app = app
        self.table = dict(table)
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            root = scope.get("root_path")
            if root and path.startswith(root) and path[len(root):len(root) + 1] == "/":
                path = path[len(root):]  # as Starlette's router strips the root path
            hot = self.table.get((scope["method"], path))
            if hot is not None:
                await self._answer(hot[0], hot[1], scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _answer(self, route: str, answer: Answer, scope: dict[str, Any], receive: Receive,
                      send: Send) -> None:
        """Answer with ``answer``, counted and logged as :class:`~pairio.server.metrics.Observer` does."""
        metrics = self.metrics
        start = time.perf_counter()
        info: dict[str, Any] = {}
        scope[SCOPE_KEY] = info
        status, bytes_in, bytes_out = 500, 0, 0
        metrics.in_progress.inc()
        try:
            try:
                bytes_in, response = await answer(scope, receive)
            except ClientDisconnect:
                return  # nobody to answer (counted as a 500, as Starlette's stack would)
            except Exception:
                # As Starlette's error middleware: a plain 500, then the exception for the server to log.
                await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send)
                raise
            body = response.body
            status = response.status_code
            if response.background is None and isinstance(body, bytes):
                await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
                await send({"type": "http.response.body", "body": body})
                bytes_out = len(body)
            else:
                await response(scope, receive, send)
                bytes_out = len(body) if isinstance(body, bytes) else 0
        finally:
            metrics.in_progress.dec()
            metrics.observe(scope, route, status, bytes_in, bytes_out, time.perf_counter() - start, info)
