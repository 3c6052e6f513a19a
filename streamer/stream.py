"""`GET /api/events/stream?strategy_id=N`: admission, then the socket is handed to the hub.

Admission answers with ordinary JSON errors (401, 400, 429, 403, 409, 503).
Once the key's subscription is live the handler detaches the connection from
Tornado, writes the response head itself (close-delimited, which HTTP/1.0
proxies understand too) and registers the socket with the hub, with no await
between the subscription and the registration: no event can slip between, and
no `end_sessions` either (the credential is checked against them last, there).
"""

from __future__ import annotations

import logging
import socket
import time

from bus.errors import BusUnavailable
from bus.replay import Position
from bus.topics import StreamKey
from streamer import queries, sse
from streamer.handlers import BUS_UNAVAILABLE, BUS_UNAVAILABLE_TEXT, NOT_YOURS, UNAUTHORIZED, BaseHandler
from web.errors import ApiError

log = logging.getLogger(__name__)

LAST_EVENT_ID = "Last-Event-ID"

RESPONSE_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"X-Accel-Buffering: no\r\n"
    b"Connection: close\r\n"
    b"\r\n"
)


def preamble(key: StreamKey, head: Position, bus_up: bool) -> bytes:
    """The response head, `retry:` and the `connection` event of a new stream."""
    return RESPONSE_HEAD + sse.RETRY_FRAME + sse.connection_frame(key.user_id, key.strategy_id, str(head), bus_up)


class StreamHandler(BaseHandler):
    """Checks who may stream what, subscribes, and hands the socket to the hub."""

    async def get(self) -> None:
        viewer = await self.viewer()
        strategy_id = self.strategy_id()
        hub = self.services.hub
        if hub.closing:
            raise ApiError(503, "shutting_down", "The server is shutting down; reconnect to another.")
        if not hub.admission.reserve(viewer.id, time.monotonic()):
            self.services.stats.rejected_streams += 1
            limit = self.services.config.max_streams_per_user
            raise ApiError(429, "too_many_streams", f"At most {limit} open streams per user.")
        key = StreamKey(viewer.id, strategy_id)
        try:
            checked_at = await self._check_access(key)
            head = await self._subscribe(key)
        except BaseException:
            hub.admission.release(viewer.id)
            raise
        # From here to hub.open, no await: the subscription is live at `head`.
        ended = self.services.auth.ended(viewer, self.read_at)
        sock = None if ended else self._take_socket()
        if sock is None:
            hub.unsubscribe(key)
            hub.admission.release(viewer.id)
            if ended:
                raise ApiError(401, "unauthorized", UNAUTHORIZED)
            return
        hub.open(sock, key, head, preamble(key, head, hub.subscriber.broker_up), self._last_event_id(), checked_at, viewer.session_id)
        excess = hub.admission.excess(viewer.id, time.monotonic())  # admitted in a race with another streamer?
        if excess:
            hub.shed(viewer.id, excess)

    async def _check_access(self, key: StreamKey) -> float:
        """403 or 409 unless the viewer may stream the key; when the answer was read."""
        refusal, checked_at = await self.services.stream_refusal(key)
        if refusal == queries.FORBIDDEN:
            raise ApiError(403, "forbidden", NOT_YOURS)
        if refusal == queries.INACTIVE:
            raise ApiError(409, "strategy_inactive", "This strategy is inactive.")
        return checked_at

    async def _subscribe(self, key: StreamKey) -> Position:
        try:
            return await self.services.hub.subscribe(key)
        except BusUnavailable:
            raise ApiError(503, BUS_UNAVAILABLE, BUS_UNAVAILABLE_TEXT) from None

    def _take_socket(self) -> socket.socket | None:
        """Detach the connection from Tornado and keep its socket; None if the client already left."""
        stream = self.detach()
        try:
            if stream.closed() or stream.socket is None:
                return None
            # A duplicate outlives the IOStream, which is closed to drop its loop registration.
            return stream.socket.dup()
        except OSError as exc:  # out of file descriptors, most likely
            log.warning("stream of %s dropped: %s", self.request.remote_ip, exc)
            return None
        finally:
            stream.close()

    def _last_event_id(self) -> str | None:
        """The `Last-Event-ID` header (set by EventSource on reconnect), else the query parameter."""
        header = self.request.headers.get(LAST_EVENT_ID)
        if header:
            return header
        values = self.request.query_arguments.get("last_event_id")
        return values[-1].decode("utf-8", "replace") if values else None
