"""The `--metrics-port` listener of orders and positions: `GET /metrics` on web/server.py's HardenedHTTPServer.

prometheus_client's own server (wsgiref's, which these processes used before) answered hostile heads with
its HTML pages: a 400 page for a bad request line or header line, 431 "Line too long" for a header over
64 KiB, 431 "Too many headers" past 100 of them. Every listener of the product answers the contract's JSON
errors through the same server instead (431 `headers_too_large`, 400 `invalid_request`, a JSON 404/405).
The processes' own loops block (ProducerLoop), so the server runs an asyncio loop in a daemon thread.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from tornado.netutil import bind_sockets
from tornado.web import Application, HTTPError, RequestHandler

from web.errors import JsonErrors
from web.server import HardenedHTTPServer

log = logging.getLogger(__name__)


class MetricsHandler(JsonErrors, RequestHandler):
    """`GET /metrics`: the registry in Prometheus text format (another method: a JSON 405)."""

    def initialize(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(self.registry))


class NotFoundHandler(JsonErrors, RequestHandler):
    """Any other path: a JSON 404."""

    def prepare(self) -> None:
        raise HTTPError(404)


def log_request(handler: RequestHandler) -> None:
    """A scrape is not a lifecycle event: DEBUG (CONTRACT: no line per message)."""
    log.debug("%d %s %r", handler.get_status(), handler.request.method, handler.request.uri)


def make_app(registry: CollectorRegistry) -> Application:
    """The metrics port's application: `/metrics` and JSON errors for the rest."""
    return Application([(r"/metrics", MetricsHandler, {"registry": registry})],
                       default_handler_class=NotFoundHandler, log_function=log_request)


def serve(registry: CollectorRegistry, port: int) -> int:
    """Serve `registry` as `GET /metrics` on `port` of every address (0: any free one) from a daemon thread; the port.

    The sockets are bound and listening before this returns (a taken port raises here, in the caller's
    start-up): a scrape arriving before the thread's loop runs waits in the backlog.
    """
    sockets = bind_sockets(port)
    threading.Thread(target=asyncio.run, args=(_serve_forever(registry, sockets),), name="metrics-http", daemon=True).start()
    return int(sockets[0].getsockname()[1])


async def _serve_forever(registry: CollectorRegistry, sockets: list[socket.socket]) -> None:
    server = HardenedHTTPServer(make_app(registry), xheaders=False)
    server.add_sockets(sockets)
    await asyncio.Event().wait()  # until the process exits (a daemon thread)
