"""HTTP handlers: authentication, login, stats, metrics, the page (REST snapshots: streamer/snapshots.py).

Every error is web.errors' `{"error": <code>, "message": <text>}` with its status:

    400 invalid_request   401 unauthorized      403 forbidden (also: no such strategy)
    404 not_found         405 method_not_allowed 409 strategy_inactive / conflict
    413 body_too_large (login, admin API: web/bodies.py)
    429 too_many_streams / rate_limited (login, with Retry-After)
    503 bus_unavailable / database_unavailable / shutting_down   500 internal_error

Behind a proxy (`--trust-proxy`) the client's address and scheme come from its
X-Forwarded-For and X-Forwarded-Proto (web/proxy.py); otherwise from the socket.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import tornado.web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tornado.httputil import HTTPHeaders
from tornado.util import ObjectDict

from bus import reasons
from bus.errors import BusError
from bus.quiet_log import QuietLog
from bus.topics import MAX_ID, StreamKey
from store import actions
from store.errors import DatabaseUnavailable
from store.sessions import SESSION_DAYS
from streamer import queries
from streamer.auth import SESSION_COOKIE, Authenticator, bearer_token, session_token
from streamer.login import TooManyAttempts
from streamer.queries import Viewer
from streamer.services import Services
from web.bodies import BoundedBody
from web.errors import ApiError, ErrorTable, JsonErrors
from web.jsonbody import InvalidJson, parse_json_body
from web.proxy import client_scheme, request_address
from web.replies import send_json

_ID = re.compile(rb"[1-9][0-9]*")
NOT_YOURS = "No such strategy, or you may not see it."
BUS_UNAVAILABLE, BUS_UNAVAILABLE_TEXT = "bus_unavailable", "The event bus does not answer; try again."
UNAUTHORIZED = "Log in, or send Authorization: Bearer <api token>."
# A credential that was sent but is refused says so: "send a token" to someone who sent one reads as a bug.
TOKEN_REFUSED = ("This API token is not accepted: it is wrong, it was replaced (make run and"
                 " `tradestream-admin demo` give the demo users new ones) or its user is deactivated.")
SESSION_REFUSED = "Your session has ended (logged out, password changed or user deactivated): log in again."
# bus_answer's log of a 503's reason: one line per 10 s at most, whatever the number of requests.
_bus_refusals = QuietLog(logging.getLogger(__name__), logging.INFO, interval_s=10.0)
# What a handler may let escape, and its answer (web/errors.py: written, not logged as a traceback).
STREAMER_ERRORS: ErrorTable = {DatabaseUnavailable: (503, "database_unavailable")}
# On every answer of the API, the stream's lean path (streamer/stream.py) included.
DEFAULT_HEADERS = (("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"))


@contextmanager
def bus_answer(kind: type[BusError] = BusError) -> Iterator[None]:
    """Inside it, a `kind` of BusError (no broker answered) is the API's 503 bus_unavailable.

    Its reason is logged at INFO, at most once per 10 s: the access line of a 503 is DEBUG (the bus
    going down is logged when it does), but a 503 while the bus is up needs its cause on record.
    """
    try:
        yield
    except kind as exc:
        _bus_refusals("answered 503 bus_unavailable: %s", exc)
        raise ApiError(503, BUS_UNAVAILABLE, BUS_UNAVAILABLE_TEXT) from None


def parse_id(raw: bytes | str) -> int | None:
    """An id as the contract spells it: ASCII digits, no sign or leading zero, 1 ≤ id < 2^63."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if _ID.fullmatch(data) is None or len(data) > 19:
        return None
    value = int(data)
    return value if value <= MAX_ID else None


async def authenticate(auth: Authenticator, headers: HTTPHeaders, secret: str) -> tuple[Viewer, float]:
    """Who sent the request (bearer token first, else the session cookie), and when that was read; 401 otherwise."""
    header = headers.get("Authorization")
    viewer, read_at = None, 0.0
    refused = UNAUTHORIZED  # no credential (or not one of ours): say how to send one
    if header is not None:
        token = bearer_token(header)
        if token:
            viewer, read_at = await auth.by_token(token)
            refused = TOKEN_REFUSED
    else:
        token = session_token(headers, secret, SESSION_DAYS)
        if token:
            viewer, read_at = await auth.by_session(token)
            refused = SESSION_REFUSED
    if viewer is None:
        raise ApiError(401, "unauthorized", refused)
    return viewer, read_at


def strategy_id_of(query_arguments: dict[str, list[bytes]]) -> int:
    """The `strategy_id` query parameter, strictly parsed; 400 otherwise."""
    values = query_arguments.get("strategy_id", [])
    strategy_id = parse_id(values[0]) if len(values) == 1 else None
    if strategy_id is None:
        raise ApiError(400, "invalid_request", "strategy_id must be one integer, 1 <= N < 2^63, ASCII digits only.")
    return strategy_id


class BaseHandler(JsonErrors, tornado.web.RequestHandler):
    """Shared by the API handlers: services, JSON in and out, who is asking."""

    services: Services
    domain_errors: ClassVar[ErrorTable] = STREAMER_ERRORS

    def initialize(self, services: Services) -> None:
        self.services = services
        self.read_at = 0.0  # when the viewer's credential was read (see Authenticator.ended)
        # Tornado's template namespace refers back to the handler: a reference cycle per request,
        # left for the cyclic GC (a stream's request lives long enough to reach its oldest
        # generation). No handler here renders a template: without it a request is freed when done.
        self.ui = ObjectDict()

    def set_default_headers(self) -> None:
        for name, value in DEFAULT_HEADERS:
            self.set_header(name, value)

    def send_json(self, value: Any, status: int = 200) -> None:
        """Finish with `value` as JSON."""
        send_json(self, value, status)

    def json_body(self, raw: bytes) -> dict[str, Any]:
        """`raw`, a request body, as a JSON object (web/jsonbody.py's strict reading); 400 otherwise."""
        try:
            body = parse_json_body(raw)
        except InvalidJson as exc:
            raise ApiError(400, "invalid_request", f"The body is not acceptable JSON: {exc}.") from None
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "The body must be a JSON object.")
        return body

    async def viewer(self) -> Viewer:
        """The authenticated user (bearer token first, else the session cookie); 401 otherwise."""
        viewer, self.read_at = await authenticate(self.services.auth, self.request.headers, self.services.config.secret)
        return viewer

    def session_token(self) -> str | None:
        """The session token of a valid signed cookie, else None."""
        return session_token(self.request.headers, self.services.config.secret, SESSION_DAYS)

    def client_address(self) -> str:
        """The client's address: the socket's peer, or what a trusted proxy says (`--trust-proxy`)."""
        return request_address(self.request, self.services.config.trust_proxy)

    def is_https(self) -> bool:
        """Whether the client used https: with this server, or with a trusted proxy (`--trust-proxy`)."""
        scheme = self.request.protocol
        if self.services.config.trust_proxy:
            scheme = client_scheme(scheme, self.request.headers.get("X-Forwarded-Proto"))
        return scheme == "https"

    async def admin(self) -> Viewer:
        """The authenticated user if an admin; 401 or 403 otherwise."""
        viewer = await self.viewer()
        if not viewer.is_admin:
            raise ApiError(403, "forbidden", "Only administrators may do this.")
        return viewer

    def strategy_id(self) -> int:
        """The `strategy_id` query parameter, strictly parsed; 400 otherwise."""
        return strategy_id_of(self.request.query_arguments)

    async def readable_key(self) -> StreamKey:
        """The viewer's key of the requested strategy, if they may read it; 400, 401 or 403 otherwise."""
        viewer = await self.viewer()
        strategy_id = self.strategy_id()
        if not await self.services.database.run(queries.may_read, viewer.id, strategy_id):
            raise ApiError(403, "forbidden", NOT_YOURS)
        return StreamKey(viewer.id, strategy_id)


@tornado.web.stream_request_body
class LoginHandler(BoundedBody, BaseHandler):
    """`POST /api/login {"username", "password"}`: sets the signed session cookie (a body past 64 KiB: 413)."""

    async def post(self) -> None:
        body = self.json_body(self.body())
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise ApiError(400, "invalid_request", "username and password must be strings.")
        try:
            found = await self.services.logins.attempt(self.client_address(), username, password)
        except TooManyAttempts as refused:
            self.set_header("Retry-After", str(refused.retry_after))
            self.send_json({"error": "rate_limited", "message": refused.message}, 429)
            return
        if found is None:
            raise ApiError(401, "unauthorized", "Wrong username or password.")
        viewer, token = found
        self.set_signed_cookie(
            SESSION_COOKIE, token, expires_days=SESSION_DAYS, path="/",
            httponly=True, samesite="Lax", secure=self.is_https(),
        )
        self.send_json({"id": viewer.id, "username": viewer.username, "is_admin": viewer.is_admin})


class LogoutHandler(BaseHandler):
    """`POST /api/logout`: ends the cookie's session on the server (and its streams, on every streamer)."""

    async def post(self) -> None:
        token = self.session_token()
        if token:
            ended = await self.services.database.run(actions.end_session, self.services.publish, token)
            if ended is not None:
                self.services.hub.end_sessions(ended)  # at once here, whatever the bus does
        self.clear_cookie(SESSION_COOKIE, path="/")
        self.send_json({"status": "logged_out"})


class StrategiesHandler(BaseHandler):
    """`GET /api/strategies`: the strategies the user may stream."""

    async def get(self) -> None:
        viewer = await self.viewer()
        strategies = await self.services.database.run(queries.strategies_of, viewer.id)
        self.send_json({"strategies": strategies})


class StatsHandler(BaseHandler):
    """`GET /api/events/stats` (admins): connections, counters, latency, per-key lag and drops."""

    async def get(self) -> None:
        await self.admin()
        self.send_json(self.services.snapshot())


class MetricsHandler(BaseHandler):
    """`GET /metrics`: the same counters in Prometheus text format."""

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(self.services.registry))


class ReasonsHandler(BaseHandler):
    """`GET /reasons.json`: the texts of the disconnect reasons, for the dashboard (bus/reasons.py)."""

    def get(self) -> None:
        self.send_json(reasons.TEXTS)


class NotFoundHandler(BaseHandler):
    """Any unknown path: 404 in JSON."""

    def prepare(self) -> None:
        raise ApiError(404, "not_found", "No such endpoint.")


class FaviconHandler(JsonErrors, tornado.web.RedirectHandler):
    """`/favicon.ico`: a redirect to the page's icon (another method: a JSON 405, not Tornado's HTML)."""


class PageHandler(JsonErrors, tornado.web.StaticFileHandler):
    """The dashboard's files under `/static/` (tradestream.js among them); `/` is index.html (404 JSON until it exists)."""

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        if "\x00" in absolute_path:
            # `/static/%00`: os.path.realpath and os.stat raise ValueError on a NUL (a 500 with a traceback). No file has one.
            raise tornado.web.HTTPError(404)
        return super().validate_absolute_path(root, absolute_path)

    def set_extra_headers(self, path: str) -> None:
        # Revalidated on every load (a 304 costs one round trip): a deploy's new files are used at once.
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Content-Type-Options", "nosniff")
