"""The Tornado application: routes to handlers, given running Services (tests build it too); the stream in front of it."""

from __future__ import annotations

from typing import Any

import tornado.web

from streamer.access import log_access
from streamer.admin_api import admin_routes
from streamer.handlers import (
    FaviconHandler,
    LoginHandler,
    LogoutHandler,
    MetricsHandler,
    NotFoundHandler,
    PageHandler,
    ReasonsHandler,
    StatsHandler,
    StrategiesHandler,
)
from streamer.services import Services
from streamer.snapshots import LatestBatchHandler, OrdersHandler, PositionsHandler
from streamer.stream import STREAM_PATH, StreamHandler, stream_route
from web.front import FrontDoor
from web.health import LivenessHandler, ReadinessHandler

# The page's files, tradestream.js among them: a stable path other pages import from (CONTRACT section 3).
STATIC_PREFIX = "/static/"


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado's access log, minus the noise of health checks, scrapes and client errors (streamer/access.py)."""
    request = handler.request
    log_access(handler.get_status(), request.path, request.method or "", request.uri or "", request.remote_ip, request.request_time())


def make_app(services: Services) -> tornado.web.Application:
    """The streamer's routes over `services`."""
    s: dict[str, Any] = {"services": services}
    static: dict[str, Any] = {"path": services.config.static_path, "default_filename": "index.html"}
    routes: list[Any] = [
        (r"/api/login", LoginHandler, s),
        (r"/api/logout", LogoutHandler, s),
        (STREAM_PATH, StreamHandler, s),
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
        (r"/favicon\.ico", FaviconHandler, {"url": f"{STATIC_PREFIX}favicon.svg", "permanent": True}),
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


def make_front(services: Services) -> FrontDoor:
    """What the streamer's server serves: `GET /api/events/stream` in front of the app's routing (web/front.py), the app behind."""
    return FrontDoor(make_app(services), {("GET", STREAM_PATH): stream_route(services)})


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
