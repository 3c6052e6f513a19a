"""The streamer's access log: Tornado's line, minus the noise of health checks, scrapes and client errors.

One function for both ways a request is served: the Application's handlers
(its `log_function`, streamer/app.py) and the stream's lean path (streamer/stream.py).
"""

from __future__ import annotations

import logging

access_log = logging.getLogger("tornado.access")
# Scraped every few seconds: their requests are logged at DEBUG only.
QUIET_PATHS = frozenset({"/healthz", "/livez", "/metrics"})
# A request line may be as long as the headers may (64 KiB): the client would choose each INFO line's size.
MAX_URI_CHARS = 200


def access_level(status: int, path: str) -> int:
    """The level of a finished request's line."""
    if status < 400:
        return logging.DEBUG if path in QUIET_PATHS else logging.INFO
    if status < 500:
        # An outsider decides how many 4xx there are: logged per request only at DEBUG, never a flood.
        return logging.DEBUG
    if status == 503:
        # A dependency that went down was logged once, when it did (bus/subscriber.py, web/health.py).
        return logging.DEBUG
    return logging.ERROR


def shown_uri(uri: str) -> str:
    """The URI as the access line shows it: at most MAX_URI_CHARS, then how long it was."""
    return uri if len(uri) <= MAX_URI_CHARS else f"{uri[:MAX_URI_CHARS]}...({len(uri)} chars)"


def log_access(status: int, path: str, method: str, uri: str, remote_ip: str | None, elapsed_s: float) -> None:
    """Tornado's access line (`status method uri (address) time`) at `access_level`."""
    level = access_level(status, path)
    if access_log.isEnabledFor(level):
        access_log.log(level, "%d %s %s (%s) %.2fms", status, method, shown_uri(uri), remote_ip, 1000.0 * elapsed_s)
