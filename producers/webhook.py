"""tradestream-webhook: receives trading signals over HTTP and hands them to the order handler.

    POST /api/webhook ─▶ size · JSON · shape · address budget · rate · [thread] group · token · active · fields
        ─▶ Signal row + order inbox row (one commit) ─▶ 200 {"status": "accepted", ...}
        ─PUSH [b"wake"] --orders─▶ tradestream-orders (best effort)

It answers once the signal and its command are committed (CONTRACT §5): that
row is the acceptance, and the order handler handles it exactly once whenever
it runs (at start, on the wake-up, or at its next sweep), so the webhook does
not need the order handler to be up. The orders are placed asynchronously.
Database work runs in a thread pool, never on the IOLoop; a database that
cannot store the signal is answered 503 (nothing was accepted: retry), and
readiness (`/healthz`, web/health.py) says it is down while `/livez` stays 200. The
wake-up never blocks (send_timeout_ms=0); one that cannot be queued is only
counted. A request in flight when the process dies either committed (its retry
with the same `id` is then a duplicate, which wakes the order handler again in case the first
wake-up died with it) or did not (the retry is new). The
per-token rate limit runs after the shape check (the token must be read
first) and before any database work; its 429 says when to retry (Retry-After).
Before it, a client address that failed authentication (404 unknown group, 401
bad token) `--auth-failures` times within `--auth-failure-window` seconds is
answered the same 429 until the window ends, before any token check, unless
its (group, token) pair authenticated before (producers/failed_auth.py); the
address is the peer's, or with `--trust-proxy` the last X-Forwarded-For entry
(web/proxy.py, as the streamer's). Errors are web.errors' `{"error", "message", "field"}`: the
service (producers/webhook_service.py: the work, without HTTP) raises domain errors
(producers.errors), WEBHOOK_ERRORS gives their statuses.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine
from tornado.netutil import bind_sockets
from tornado.web import Application, HTTPError, RequestHandler, stream_request_body

from bus import endpoints, kinds, security
from bus.process import SettingsParser, configure_logging, exit_on_stop_signals_while_starting, setting, stop_on_signals
from bus.publisher import Publisher
from bus.security import bus_keys_setting
from producers import failed_auth
from producers.errors import (
    InvalidJSON,
    InvalidSignal,
    NotJSON,
    ProducerError,
    RateLimited,
    StoreUnavailable,
    StrategyInactive,
    UnknownGroup,
    WrongToken,
)
from producers.failed_auth import FailedAuthBudget
from producers.intake import Intake
from producers.webhook_service import WebhookService
from store import health
from store.db import DEFAULT_DATABASE_URL, make_session_factory, sqlalchemy_url
from store.errors import DatabaseUnavailable
from store.wait import wait_for_database
from web.bodies import MAX_BODY, TOO_LARGE, BoundedBody
from web.errors import ApiError, ErrorTable, JsonErrors, send_error_json
from web.health import LivenessHandler, Probe, ReadinessHandler
from web.proxy import request_address
from web.ratelimit import RateLimiter
from web.replies import send_json
from web.server import BODY_TIMEOUT_S, HEADER_TIMEOUT_S, HardenedHTTPServer

log = logging.getLogger(__name__)

# Shutdown budget (CONTRACT: exit within 5 s): in-flight requests, open connections, then the wake-ups' linger.
SHUTDOWN_GRACE_S = 1.5
LINGER_MS = 500


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Settings of the webhook receiver."""

    database_url: str = setting(DEFAULT_DATABASE_URL, kind=sqlalchemy_url, help="SQLAlchemy database URL")
    host: str = setting("127.0.0.1", help="HTTP listen address")
    port: int = setting(8081, kind=kinds.tcp_port, help="HTTP listen port (0: any free port, logged)")
    orders: str = setting(endpoints.ORDERS, kind=kinds.zmq_endpoint, help="order handler endpoint woken for each accepted signal")
    bus_keys: str = bus_keys_setting()
    rate_limit: float = setting(20.0, kind=kinds.positive_float, help="requests per second per token (bursts of 5x)")
    auth_failures: int = setting(
        failed_auth.DEFAULT_LIMIT, kind=kinds.non_negative_int,
        help="failed authentications (unknown group, wrong token) per client address within --auth-failure-window;"
             " beyond, 429 before any token check until the window ends, except for a (group, token) that"
             " authenticated before (0: no limit)")
    auth_failure_window: float = setting(
        failed_auth.DEFAULT_WINDOW_S, kind=kinds.number_range(1, 86400),
        help="seconds of the --auth-failures window, from an address's first failure")
    trust_proxy: bool = setting(
        False, help="behind a reverse proxy: the client's address (--auth-failures) is the last X-Forwarded-For entry")
    db_threads: int = setting(4, kind=kinds.positive_int, help="threads for database work")
    header_timeout: float = setting(HEADER_TIMEOUT_S, kind=kinds.positive_float, help="seconds a request's headers may take (also: a keep-alive connection's idle time)")
    body_timeout: float = setting(BODY_TIMEOUT_S, kind=kinds.positive_float, help="seconds a request's body may take")


# The HTTP face of the service's domain errors (CONTRACT §5).
WEBHOOK_ERRORS: ErrorTable = {
    NotJSON: (415, "unsupported_media_type"),
    InvalidJSON: (400, "invalid_json"),
    InvalidSignal: (400, "invalid_request"),
    RateLimited: (429, "rate_limited"),
    UnknownGroup: (404, "unknown_group"),
    WrongToken: (401, "bad_token"),
    StrategyInactive: (409, "strategy_inactive"),
    StoreUnavailable: (503, "store_unavailable"),
}


@stream_request_body
class WebhookHandler(BoundedBody, JsonErrors, RequestHandler):
    """`POST /api/webhook`, its body streamed so that an oversized one is never buffered (web/bodies.py)."""

    def initialize(self, service: WebhookService, trust_proxy: bool = False) -> None:
        self.service, self.trust_proxy = service, trust_proxy

    async def post(self) -> None:
        if self.too_large:
            if not self._finished:
                send_error_json(self, TOO_LARGE)
            self.service.metrics.answered(TOO_LARGE.code)
            return
        try:
            content_type = self.request.headers.get("Content-Type", "")
            address = request_address(self.request, self.trust_proxy)
            body = await self.service.receive(content_type, self.body(), address)
        except ProducerError as exc:
            error = ApiError.of(exc, WEBHOOK_ERRORS)
            if error is None:
                raise
            if isinstance(exc, RateLimited):
                self.set_header("Retry-After", str(exc.retry_after))
            send_error_json(self, error)
            self.service.metrics.answered(error.code)
            return
        send_json(self, body)
        self.service.metrics.answered(None, duplicate=bool(body.get("duplicate")))


class MetricsHandler(JsonErrors, RequestHandler):
    """`GET /metrics`: the webhook's counters in Prometheus text format (another method: a JSON 405)."""

    def initialize(self, service: WebhookService) -> None:
        self.service = service

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(self.service.metrics.registry))


class NotFoundHandler(JsonErrors, RequestHandler):
    """Any other path."""

    def prepare(self) -> None:
        raise HTTPError(404)


def log_request(handler: RequestHandler) -> None:
    """A request is not a lifecycle event: DEBUG, except server errors (CONTRACT: no line per message).

    A 503 is DEBUG too: what made it (the database gone) is logged where it changed, not per request.
    """
    status = handler.get_status()
    level = logging.WARNING if status >= 500 and status != 503 else logging.DEBUG
    request = handler.request
    log.log(level, "%d %s %r %.2f ms", status, request.method, request.uri, 1000 * request.request_time())


def make_app(service: WebhookService, trust_proxy: bool = False) -> Application:
    """The webhook's Tornado application; `trust_proxy`: the client's address is a proxy's X-Forwarded-For."""
    readiness = {"states": lambda: {"database": service.database.up}}
    return Application(
        [
            (r"/api/webhook", WebhookHandler, {"service": service, "trust_proxy": trust_proxy}),
            (r"/healthz", ReadinessHandler, readiness),
            (r"/livez", LivenessHandler),
            (r"/metrics", MetricsHandler, {"service": service}),
        ],
        default_handler_class=NotFoundHandler,
        log_function=log_request,
    )


def make_server(service: WebhookService, config: WebhookConfig) -> HardenedHTTPServer:
    """The HTTP server of the webhook's app: slow clients timed out, accepts paused while descriptors run out."""
    return HardenedHTTPServer(
        make_app(service, config.trust_proxy), max_body_size=MAX_BODY, xheaders=False,
        header_timeout=config.header_timeout, body_timeout=config.body_timeout,
    )


def parse_config(argv: list[str] | None) -> tuple[WebhookConfig, str]:
    """Read flags and TRADESTREAM_* variables."""
    parser = SettingsParser(
        WebhookConfig,
        prog="tradestream-webhook",
        description="Webhook receiver: validates trading signals and stores them in the order handler's inbox.",
    )
    return parser.parse(argv)


async def serve(config: WebhookConfig, engine: Engine, sockets: list[socket.socket]) -> None:
    """Serve on bound sockets until SIGTERM or SIGINT, then close connections and the wake-up socket."""
    executor = ThreadPoolExecutor(config.db_threads, thread_name_prefix="webhook-db")
    wakes = Publisher(config.orders, send_timeout_ms=0, linger_ms=LINGER_MS)
    intake = Intake(make_session_factory(engine))
    probe = Probe("database", lambda: health.ping(engine))
    budget = FailedAuthBudget(config.auth_failures, config.auth_failure_window)
    service = WebhookService(intake, wakes, executor, RateLimiter(config.rate_limit), probe, budget)
    probe.start()
    server = make_server(service, config)
    server.add_sockets(sockets)
    stopped = asyncio.Event()
    stop_on_signals(stopped.set, asyncio.get_running_loop())
    host, port = sockets[0].getsockname()[:2]
    log.info("webhook listening on http://%s:%d, pushing to %s", host, port, config.orders)
    await stopped.wait()
    server.stop()
    # Let requests whose checks are running commit and get their answer.
    if not await service.drained(SHUTDOWN_GRACE_S):
        log.warning("%d requests still in flight after %.0f s", service.in_flight, SHUTDOWN_GRACE_S)
    try:
        await asyncio.wait_for(server.close_all_connections(), SHUTDOWN_GRACE_S)
    except TimeoutError:
        log.warning("connections still open after %.0f s; closing anyway", SHUTDOWN_GRACE_S)
    probe.stop()
    executor.shutdown(wait=True)
    wakes.close()
    log.info("webhook stopped: %d wake-ups sent (%d refused), %d requests rate limited, %d failed authentications,"
             " %d requests refused for them", wakes.sent, service.wakes_dropped, service.limiter.refused,
             budget.failures, budget.limited)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tradestream-webhook`."""
    config, log_level = parse_config(argv)
    configure_logging("webhook", log_level)
    exit_on_stop_signals_while_starting()
    if not security.start(config.bus_keys, connects=(config.orders,)):
        return 1
    try:
        engine = wait_for_database(config.database_url, lambda opened: opened)  # nothing listens while it waits
    except DatabaseUnavailable as exc:
        log.error("%s", exc)
        return 1
    try:
        sockets = bind_sockets(config.port, config.host)  # port 0: the kernel picks one, logged by serve
    except OSError as exc:  # the port is taken or the address is not ours
        log.error("cannot listen on %s:%d: %s", config.host, config.port, exc)
        return 1
    asyncio.run(serve(config, engine, sockets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
