"""The status page's routes: HTML at ``/`` (and ``/steps``, ``/misses``, ``/entry``, ``/leases``,
``/health``), and each view's JSON under ``/api/v1/status/...``.

Who may look is decided by an :class:`Access`: on the server (:class:`ChannelAccess`) a signed
request or a session cookie names a channel, which sees only the collections it may read; for
``pairio ui`` (:class:`TokenAccess`) the random token printed in its URL, kept in a cookie after the
first visit. Every view only reads: the one route that changes anything here, the sign-in, takes a
signed request (and sign-out only clears the caller's own cookie), so a page of another site cannot
act for a visitor (no CSRF).
"""

from __future__ import annotations

import abc
import dataclasses
import hmac
import time
from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..errors import InvalidInputError, PairioError
from ..signing import HEADER_SIGNATURE, INVALID_SIGNATURE
from . import sessions, status, status_page
from .auth import ApiError, Guard, read_body
from .ratelimit import RateLimiter, retry_after_header
from .responses import API, json_response, request_key
from .settings import ServerSettings

STATUS = f"{API}/status"
UI_COOKIE = "pairio_ui"
# Failed sign-ins (a bad signature or a forged session cookie) a client address may make per
# minute before its sign-ins and status requests are refused (429) without checking them.
FAILED_SIGNINS_PER_MINUTE = 10


@dataclasses.dataclass(frozen=True)
class Viewer:
    """Who looks: a name for the header and the collections they may read (None: every one)."""

    name: str | None
    collections: Collection[str] | None
    signout: bool = False
    channel: str | None = None  # the channel, on the server (its status views are rate limited)


class Access(abc.ABC):
    """How a request shows who looks: the server's channels, or ``pairio ui``'s token."""

    @abc.abstractmethod
    def viewer(self, request: Request) -> Viewer | None:
        """The viewer of ``request``, or None if it shows none (ApiError 401 for a bad signature)."""

    @abc.abstractmethod
    def refused(self, request: Request, html: bool) -> Response:
        """The answer to a request without a viewer."""

    def limit(self, viewer: Viewer) -> None:
        """Take one status view from ``viewer``'s allowance: ApiError 429 past it (none by default)."""
        return None

    def routes(self) -> list[Route]:
        """Routes of its own (sign-in, sign-out)."""
        return []


class ChannelAccess(Access):
    """The server's: a signed request (as any client's) or the session cookie of a signed sign-in."""

    def __init__(self, settings: ServerSettings, guard: Guard) -> None:
        self.settings = settings
        self.guard = guard
        # Per client address: exactly in this process, and through the coordination backend shared
        # by every replica (PostgreSQL's), which tells each one when the address is past the limit.
        self.failures = RateLimiter()
        self.blocked: dict[str, float] = {}  # address -> when (time.monotonic()) the shared limit lets it in

    def readable(self, channel: str) -> list[str]:
        """The collections ``channel`` may read, sorted."""
        return sorted(name for name, c in self.settings.channels[channel].collections.items()
                      if c.max_gets_per_minute > 0)

    def _viewer(self, channel: str, signout: bool) -> Viewer:
        view = " (view only)" if self.settings.channels[channel].view else ""
        return Viewer(f"channel {channel}{view}", self.readable(channel), signout, channel)

    def _address(self, request: Request) -> tuple[str, str, str]:
        return ("pairio.signin", request.client.host if request.client else "", "failed")

    def _check_address(self, request: Request) -> None:
        bucket = self._address(request)
        wait = self.failures.wait(bucket, FAILED_SIGNINS_PER_MINUTE)
        until = self.blocked.get(bucket[1])
        if until is not None:
            wait = max(wait, until - time.monotonic())
            if wait <= 0:
                self.blocked.pop(bucket[1], None)
        if wait:
            raise ApiError(429, f"too many failed sign-ins from this address (at most {FAILED_SIGNINS_PER_MINUTE} "
                                f"a minute): try again in {retry_after_header(wait)} s",
                           {"Retry-After": retry_after_header(wait)})

    def _failed(self, request: Request) -> None:
        if len(self.failures) > 10_000:
            self.failures.forget_idle()
        bucket = self._address(request)
        self.failures.acquire(bucket, FAILED_SIGNINS_PER_MINUTE)
        wait = self.guard.coordination.take_tokens(bucket, FAILED_SIGNINS_PER_MINUTE)
        if wait:
            if len(self.blocked) > 10_000:
                now = time.monotonic()
                self.blocked = {a: t for a, t in self.blocked.items() if t > now}
            self.blocked[bucket[1]] = time.monotonic() + wait

    def viewer(self, request: Request, body: bytes = b"") -> Viewer | None:
        """Also ApiError 429 for an address past :data:`FAILED_SIGNINS_PER_MINUTE`, before any check."""
        self._check_address(request)
        if HEADER_SIGNATURE.lower() in request.headers:
            try:
                return self._viewer(self.guard.authenticate(request, body), False)
            except ApiError as exc:
                if exc.status == 401 and INVALID_SIGNATURE in exc.message:
                    self._failed(request)  # a wrong password: missing headers or a stale clock are no guess
                raise
        cookie = request.cookies.get(sessions.COOKIE)
        channel = sessions.check_token(cookie, self.settings.passwords)
        if channel is None and sessions.is_forged(cookie, self.settings.passwords):
            self._failed(request)
        return None if channel is None else self._viewer(channel, True)

    def limit(self, viewer: Viewer) -> None:
        if viewer.channel is None:
            return
        per_minute = self.settings.channels[viewer.channel].max_status_views_per_minute
        wait = self.guard.coordination.take_tokens((viewer.channel, "pairio.status", "view"), per_minute)
        if wait:
            raise ApiError(429, f"rate limit of {per_minute} status views per minute for channel "
                                f"{viewer.channel!r} exceeded (maxStatusViewsPerMinute in pairio.json): "
                                f"try again in {retry_after_header(wait)} s",
                           {"Retry-After": retry_after_header(wait)})

    def refused(self, request: Request, html: bool) -> Response:
        if not html:
            return json_response({"error": "sign in first: send a signed request, or the session cookie of "
                                           f"POST {STATUS}/session"}, 401)
        nonce = status_page.new_nonce()
        return Response(status_page.signin_page(nonce, _root(request)), 200, status_page.headers(nonce),
                        media_type="text/html")

    def routes(self) -> list[Route]:
        return [Route(f"{STATUS}/session", self.sign_in, methods=["POST"]),
                Route(f"{STATUS}/signout", self.sign_out, methods=["POST"])]

    async def sign_in(self, request: Request) -> Response:
        """A signed POST: answered with the session cookie of its channel (the password is never sent)."""
        try:
            body = await read_body(request, 1024)
            if HEADER_SIGNATURE.lower() in request.headers:
                viewer = await run_in_threadpool(self.viewer, request, body)  # a failure counts for the address
                channel = viewer.channel if viewer is not None else None
            else:
                channel = None
            if channel is None:
                channel = await run_in_threadpool(self.guard.authenticate, request, body)  # 401, naming what lacks
        except ApiError as exc:
            return json_response({"error": exc.message}, exc.status, exc.headers)
        token = sessions.make_token(channel, self.settings.channels[channel].password)
        response = json_response({"channel": channel, "seconds": sessions.SESSION_S})
        response.headers["Set-Cookie"] = sessions.cookie_header(token, _secure(request))
        return response

    async def sign_out(self, request: Request) -> Response:
        """Clear the caller's session cookie (it changes nothing else); 401 for a caller signed in by
        neither a session nor a signature."""
        try:
            body = await read_body(request, 1024)
            viewer = await run_in_threadpool(self.viewer, request, body)
        except ApiError as exc:
            return json_response({"error": exc.message}, exc.status, exc.headers)
        if viewer is None:
            return self.refused(request, html=False)
        response = json_response({"ok": True})
        response.headers["Set-Cookie"] = sessions.clear_cookie_header(_secure(request))
        return response


class TokenAccess(Access):
    """``pairio ui``'s: the token of its URL (``?token=``), then the cookie it is kept in, compared
    in constant time."""

    def __init__(self, token: str) -> None:
        self.token = token

    def _valid(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode())

    def viewer(self, request: Request) -> Viewer | None:
        if self._valid(request.query_params.get("token")) or self._valid(request.cookies.get(ui_cookie(request))):
            return Viewer("this machine's cache", None)
        return None

    def refused(self, request: Request, html: bool) -> Response:
        message = "open the URL that `pairio ui` printed (it holds the token)"
        if not html:
            return json_response({"error": message}, 403)
        nonce = status_page.new_nonce()
        page = status_page.layout("Token needed", status_page.not_found_body(message), nonce, active=None,
                                  source="local")
        return Response(page, 403, status_page.headers(nonce), media_type="text/html")


def ui_cookie(request: Request) -> str:
    """The name of the cookie that keeps ``pairio ui``'s token: one per port (cookies are kept per
    host, not per port, and each ``pairio ui`` has its own token)."""
    return f"{UI_COOKIE}_{request.url.port or 80}"


def _root(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


class StatusRoutes:
    """Each view's HTML page and JSON, over one source, for the viewers an :class:`Access` names."""

    def __init__(self, source: status.StatusSource, access: Access) -> None:
        self.source = source
        self.access = access

    def routes(self) -> list[Route]:
        """The pages, the JSON, and the access's own routes."""
        out = [Route(f"{STATUS}/{name}", self._json(name), methods=["GET"]) for name in _VIEWS]
        out += [Route("/" + ("" if name == "overview" else name), self._html(name), methods=["GET"])
                for name in _VIEWS]
        return out + self.access.routes()

    def _viewer(self, request: Request) -> Viewer | None:
        """The request's viewer, one status view taken from their allowance (ApiError 429 past it)."""
        viewer = self.access.viewer(request)
        if viewer is not None:
            self.access.limit(viewer)
        return viewer

    def view(self, name: str, viewer: Viewer, query: dict[str, str]) -> dict[str, Any] | None:
        """The dict of view ``name`` for ``viewer`` (None: not found); InvalidInputError for a bad query."""
        source, collections = self.source, viewer.collections
        if name == "overview":
            return status.overview(source, collections)
        if name == "steps":
            return status.steps(source, collections, query.get("by", "saved"))
        if name == "misses":
            return status.recent_misses(source, collections)
        if name == "leases":
            return status.leases(source, collections)
        if name == "health":
            return status.health(source)
        collection, key = query.get("collection"), query.get("key")
        if not collection or not key:
            raise InvalidInputError("query parameters 'collection' and 'key' are required")
        return status.entry(source, collections, collection, request_key(key, "key"))

    def _json(self, name: str) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            try:
                viewer = await run_in_threadpool(self._viewer, request)
                if viewer is None:
                    return self.access.refused(request, html=False)
                data = await run_in_threadpool(self.view, name, viewer, dict(request.query_params))
            except ApiError as exc:
                return json_response({"error": exc.message}, exc.status, exc.headers)
            except InvalidInputError as exc:
                return json_response({"error": str(exc)}, 400)
            except PairioError as exc:
                return json_response({"error": f"the store is unavailable: {type(exc).__name__}"}, 503)
            if data is None:
                return json_response({"error": "no such entry in a collection you may read"}, 404)
            return json_response(data, headers={"Cache-Control": "no-store"})

        return handle

    def _html(self, name: str) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            root = _root(request)
            try:
                viewer = await run_in_threadpool(self._viewer, request)
            except ApiError as exc:
                if exc.status != 429:
                    viewer = None
                else:
                    nonce = status_page.new_nonce()
                    page = status_page.layout("Too many requests", status_page.not_found_body(exc.message), nonce,
                                              root=root, active=None, source=self.source.kind)
                    return Response(page, 429, {**status_page.headers(nonce), **exc.headers}, media_type="text/html")
            if viewer is None:
                return self.access.refused(request, html=True)
            if "token" in request.query_params and isinstance(self.access, TokenAccess):
                # The token goes into an HttpOnly cookie and out of the address bar (and history).
                query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
                redirect = RedirectResponse(request.url.path + (f"?{query}" if query else ""), 303)
                redirect.set_cookie(ui_cookie(request), self.access.token, httponly=True, samesite="strict", path="/")
                return redirect
            status_code = 200
            try:
                data = await run_in_threadpool(self.view, name, viewer, dict(request.query_params))
            except InvalidInputError as exc:
                data, status_code = None, 400
                body = status_page.not_found_body(str(exc))
            except ApiError as exc:
                data, status_code = None, exc.status
                body = status_page.not_found_body(exc.message)
            except PairioError as exc:
                data, status_code = None, 503
                body = status_page.not_found_body(f"the store is unavailable: {type(exc).__name__}")
            else:
                if data is None:
                    status_code = 404
                    body = status_page.not_found_body("No such entry in a collection you may read.")
                else:
                    body = _render(name, data, root)
            nonce = status_page.new_nonce()
            page = status_page.layout(_TITLES[name], body, nonce, root=root,
                                      active="" if name == "overview" else name,
                                      who=viewer.name, signout=viewer.signout, source=self.source.kind)
            return Response(page, status_code, status_page.headers(nonce), media_type="text/html")

        return handle


_VIEWS = ("overview", "steps", "misses", "entry", "leases", "health")
_TITLES = {"overview": "Overview", "steps": "Top steps", "misses": "Recent misses", "entry": "Entry",
           "leases": "In flight", "health": "Health and version"}


def _render(name: str, data: dict[str, Any], root: str) -> str:
    if name == "overview":
        return status_page.overview_body(data)
    if name == "steps":
        return status_page.steps_body(data, root)
    if name == "misses":
        return status_page.misses_body(data, root)
    if name == "leases":
        return status_page.leases_body(data, root)
    if name == "health":
        return status_page.health_body(data)
    return status_page.entry_body(data, root)


def status_routes(settings: ServerSettings, guard: Guard, source: status.StatusSource) -> list[Route]:
    """The server's status page and its JSON, for signed-in channels."""
    return StatusRoutes(source, ChannelAccess(settings, guard)).routes()


def ui_app(source: status.StatusSource, token: str) -> Any:
    """The app of ``pairio ui``: the status page of ``source``, for requests that show ``token``."""
    from starlette.applications import Starlette

    app = Starlette(routes=StatusRoutes(source, TokenAccess(token)).routes())
    app.state.source = source
    return app
