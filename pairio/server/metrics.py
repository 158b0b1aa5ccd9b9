"""What operators watch: ``/metrics`` in the Prometheus text format, and one JSON log line
per request.

:class:`Observer` is an ASGI middleware around Starlette's routes, and the hot path
(:mod:`pairio.server.dispatch`) does the same for the signed JSON endpoints, both through
:meth:`Metrics.observe`. For each request it counts the status by route (the route's
template, e.g. ``/api/v1/get``, never a key from a path), the latency, the bytes in and
out, and writes one line to the logger ``pairio.server.access``::

    {"channel":"lab-rw","method":"POST","route":"/api/v1/get","status":200,"bytes_in":71,"bytes_out":15,"ms":0.41}

It never logs a query string, a header, a password or a signature: only the channel the
request was signed by (once its signature checked out).

Under several worker processes (``pairio serve --workers N``), prometheus-client's
multiprocess mode adds up every process's figures: ``PROMETHEUS_MULTIPROC_DIR`` names a
directory the processes share (``pairio serve`` makes one when it is not set).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

access_log = logging.getLogger("pairio.server.access")

# Where one request's facts are gathered, in its ASGI scope, by the handlers and the observer.
SCOPE_KEY = "pairio.request"
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# The route of one object by SHA-1: a GET or HEAD of it is a content hit (200, 206) or miss (404).
_CONTENT_OBJECT = "/content/sha1/{sha1}"
# How long a figure that is costly to gather (objects stored, leases held) is reused.
SLOW_FIGURES_SECONDS = 30.0


def note(scope: dict[str, Any], **facts: Any) -> None:
    """Record facts about the request of ``scope`` (e.g. its channel) for its log line."""
    info = scope.get(SCOPE_KEY)
    if info is not None:
        info.update(facts)


class Metrics:
    """The server's Prometheus metrics, in a registry of their own (several apps may share a process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        registry = self.registry = CollectorRegistry()
        self.requests = Counter("pairio_requests", "Requests answered, by route and HTTP status",
                                ["route", "status"], registry=registry)
        self.latency = Histogram("pairio_request_seconds", "Time to answer a request, by route",
                                 ["route"], buckets=_LATENCY_BUCKETS, registry=registry)
        self.in_progress = Gauge("pairio_requests_in_progress", "Requests being answered",
                                 registry=registry, multiprocess_mode="livesum")
        self.bytes_in = Counter("pairio_received_bytes", "Request body bytes received, by route",
                                ["route"], registry=registry)
        self.bytes_out = Counter("pairio_sent_bytes", "Response body bytes sent, by route",
                                 ["route"], registry=registry)
        self.lookups = Counter("pairio_lookups", "Keys or objects looked up by requests that succeeded: "
                               "hits and misses (failed requests count in pairio_requests_total only)",
                               ["kind", "result"], registry=registry)
        self.stored_objects = Gauge("pairio_content_objects", "Objects in the content backend",
                                    registry=registry, multiprocess_mode="mostrecent")
        self.stored_bytes = Gauge("pairio_content_bytes", "Bytes of the objects in the content backend",
                                  registry=registry, multiprocess_mode="mostrecent")
        self.leases_held = Gauge("pairio_leases_held", "Unexpired leases held", registry=registry,
                                 multiprocess_mode="mostrecent")
        self._slow_until = 0.0
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def count_lookups(self, kind: str, hits: int, misses: int) -> None:
        """Count ``hits`` and ``misses`` among the keys (``kind='pairs'``) or objects a request looked up."""
        if hits:
            self._child(self.lookups, kind, "hit").inc(hits)
        if misses:
            self._child(self.lookups, kind, "miss").inc(misses)

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once: prometheus-client takes a lock and builds a
        tuple for each ``labels`` call, and every request makes several."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, scope: dict[str, Any], route: str, status: int, bytes_in: int, bytes_out: int,
                seconds: float, info: dict[str, Any]) -> None:
        """Count one answered request of ``route`` and write its access-log line."""
        self._child(self.requests, route, str(status)).inc()
        method = scope["method"]
        if route.endswith(_CONTENT_OBJECT) and method in ("GET", "HEAD") and status in (200, 206, 404):
            self.count_lookups("content", status != 404, status == 404)
        self._child(self.latency, route).observe(seconds)
        if bytes_in:
            self._child(self.bytes_in, route).inc(bytes_in)
        if bytes_out:
            self._child(self.bytes_out, route).inc(bytes_out)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(json.dumps({
                "channel": info.get("channel"), "method": method, "route": route,
                "status": status, "bytes_in": bytes_in, "bytes_out": bytes_out,
                "ms": round(seconds * 1000, 3),
            }, separators=(",", ":")))

    def exposition(self, leases: Callable[[], int] | None, content_usage: Callable[[], tuple[int, int] | None]
                   | None) -> tuple[bytes, str]:
        """The text to answer a scrape with, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

        now = time.monotonic()
        if now >= self._slow_until:
            # Counting leases is a query, and content usage may walk a directory or list a
            # bucket: at most once per SLOW_FIGURES_SECONDS per process.
            self._slow_until = now + SLOW_FIGURES_SECONDS
            if leases is not None:
                self.leases_held.set(leases())
            usage = content_usage() if content_usage is not None else None
            if usage is not None:
                self.stored_objects.set(usage[0])
                self.stored_bytes.set(usage[1])
        registry = self.registry
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST


class Observer:
    """ASGI middleware: metrics and one access-log line for every HTTP request."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.metrics
        start = time.perf_counter()
        info: dict[str, Any] = {}
        scope[SCOPE_KEY] = info
        counts = {"in": 0, "out": 0, "status": 500}

        async def counting_receive():
            message = await receive()
            if message["type"] == "http.request":
                counts["in"] += len(message.get("body", b""))
            return message

        async def counting_send(message) -> None:
            if message["type"] == "http.response.start":
                counts["status"] = message["status"]
            elif message["type"] == "http.response.body":
                counts["out"] += len(message.get("body", b""))
            await send(message)

        metrics.in_progress.inc()
        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            metrics.in_progress.dec()
            route = getattr(scope.get("route"), "path", None) or "(no route)"
            metrics.observe(scope, route, counts["status"], counts["in"], counts["out"],
                            time.perf_counter() - start, info)
