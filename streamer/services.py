"""Everything a streamer process runs besides HTTP, built and started in one place.

Services owns the hub (and through it the Subscriber), the database and its
executor, the authenticator, the control-message Publisher, the Prometheus
registry and the two timers: heartbeats (one for every stream) and the access
re-check, which catches a control message lost on the way.
"""

from __future__ import annotations

import logging

import zmq.asyncio
from prometheus_client import CollectorRegistry, ProcessCollector
from tornado.ioloop import PeriodicCallback

from bus import reasons
from bus.errors import BusError
from bus.events import ControlMessage
from bus.publisher import Publisher
from bus.topics import StreamKey
from streamer import queries
from streamer.auth import Authenticator
from streamer.batching import BatchLookup
from streamer.cache import TtlCache
from streamer.config import StreamerConfig
from streamer.heartbeat import Heartbeat
from streamer.hub import Hub
from streamer.login import LoginGate
from streamer.queries import Database
from streamer.stats import StatsCollector, StreamerStats

log = logging.getLogger(__name__)

ACCESS_CACHE_TTL_S = 5.0


class Services:
    """The hub, database, authenticator, publisher, metrics and timers of one streamer."""

    def __init__(self, config: StreamerConfig, context: zmq.asyncio.Context | None = None) -> None:
        self.config = config
        self.stats = StreamerStats()
        self.hub = Hub(config, self.stats, context)
        self.database = Database(config.database_url, config.database_threads)
        self.auth = Authenticator(self.database)
        self.logins = LoginGate(self.database, config.login_per_address, config.login_per_user, config.login_window)
        # Only "allowed" is kept. Safe with a control message after the read: the hub
        # compares its arrival with when the answer was read (see Hub.open).
        self.stream_access: TtlCache[StreamKey, str | None] = TtlCache(ACCESS_CACHE_TTL_S)
        self.access_batches: BatchLookup[StreamKey, str | None] = BatchLookup(
            lambda keys: self.database.run(queries.stream_refusals, keys))
        self.hub.on_revoke = self._forget_access
        # Called from database threads (admin actions publish after their commit): it must not block long.
        self.publisher = Publisher(config.ingress, send_timeout_ms=500, linger_ms=1000)
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(StatsCollector(lambda: self.hub.snapshot(per_key=False)))
        self.registry.register(self.stats.latency.histogram)
        ProcessCollector(registry=self.registry)
        self.heartbeat = Heartbeat(self.hub.channels, self.stats, config.heartbeat)
        self._recheck = PeriodicCallback(self.recheck, config.recheck * 1000)

    async def start(self) -> None:
        """Start the Subscriber and the timers (on the running loop)."""
        await self.hub.start()
        self.heartbeat.start()
        self._recheck.start()

    async def stream_refusal(self, key: StreamKey) -> tuple[str | None, float]:
        """Why the key may not be streamed now (None: it may), and when that was read."""
        return await self.stream_access.get(
            key, lambda: self.access_batches.get(key), keep=lambda refusal: refusal is None
        )

    async def recheck(self) -> int:
        """Re-verify every open stream's access in the database; end the lost ones. How many ended."""
        keys = list(self.hub.channels)
        if not keys:
            return 0
        self.stats.rechecks += 1
        try:
            verdicts = await self.database.run(queries.revoked_keys, keys)
        except Exception:
            log.exception("access re-check of %d keys failed", len(keys))
            return 0
        ended = 0
        for key, reason in verdicts.items():
            ended += self.hub.revoke(key, reason, reasons.message(reason, key.strategy_id))
        if ended:
            log.info("access re-check ended %d streams of %d keys", ended, len(verdicts))
        return ended

    def _forget_access(self, target: StreamKey | int) -> None:
        if isinstance(target, StreamKey):
            self.stream_access.forget(target)
        else:
            self.stream_access.forget_where(lambda key: key.strategy_id == target)

    def publish(self, message: ControlMessage) -> None:
        """Send a control message; a bus failure is logged, and the re-check is the safety net."""
        try:
            self.publisher.publish(message)
        except BusError as exc:
            self.stats.control_publish_failures += 1
            log.warning("control message %s not published: %s", message.kind, exc)

    async def shutdown(self, timeout: float) -> None:
        """force_disconnect every stream (server_shutdown), then release everything."""
        self._stop_timers()
        await self.hub.shutdown(timeout)
        self._release()

    async def close(self) -> None:
        """Abort streams and release everything, without the shutdown courtesy."""
        self._stop_timers()
        await self.hub.close()
        self._release()

    def _stop_timers(self) -> None:
        self.heartbeat.stop()
        self._recheck.stop()

    def _release(self) -> None:
        self.publisher.close()
        self.logins.close()
        self.database.close()
