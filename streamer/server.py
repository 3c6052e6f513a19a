"""tradestream-streamer: the SSE streamer process (`main` only wires and runs).

Binds the HTTP port (SO_REUSEPORT with `--reuse-port`, so several processes
share it), serves until SIGTERM or SIGINT, then stops accepting, sends
`force_disconnect` (`server_shutdown`) to every stream, closes them and exits 0
within 5 seconds.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import tornado.netutil
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from bus import security
from bus.process import configure_logging, exit_on_stop_signals_while_starting, stop_on_signals
from store import schema_status
from store.db import first_line
from store.errors import DatabaseUnavailable
from store.wait import wait_for_database
from streamer.app import make_front, make_metrics_app
from streamer.config import StreamerConfig, parse_config
from streamer.runtime import run, tune_gc
from streamer.services import Services
from streamer.stream import LAST_EVENT_ID
from web.bodies import MAX_BODY
from web.front import FrontDoor
from web.server import HardenedHTTPServer

log = logging.getLogger(__name__)

MAX_BODY_BYTES = MAX_BODY  # login and admin API bodies; past it they are 413 (web/bodies.py), other requests a bare 400
# Thousands of browsers reconnect at once after a restart: do not make them retry their SYNs.
LISTEN_BACKLOG = 2048
# Of the 5 s a stop may take: streams get this long to take their last frame.
SHUTDOWN_STREAMS_S = 2.0
SHUTDOWN_REQUESTS_S = 1.0
# A stack's producers migrate the schema as they start, the streamer only waits for it.
SCHEMA_WAIT_S = 30.0


def make_server(services: Services, front: FrontDoor | None = None) -> HardenedHTTPServer:
    """The HTTP server of the streamer's app (`front`, default make_front's): slow clients timed out, accepts paused while descriptors run out."""
    config = services.config
    server = HardenedHTTPServer(
        make_front(services) if front is None else front,
        max_body_size=MAX_BODY_BYTES,
        header_timeout=config.header_timeout,
        body_timeout=config.body_timeout,
        # An unusable Last-Event-ID gets resync (CONTRACT section 3), even one with a NUL byte.
        tolerant_headers=(LAST_EVENT_ID,),
    )
    services.server_backoff = server.backoff  # its accept failures go to stats and /metrics
    return server


async def serve(
    config: StreamerConfig, sockets: list[socket.socket], metrics_sockets: list[socket.socket] | None = None
) -> int:
    """Run the streamer on already bound sockets (and its own /metrics on `metrics_sockets`) until a stop signal."""
    services = Services(config)
    await services.start()
    server = make_server(services)
    server.add_sockets(sockets)
    metrics_server, metrics_port = None, "off"
    if metrics_sockets:
        metrics_server = HardenedHTTPServer(
            make_metrics_app(services), max_body_size=MAX_BODY_BYTES,
            header_timeout=config.header_timeout, body_timeout=config.body_timeout,
        )
        metrics_server.add_sockets(metrics_sockets)
        metrics_port = str(metrics_sockets[0].getsockname()[1])
    tune_gc(config.gc_threshold, freeze=not config.no_gc_freeze)
    stopping = asyncio.Event()
    stop_on_signals(stopping.set, asyncio.get_running_loop())
    host, port = sockets[0].getsockname()[:2]
    log.info(
        "streamer listening on http://%s:%d publish=%s replay=%s ingress=%s reuse_port=%s metrics_port=%s",
        host, port, config.publish, config.replay, config.ingress, config.reuse_port, metrics_port,
    )
    await stopping.wait()
    log.info("stopping: %d streams get force_disconnect server_shutdown", services.hub.client_count)
    server.stop()
    if metrics_server is not None:
        metrics_server.stop()
    await services.shutdown(SHUTDOWN_STREAMS_S)
    try:
        await asyncio.wait_for(server.close_all_connections(), SHUTDOWN_REQUESTS_S)
    except TimeoutError:
        log.warning("requests still running at shutdown were cut off")
    log.info("streamer stopped")
    return 0


def _schema_of(engine: Engine) -> schema_status.Status:
    """The schema's status once at head or after SCHEMA_WAIT_S; the engine is disposed (Services opens its own)."""
    try:
        return schema_status.wait_for_head(engine, SCHEMA_WAIT_S)
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tradestream-streamer`."""
    config = parse_config(argv)
    configure_logging("streamer", config.log_level)
    exit_on_stop_signals_while_starting()
    if not security.start(config.bus_keys, connects=(config.ingress, config.publish, config.replay)):
        return 1
    try:
        # Waits while the database is not there yet, then for the producers to migrate (the streamer does not):
        # a streamer on an older schema would answer 500s. Nothing listens meanwhile.
        schema = wait_for_database(config.database_url, _schema_of, create_tables=False)
    except DatabaseUnavailable as exc:
        log.error("%s", exc)
        return 1
    except SQLAlchemyError as exc:
        log.error("cannot read the database schema's revision: %s", first_line(exc))
        return 1
    if not schema.at_head:
        log.error("%s The streamer does not start on it.", schema.describe())
        return 1
    try:
        sockets = tornado.netutil.bind_sockets(config.port, config.host, reuse_port=config.reuse_port, backlog=LISTEN_BACKLOG)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", config.host, config.port, exc)
        return 1
    try:
        metrics_sockets = (
            None if config.metrics_port is None else tornado.netutil.bind_sockets(config.metrics_port, config.host)
        )
    except OSError as exc:
        log.error("cannot listen on %s:%d (--metrics-port): %s", config.host, config.metrics_port, exc)
        return 1
    return run(serve(config, sockets, metrics_sockets), config.event_loop)


if __name__ == "__main__":
    raise SystemExit(main())
