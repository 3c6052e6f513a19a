"""Everything a streamer process runs besides HTTP, built and started in one place.

Services owns the hub (and through it the Subscriber), the database, its
executor and readiness probe, the authenticator, the control-message
Publisher, the exchange of stream counts with the other streamers
(streamer/peers.py), the Prometheus registry and the two timers: heartbeats
(one for every stream) and the re-check of access and sessions, which catches
a control message lost on the way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

import zmq.asyncio
from prometheus_client import CollectorRegistry, ProcessCollector
from tornado.ioloop import PeriodicCallback

from bus import reasons
from bus.errors import BusError
from bus.events import ControlMessage, EndSessionsMessage
from bus.publisher import Publisher
from bus.topics import StreamKey
from store.errors import DatabaseUnavailable
from streamer import queries, sse
from streamer.auth import Authenticator
from streamer.batching import BatchLookup
from streamer.cache import TtlCache
from streamer.config import StreamerConfig
from streamer.heartbeat import Heartbeat
from streamer.hub import Hub
from streamer.login import LoginGate
from streamer.peers import PeerCounts
from streamer.queries import Database
from streamer.runtime import Refreezer
from streamer.stats import StatsCollector, StreamerStats
from web.backoff import AcceptBackoff
from web.health import DOWN, UP

log = logging.getLogger(__name__)

ACCESS_CACHE_TTL_S = 5.0


class Services:
    """The hub, database, authenticator, publisher, metrics and timers of one streamer."""

    def __init__(self, config: StreamerConfig, context: zmq.asyncio.Context | None = None) -> None:
        self.config = config
        self.stats = StreamerStats()
        self.hub = Hub(config, self.stats, context)
        self.database = Database(config.database_url, config.database_threads)
        self.auth = Authenticator(self.database, config.credentials_ttl)
        self.logins = LoginGate(self.database, config.login_per_address, config.login_per_user, config.login_window)
        # Only "allowed" is kept. Safe with a control message after the read: the hub
        # compares its arrival with when the answer was read (see Hub.open).
        self.stream_access: TtlCache[StreamKey, str | None] = TtlCache(ACCESS_CACHE_TTL_S)
        self.access_batches: BatchLookup[StreamKey, str | None] = BatchLookup(
            lambda keys: self.database.run(queries.stream_refusals, keys))
        self.hub.on_revoke = self._forget_access
        self.hub.on_sessions_ended = self.auth.end
        self.peers = PeerCounts(self.hub.admission, config.ingress, self.hub.shed)
        self.hub.on_counts = self.peers.on_message
        # Called from database threads (admin actions publish after their commit): it must not block long.
        self.publisher = Publisher(config.ingress, send_timeout_ms=500, linger_ms=1000)
        self.server_backoff: AcceptBackoff | None = None  # the HTTP server's, attached by streamer/server.py
        self.heartbeat = Heartbeat(self.hub.channels, self.stats, config.heartbeat)
        self._recheck = PeriodicCallback(self.recheck, config.recheck * 1000)
        self.refreezer = None if config.no_gc_freeze else Refreezer(
            lambda: (self.stats.connects, self.stats.disconnects, self.hub.client_count))
        # Last: registering describes the collector, which reads a snapshot of everything above.
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(StatsCollector(lambda: self.snapshot(per_key=False)))
        self.registry.register(self.stats.latency.histogram)
        ProcessCollector(registry=self.registry)

    async def start(self) -> None:
        """Start the Subscriber, the probe, the count exchange and the timers (on the running loop)."""
        await self.hub.start()
        self.database.probe.start()
        self.peers.start()
        self.heartbeat.start()
        self._recheck.start()
        if self.refreezer is not None:
            self.refreezer.start()

    def readiness(self) -> dict[str, bool]:
        """What `/healthz` reports: is each dependency up?"""
        return {"broker": self.hub.subscriber.broker_up, "database": self.database.probe.up}

    def snapshot(self, per_key: bool = True) -> dict[str, Any]:
        """The `/api/events/stats` map; `per_key=False` leaves out the per-key details (for /metrics)."""
        hub, stats, bus = self.hub, self.stats, self.hub.subscriber.stats
        snapshot: dict[str, Any] = {
            "total_connections": hub.client_count,
            "key_count": len(hub.channels),
            "events_received": stats.events_received,
            "events_delivered": stats.events_delivered,
            "slow_consumer_disconnects": stats.slow_consumer_disconnects,
            "gaps_detected": bus.gaps_detected,
            "gaps_recovered": bus.gaps_recovered,
            "replay_resent": bus.replay_resent,
            "resyncs": stats.resyncs,
            "latency_ms": stats.latency.summary(),
            **stats.other_counters(),
            **self._guard_counters(),
            "broker": sse.bus_word(hub.subscriber.broker_up),
            "bus": asdict(bus),
            **self._gc_counters(),
        }
        if per_key:
            snapshot["timings"] = stats.timings.snapshot()
            snapshot["connections_by_key"] = {str(key): len(ch.members) for key, ch in hub.channels.items()}
            snapshot["keys"] = {str(key): ch.describe() for key, ch in hub.channels.items()}
        return snapshot

    def _guard_counters(self) -> dict[str, Any]:
        """Login refusals, accept failures, the database's state and the stream-count exchange."""
        return {
            **self.logins.counters(),
            "database": UP if self.database.probe.up else DOWN,
            "database_failures": self.database.probe.failures,
            "accept_failures": self.accept_failures(),
            "streamer_id": self.hub.admission.me,
            "peer_streamers": self.hub.admission.peers,
            "streams_elsewhere": self.hub.admission.elsewhere_total(time.monotonic()),
            "counts_unsent": self.peers.unsent,
        }

    def _gc_counters(self) -> dict[str, int]:
        """The re-freezes and full collections of streamer/gcpolicy.py (not gc.get_freeze_count(): it walks
        every frozen object, ~10 ms at 10,000 streams, too much for each scrape)."""
        policy = self.refreezer.policy if self.refreezer is not None else None
        return {
            "gc_freezes": policy.freezes if policy else 0,
            "gc_full_collections": policy.full_collections if policy else 0,
        }

    def accept_failures(self) -> int:
        """accept() calls that failed (out of descriptors): the HTTP server's count, once it is attached."""
        return self.server_backoff.failures if self.server_backoff is not None else 0

    async def stream_refusal(self, key: StreamKey) -> tuple[str | None, float]:
        """Why the key may not be streamed now (None: it may), and when that was read."""
        return await self.stream_access.get(
            key, lambda: self.access_batches.get(key), keep=lambda refusal: refusal is None
        )

    async def recheck(self) -> int:
        """Re-verify every open stream's access and session in the database; end the lost ones. How many ended."""
        keys = list(self.hub.channels)
        if not keys:
            return 0
        self.stats.rechecks += 1
        sessions, users = self.hub.users.credentials()
        try:
            verdicts = await self.database.run(queries.revoked_keys, keys)
            dead_sessions, inactive_users = await self.database.run(queries.ended_credentials, set(sessions), users)
        except Exception as exc:
            if isinstance(exc, DatabaseUnavailable):
                return 0  # the probe logged it; the next re-check tries again
            log.exception("access re-check of %d keys failed", len(keys))
            return 0
        ended = sum(self.hub.revoke(key, reason, reasons.message(reason, key.strategy_id)) for key, reason in verdicts.items())
        for message in _endings(dead_sessions, inactive_users, sessions):
            ended += self.hub.end_sessions(message)
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
        if self.refreezer is not None:
            self.refreezer.stop()
        self.peers.stop()

    def _release(self) -> None:
        self.publisher.close()
        self.logins.close()
        self.database.close()


def _endings(dead_sessions: set[int], inactive_users: set[int], session_users: dict[int, int]) -> list[EndSessionsMessage]:
    """The end_sessions a re-check found missing: sessions gone (their user's id from `session_users`), users deactivated."""
    ended = [
        EndSessionsMessage(user_id=session_users[session_id], session_id=session_id, reason=reasons.SESSION_ENDED, message=reasons.message(reasons.SESSION_ENDED))
        for session_id in dead_sessions if session_id in session_users
    ]
    text = reasons.message(reasons.USER_DEACTIVATED)
    return ended + [EndSessionsMessage(user_id=user_id, api_token=True, reason=reasons.USER_DEACTIVATED, message=text) for user_id in inactive_users]
