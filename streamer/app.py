"""The Tornado application: routes to handlers, given running Services (tests build it too)."""

from __future__ import annotations

import logging
from typing import Any

import tornado.web

from streamer.admin_api import admin_routes
from streamer.handlers import (
    LatestBatchHandler,
    LoginHandler,
    LogoutHandler,
    MetricsHandler,
    NotFoundHandler,
    OrdersHandler,
    PageHandler,
    PositionsHandler,
    ReasonsHandler,
    StatsHandler,
    StrategiesHandler,
)
from streamer.services import Services
from streamer.stream import StreamHandler
from web.health import LivenessHandler, ReadinessHandler

access_log = logging.getLogger("tornado.access")
# Scraped every few seconds: their requests are logged at DEBUG only.
QUIET_PATHS = frozenset({"/healthz", "/livez", "/metrics"})
# The page's files, tradestream.js among them: a stable path other pages import from (CONTRACT section 3).
STATIC_PREFIX = "/static/"


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado's access log, minus the noise of health checks, scrapes and client errors."""
    status = handler.get_status()
    if status < 400:
        level = logging.DEBUG if handler.request.path in QUIET_PATHS else logging.INFO
    elif status < 500:
        # An outsider decides how many 4xx there are: logged per request only at DEBUG, never a flood.
        level = logging.DEBUG
    elif status == 503:
        # A dependency that went down was logged once, when it did (bus/subscriber.py, web/health.py).
        level = logging.DEBUG
    else:
        level = logging.ERROR
    if access_log.isEnabledFor(level):
        elapsed_ms = 1000.0 * handler.request.request_time()
        access_log.log(level, "%d %s %.2fms", status, handler._request_summary(), elapsed_ms)


def make_app(services: Services) -> tornado.web.Application:
    """The streamer's routes over `services`."""
    s: dict[str, Any] = {"services": services}
    static: dict[str, Any] = {"path": services.config.static_path, "default_filename": "index.html"}
    routes: list[Any] = [
        (r"/api/login", LoginHandler, s),
        (r"/api/logout", LogoutHandler, s),
        (r"/api/events/stream", StreamHandler, s),
        (r"/api/events/stats", StatsHandler, s),
        (r"/api/strategies", StrategiesHandler, s),
        (r"/api/orders", OrdersHandler, s),
        (r"/api/positions", PositionsHandler, s),
        (r"/api/batches/latest", LatestBatchHandler, s),
        (r"/healthz", ReadinessHandler, {"states": services.readiness}),
        (r"/livez", LivenessHandler),
        (r"/metrics", MetricsHandler, s),
        *admin_routes(services),
        (r"/api/.*", NotFoundHandler, s),
        (r"/reasons\.json", ReasonsHandler, s),
        (r"/favicon\.ico", tornado.web.RedirectHandler, {"url": f"{STATIC_PREFIX}favicon.svg", "permanent": True}),
        (r"/()", PageHandler, static),
        (rf"{STATIC_PREFIX}(.*)", PageHandler, static),
    ]
    return tornado.web.Application(
        routes,
        cookie_secret=services.config.secret,
        default_handler_class=NotFoundHandler,
        default_handler_args=s,
        log_function=log_request,
    )


def make_metrics_app(services: Services) -> tornado.web.Application:
    """`GET /metrics` alone, for this process's own --metrics-port: the main port's handler and registry.

    Behind --reuse-port the main port's /metrics answers for whichever process
    the kernel picked; this port is the one process's (docs/operations.md).
    """
    s: dict[str, Any] = {"services": services}
    return tornado.web.Application(
        [(r"/metrics", MetricsHandler, s)],
        default_handler_class=NotFoundHandler,
        default_handler_args=s,
        log_function=log_request,
    )
