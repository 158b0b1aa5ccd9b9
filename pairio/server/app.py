"""The ASGI application: the versioned JSON API over one key/value store.

Handlers call the embedded store directly on the event loop: an SQLite read takes
microseconds, less than a hop to a thread pool would cost. Backends that wait on the
network (PostgreSQL: ``blocking = True``) are called from a worker thread instead, one
hop per request for the signature check, rate limit and operation together, so one
request's round trips to the database do not stall the others.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._version import __version__
from ..errors import ContentNotFoundError, InvalidInputError, InvalidValueError, PairioError
from ..hashing import check_value, is_sha1_hex
from ..kv.base import KeyValueStore
from .auth import ApiError, Guard, read_body, receive_body
from .backends import ContentBackend, Coordination, MemoryCoordination
from .content import content_routes
from .dispatch import ServerApp, hot_routes
from .leases import lease_routes
from .metrics import Metrics, Observer
from .openapi import openapi_document
from .records import Recorder, content_counter, open_records, parse_records, record_routes
from .responses import API, Handler, json_response, request_key
from .settings import MAX_PAIRS_PER_REQUEST, SERVE_DIRECTORY_VARIABLE, ServerSettings, load_settings
from .status import ServerSource
from .status_routes import status_routes

log = logging.getLogger("pairio.server")

# get_many may return small objects with their keys' values (a remote hit in one request).
MAX_INLINE_BYTES = 64 << 10
MAX_INLINE_TOTAL_BYTES = 1 << 20


def open_store(settings: ServerSettings) -> KeyValueStore:
    """The store pairio.json names: PostgreSQL if it names a ``database``, else the embedded store."""
    return open_backends(settings)[0]


def open_backends(settings: ServerSettings) -> tuple[KeyValueStore, Coordination]:
    """The pairs and the coordination pairio.json names.

    With a ``database``, both live in PostgreSQL, shared by every replica; otherwise the
    pairs are in the embedded store and coordination in this process's memory.
    """
    if settings.database is not None:
        from .backends.postgres import PostgresCoordination, PostgresDatabase, PostgresStore

        # Nonces, buckets and leases need not survive a crash of the database server
        # (a lost nonce reopens a replay window of minutes at most), so their commits do
        # not wait for the disk; the pairs' commits do.
        return (PostgresStore(PostgresDatabase(settings.database)),
                PostgresCoordination(PostgresDatabase(settings.database, synchronous_commit=False)))
    from ..kv.embedded import EmbeddedStore

    # The content beside it: a database lost while that holds objects is an error, not an empty store.
    content_dir = settings.content.path if settings.content.backend == "directory" else None
    return EmbeddedStore(settings.store.path, content_dir), MemoryCoordination()


def open_content(settings: ServerSettings) -> ContentBackend:
    """The content backend pairio.json names: a content store directory (in the server
    directory), or an S3-compatible bucket."""
    if settings.content.backend == "s3":
        from .backends.s3 import S3Content

        c = settings.content
        return S3Content(c.bucket, prefix=c.prefix, endpoint_url=c.endpoint, region=c.region)
    from .backends import DirectoryContent

    return DirectoryContent(settings.content.path)


def create_app(
    directory_or_settings: str | os.PathLike[str] | ServerSettings,
    store: KeyValueStore | None = None,
    coordination: Coordination | None = None,
    content: ContentBackend | None = None,
) -> Starlette:
    """The pairio server for a directory holding pairio.json (or for settings already loaded).

    ``store`` (the pairs), ``coordination`` (nonces, rate limits, quotas, leases) and
    ``content`` (the files by SHA-1) default to what pairio.json names.
    """
    settings = (
        directory_or_settings
        if isinstance(directory_or_settings, ServerSettings)
        else load_settings(directory_or_settings)
    )
    if store is None or coordination is None:
        default_store, default_coordination = open_backends(settings)
        store = default_store if store is None else store
        coordination = default_coordination if coordination is None else coordination
    content = open_content(settings) if content is None else content
    guard = Guard(settings, coordination)
    metrics = Metrics()
    recorder = Recorder(open_records(store, coordination))
    api = _Api(settings, guard, store, metrics, content, recorder)
    routes = [
        Route(f"{API}/health", api.health, methods=["GET"]),
        Route(f"{API}/probe", api.endpoint(api.probe), methods=["GET"]),
        Route(f"{API}/get", api.endpoint(api.get), methods=["POST"]),
        Route(f"{API}/set", api.endpoint(api.set), methods=["POST"]),
        Route(f"{API}/delete", api.endpoint(api.delete), methods=["POST"]),
        Route(f"{API}/get_many", api.endpoint(api.get_many, api.inline_blocking), methods=["POST"]),
        Route(f"{API}/set_many", api.endpoint(api.set_many), methods=["POST"]),
        Route("/openapi.json", api.openapi, methods=["GET"]),
        Route("/metrics", api.metrics_page, methods=["GET"]),
    ]

    routes += lease_routes(api.endpoint, guard, store)
    routes += record_routes(api.endpoint, settings, recorder)
    routes += content_routes(settings, guard, content, content_counter(settings, recorder))
    if settings.legacy:
        from .legacy import legacy_content_routes, legacy_routes

        # The content routes first: /get/sha1/<hash> is content, not the collection "sha1".
        routes += legacy_content_routes(settings, guard, content)
        routes += legacy_routes(guard, store)
    # Last: routes are matched in order, and the page is not the hot path.
    routes += status_routes(settings, guard, ServerSource(recorder.backend, guard.coordination, api.problems,
                                                          recorder.flush, store))
    app = ServerApp(routes=one_route_per_path(routes), middleware=[Middleware(Observer, metrics=metrics)],
                    lifespan=flushing_at_shutdown(recorder))
    app.state.settings = settings
    app.state.store = store
    app.state.content = content
    app.state.coordination = guard.coordination
    app.state.metrics = metrics
    app.state.records = recorder.backend  # a RecordStore, or None
    app.state.recorder = recorder
    # The signed JSON endpoints are answered without Starlette's routing and middleware (see dispatch).
    app.hot = hot_routes(routes)
    return app


def flushing_at_shutdown(recorder: Recorder) -> Callable[[Starlette], Any]:
    """A lifespan that writes the records, hits and bytes ``recorder`` holds when the server stops:
    counts stay exact across a restart."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await run_in_threadpool(recorder.flush)

    return lifespan


def one_route_per_path(routes: list[Route]) -> list[Route]:
    """``routes`` with those of one path merged into one route that dispatches on the method (in
    the place of the first), so a method none of them takes is answered 405 with an ``Allow``
    header listing every method the path takes (Starlette lists only the first route's)."""
    groups: dict[str, list[Route]] = {}
    for route in routes:
        groups.setdefault(route.path, []).append(route)
    merged = []
    for path, group in groups.items():
        if len(group) == 1:
            merged.append(group[0])
            continue
        handlers: dict[str, Handler] = {}
        for route in group:
            for method in sorted(route.methods or ()):
                handlers.setdefault(method, route.endpoint)

        async def dispatch(request: Request, handlers: dict[str, Handler] = handlers) -> Response:
            return await handlers[request.method](request)

        route = Route(path, dispatch, methods=list(handlers))
        route.methods = set(handlers)  # as given: HEAD only where a GET route takes it
        merged.append(route)
    return merged


def backend_problems(store: KeyValueStore, coordination: Coordination, content: ContentBackend | None,
                     detail: bool = False) -> list[str]:
    """Each of the server's backends probed: the causes of those that cannot be used. Without
    ``detail`` (an unsigned answer), a cause names the backend and the failure, not its paths (they
    are logged)."""
    causes = []
    for name, backend in (("pairs store", store), ("coordination", coordination), ("content store", content)):
        if backend is None:
            continue
        try:
            backend.check()
        except (PairioError, OSError) as exc:
            if detail:
                causes.append(f"{name}: {exc}")
                continue
            log.error("health: %s unusable: %s", name, exc)
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            # The paths and the URL it names stay in the log: a path by its last part, the URL not at all.
            if message.startswith("pairio database postgres") and ": " in message:
                message = "database: " + message.split(": ", 1)[1]
            message = re.sub(r"'(/[^']*)'", lambda m: repr(os.path.basename(m.group(1))), message)
            causes.append(f"{name}: {message[:300]}")
    return causes


def app_from_environment() -> Starlette:
    """The app for the directory ``pairio serve --workers N`` names in its workers' environment."""
    return create_app(os.environ[SERVE_DIRECTORY_VARIABLE])


class _Api:
    """The route handlers, bound to one settings/guard/store."""

    def __init__(self, settings: ServerSettings, guard: Guard, store: KeyValueStore, metrics: Metrics,
                 content: ContentBackend | None = None, recorder: Recorder | None = None) -> None:
        self.settings = settings
        self.recorder = Recorder(None) if recorder is None else recorder
        self.guard = guard
        self.store = store
        self.metrics = metrics
        self.content = content
        self.blocking = getattr(store, "blocking", False) or getattr(guard.coordination, "blocking", False)
        # Small objects read with get_many (inline) come from the content backend too.
        self.inline_blocking = self.blocking or getattr(content, "blocking", False)
        self._openapi = json.dumps(openapi_document(__version__)).encode("utf-8")

    def endpoint(self, operation: Callable[[str, Any], Response], blocking: bool | None = None) -> Handler:
        """Wrap ``operation(channel, body_json)`` with size, signature and error handling; run it in a
        thread if ``blocking`` (default: if the store or the coordination waits on the network)."""
        guard = self.guard
        limit = self.settings.max_body_bytes
        blocking = self.blocking if blocking is None else blocking

        def respond(scope: dict[str, Any], body: bytes) -> Response:
            try:
                channel = guard.authenticate_scope(scope, body)
                # Starlette answers HEAD on every GET route: neither carries a JSON body.
                if scope["method"] in ("GET", "HEAD"):
                    return operation(channel, None)
                try:
                    obj = json.loads(body)
                except (ValueError, RecursionError):
                    raise ApiError(400, "request body is not valid JSON") from None
                if not isinstance(obj, dict):
                    raise ApiError(400, "request body must be a JSON object")
                return operation(channel, obj)
            except ApiError as exc:
                return json_response({"error": exc.message}, exc.status, exc.headers)
            except InvalidInputError as exc:  # bad input the store refused: never an outage
                return json_response({"error": str(exc)}, 400)
            except PairioError as exc:  # the store failed: log the detail, keep paths private
                log.error("store error: %s", exc)
                return json_response({"error": "the server's store is unavailable"}, 503)

        async def handle(request: Request) -> Response:
            try:
                body = await read_body(request, limit)
            except ApiError as exc:
                return json_response({"error": exc.message}, exc.status, exc.headers)
            if blocking:
                return await run_in_threadpool(respond, request.scope, body)
            return respond(request.scope, body)

        async def answer(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                         ) -> tuple[int, Response]:
            # handle() for the hot path (pairio.server.dispatch), from the ASGI scope itself; with the
            # size of the body received.
            try:
                body = await receive_body(scope, receive, limit)
            except ApiError as exc:
                return 0, json_response({"error": exc.message}, exc.status, exc.headers)
            if blocking:
                return len(body), await run_in_threadpool(respond, scope, body)
            return len(body), respond(scope, body)

        handle.answer = answer  # type: ignore[attr-defined]
        return handle

    # --- routes ----------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        """``ok``, or 503 with the cause where the pairs store, the coordination or the content cannot
        be used now (each is probed with one cheap read)."""
        causes = await run_in_threadpool(self.problems) if self.inline_blocking else self.problems()
        if causes:
            return json_response({"status": "unavailable", "causes": causes, "version": __version__, "api": "v1"},
                                 503, {"Retry-After": "10"})
        return json_response({"status": "ok", "version": __version__, "api": "v1"})

    def problems(self) -> list[str]:
        """What cannot be used now, one cause each: the pairs store, the coordination, the content."""
        return backend_problems(self.store, self.guard.coordination, self.content)

    async def openapi(self, request: Request) -> Response:
        return Response(self._openapi, media_type="application/json")

    async def metrics_page(self, request: Request) -> Response:
        coordination = self.guard.coordination
        body, content_type = await run_in_threadpool(
            self.metrics.exposition, lambda: len(coordination.leases()), getattr(self.content, "usage", None))
        return Response(body, headers={"Content-Type": content_type})

    def probe(self, channel: str, obj: None) -> Response:
        collections = {
            name: {"get": c.max_gets_per_minute > 0, "set": c.max_sets_per_minute > 0}
            for name, c in self.settings.channels[channel].collections.items()
        }
        rights = self.settings.channels[channel].content
        return json_response({"channel": channel, "collections": collections,
                              "content": {"read": rights.read, "write": rights.write}})

    def get(self, channel: str, obj: dict) -> Response:
        collection = self.guard.collection(channel, obj.get("collection"))
        key = request_key(obj.get("key"), "key")
        self.guard.allow(channel, collection, "get")
        value = self.store.get(collection.name, key)
        self.metrics.count_lookups("pairs", value is not None, value is None)
        if value is not None:
            self.recorder.hit(collection.name, (key,))
        return json_response({"value": value})

    def set(self, channel: str, obj: dict) -> Response:  # noqa: A003
        collection = self.guard.collection(channel, obj.get("collection"))
        key = request_key(obj.get("key"), "key")
        value = _value(obj.get("value"), "value", key)
        records = parse_records(obj.get("records"), {key: value}, collection.name, channel)
        self.guard.allow(channel, collection, "set")
        if records:
            self.recorder.set_with_records(self.store, collection.name, {key: value}, records)
        else:
            self.store.set(collection.name, key, value)
        return json_response({"ok": True})

    def delete(self, channel: str, obj: dict) -> Response:
        collection = self.guard.collection(channel, obj.get("collection"))
        key = request_key(obj.get("key"), "key")
        self.guard.allow(channel, collection, "set")
        self.store.delete(collection.name, key)
        return json_response({"ok": True})

    def get_many(self, channel: str, obj: dict) -> Response:
        collection = self.guard.collection(channel, obj.get("collection"))
        keys = obj.get("keys")
        if not isinstance(keys, list):
            raise ApiError(400, "field 'keys' must be a list of keys")
        _check_count(len(keys), "keys")
        checked = [request_key(k, f"keys[{i}]") for i, k in enumerate(keys)]
        inline = obj.get("inline", 0)
        if isinstance(inline, bool) or not isinstance(inline, int) or not 0 <= inline <= MAX_INLINE_BYTES:
            raise ApiError(400, f"field 'inline' must be a number of bytes from 0 to {MAX_INLINE_BYTES}")
        self.guard.allow(channel, collection, "get", len(checked))
        values = self.store.get_many(collection.name, checked)
        self.metrics.count_lookups("pairs", len(values), len(set(checked)) - len(values))
        if values:
            self.recorder.hit(collection.name, values)
        if inline and self.content is not None and self.settings.channels[channel].content.read:
            return json_response({"values": values, "content": self._inline(values.values(), inline)})
        return json_response({"values": values})

    def _inline(self, values: Iterable[str], max_bytes: int) -> dict[str, str]:
        """The content of those ``values`` that are SHA-1s of objects of at most ``max_bytes``, base64.

        Not verified here: the client checks each object's hash, as it does for a download.
        """
        out: dict[str, str] = {}
        budget = MAX_INLINE_TOTAL_BYTES
        for value in dict.fromkeys(values):
            if not is_sha1_hex(value):
                continue
            size = self.content.size(value)  # type: ignore[union-attr]
            if size is None or size > min(max_bytes, budget):
                continue
            try:
                data = b"".join(self.content.read(value))  # type: ignore[union-attr]
            except ContentNotFoundError:  # removed meanwhile
                continue
            budget -= len(data)
            out[value] = base64.b64encode(data).decode("ascii")
        return out

    def set_many(self, channel: str, obj: dict) -> Response:
        collection = self.guard.collection(channel, obj.get("collection"))
        pairs = obj.get("pairs")
        if not isinstance(pairs, dict):
            raise ApiError(400, "field 'pairs' must be an object mapping keys to values (null deletes)")
        _check_count(len(pairs), "pairs")
        checked = {}
        for k, v in pairs.items():
            key = request_key(k, "pairs")
            checked[key] = None if v is None else _value(v, f"pairs[{key!r}]", key)
        records = parse_records(obj.get("records"), checked, collection.name, channel)
        self.guard.allow(channel, collection, "set", len(checked))
        if records:
            self.recorder.set_with_records(self.store, collection.name, checked, records)
        elif checked:
            self.store.set_many(collection.name, checked)
        return json_response({"ok": True})


def _value(value: object, field: str, key: str) -> str:
    try:
        return check_value(value, key)
    except InvalidValueError as exc:
        raise ApiError(400, f"field {field!r}: {exc}") from None


def _check_count(n: int, field: str) -> None:
    if n > MAX_PAIRS_PER_REQUEST:
        raise ApiError(400, f"field {field!r} has {n} entries; the limit is {MAX_PAIRS_PER_REQUEST} a request")
