"""tradestream-broker: the sequencing PUB/SUB proxy (the ZeroMQ guide's Clone pattern).

    PULL ingress ─────┐                                        ┌▶ XPUB egress
                      ├▶ check ─▶ Sequencer ─▶ journal commit ─┤
    ROUTER ack-ingress┘   (seq per key, history) (--journal)   └▶ acks to the relays
    ROUTER ◀─▶ replay / stats requests          XPUB subscriptions ─▶ head markers

The write path is bus/ingest.py (one journal commit per drained batch, before
anything of it is published or acknowledged), the acknowledged ingress
bus/ack_ingress.py, the replay and stats answers bus/broker_requests.py. With
`--journal` the broker comes back from a crash with the same epoch, heads,
histories and producer streams.

Egress frames are `[topic, header, payload]`, header = `[epoch, seq, published_ns,
sequenced_ns]`; the payload bytes are forwarded untouched. Frames of the broker's
own protocol carry a payload whose kind starts with `_` and consume no seq:

- `_head` answers every subscription to a key topic (XPUB_VERBOSE passes even
  repeated ones up) with that key's head in the seq field. It is sent after
  libzmq applied the subscription, so the subscriber receives every event after
  that head: this closes the subscription race.
- `_heartbeat` on the control topic every `--bus-heartbeat` seconds lets a
  subscriber tell a silent broker from a quiet market, and its epoch a restart
  from a blip.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

import zmq

from bus import peersock, protocol, security
from bus.ack_ingress import AckIngress
from bus.broker_config import BrokerConfig, parse_config
from bus.broker_requests import REPLAY_QUEUE, BrokerStats, Requests
from bus.errors import BusError, DecodeError, JournalError, PayloadTooLarge
from bus.frames import recv_frames, send3
from bus.ingest import Ingest
from bus.journal import Journal
from bus.process import configure_logging, exit_on_stop_signals_while_starting, stop_on_signals
from bus.quiet_log import CountLog, QuietLog
from bus.resume_grace import ResumeGrace
from bus.roles import Domain
from bus.topics import CONTROL_TOPIC, parse_key_topic

log = logging.getLogger(__name__)

DRAIN_BATCH = 1024


class Broker:
    """Owns the four sockets, the sequencer and the journal; `run()` until `stop()`.

    Raises JournalError when the journal cannot be opened or restored, zmq.ZMQError
    when an endpoint cannot be bound. `ack_sndhwm` is the acknowledged ingress's
    queue of answers per relay (libzmq's 1000 by default; a test's tiny one drops answers).
    """

    def __init__(self, config: BrokerConfig, context: zmq.Context[Any] | None = None, *, ack_sndhwm: int | None = None) -> None:
        self.config = config
        journal = Journal(config.journal, config.history, config.max_keys) if config.journal else None
        self.ingest = Ingest.open(
            journal, config.history, config.max_keys,
            history_bytes=config.history_bytes, total_bytes=config.history_total_bytes,
        )
        self.ingest.max_payload = config.max_payload
        self.sequencer = self.ingest.sequencer
        self.stats = BrokerStats(epoch=self.sequencer.epoch)
        self._drops = QuietLog(log, logging.WARNING, interval_s=1.0)
        self._oversize_log = CountLog(log, f"payloads over --max-payload {config.max_payload} bytes refused")
        self._replay_drop_log = CountLog(log, "replay answers dropped (the peer's queue is full or it left)")
        self._stopping = False
        self._grace = ResumeGrace(0.0, restored_keys=0, grace_s=0.0)  # run() sets the real one
        ctx = context or zmq.Context.instance()
        self.ingress = peersock.make(ctx, zmq.PULL, rcvhwm=config.hwm, linger=1000)
        self.egress = peersock.make(ctx, zmq.XPUB, sndhwm=config.hwm, linger=1000)
        self.egress.setsockopt(zmq.XPUB_VERBOSE, 1)
        # ROUTER_MANDATORY: a full queue is zmq.Again at send, so an answer is dropped and counted.
        self.router = peersock.make(ctx, zmq.ROUTER, sndhwm=REPLAY_QUEUE, router_mandatory=True, linger=1000)
        # ROUTER_MANDATORY: an answer to a relay that left or whose queue is full is an error at send, so it is
        # dropped and counted, with the rest of the batch to it; its timeout resends (tests/bus/test_ack_hwm.py).
        ack_router = peersock.make(ctx, zmq.ROUTER, rcvhwm=config.hwm, sndhwm=ack_sndhwm, router_mandatory=True, linger=1000)
        self.acks = AckIngress(ack_router, self.ingest, self._drop)
        self.requests = Requests(self.router, self.sequencer, self.stats, self._counters)
        self._sockets = (self.ingress, self.egress, self.router, ack_router)
        # With CURVE keys the ingresses drop what the sender's roles may not send (bus/roles.py).
        self._receive = {self.ingress: security.receiver(self.ingress, 0), ack_router: security.receiver(ack_router, 3)}
        try:
            security.bind(self.ingress, config.ingress, Domain.INGRESS)
            security.bind(self.egress, config.publish, Domain.PUBLISH)
            security.bind(self.router, config.replay, Domain.REPLAY)
            security.bind(ack_router, config.ack_ingress, Domain.ACK_INGRESS)
        except (zmq.ZMQError, BusError):
            self._close(linger=0)
            raise

    @property
    def endpoints(self) -> dict[str, str]:
        """The bound endpoints, with real ports when `*` was asked for."""
        names = ("ingress", "publish", "replay", "ack_ingress")
        return {name: sock.getsockopt(zmq.LAST_ENDPOINT).decode() for name, sock in zip(names, self._sockets)}

    def stop(self) -> None:
        """Ask `run()` to return after draining what is already received."""
        self._stopping = True

    def run(self) -> None:
        """Serve until `stop()`; then drain the ingresses once and close the sockets.

        A JournalError (the journal cannot be written) ends it at once: nothing of the
        batch was published or acknowledged, and the journal holds the state before it.
        """
        # The two ROUTERs are polled by their file descriptors (ZMQ_FD), not as zmq sockets: zmq_poll
        # checks each zmq socket it is given before and after it waits (ZMQ_EVENTS: a poll() and a
        # getpid() syscall each in libzmq's mailbox), at every wake-up, and events rarely come there
        # (docs/benchmarks.md, issue 13: 22.9 -> 14.9 syscalls per event paced at 1,000/s). Their FD says
        # that commands arrived, not that a message waits, so each is drained until EAGAIN (or rechecked
        # with ZMQ_EVENTS after being used), and rechecked at every heartbeat.
        # Restarted from the journal: subscriptions and replays only until the streamers are back (bus/resume_grace.py).
        started = time.monotonic()
        grace = self._grace = ResumeGrace(
            started, restored_keys=len(self.sequencer.heads) if self.config.journal else 0, grace_s=self.config.resume_grace
        )
        if grace.waits:
            log.info("waiting up to %g s for subscribers before taking events (keys restored: %d)",
                     self.config.resume_grace, len(self.sequencer.heads))
        poller = zmq.Poller()
        poller.register(self.egress, zmq.POLLIN)
        by_fd = {sock.getsockopt(zmq.FD): sock for sock in (self.router, self.acks.sock)}
        poller.register(self.router.getsockopt(zmq.FD), zmq.POLLIN)
        waiting = set(by_fd.values())  # ROUTERs that may hold messages their FD will not announce again
        taking = False  # the ingresses polled and drained: once the grace is over (unread until then, not polled)
        next_heartbeat = time.monotonic()
        try:
            while not self._stopping:
                now = time.monotonic()
                if not taking and grace.is_open(now):
                    taking = True
                    poller.register(self.ingress, zmq.POLLIN)
                    poller.register(self.acks.sock.getsockopt(zmq.FD), zmq.POLLIN)
                    if grace.waits:
                        log.info("taking events after %.2f s of subscriptions and replays only", now - started)
                pending = waiting if taking else waiting - {self.acks.sock}
                wake_s = next_heartbeat - now if taking else min(next_heartbeat - now, grace.wait_s(now))
                timeout_ms = 0 if pending else max(0, min(100, int(wake_s * 1000)))
                ready = dict(poller.poll(timeout_ms))
                waiting.update(sock for fd, sock in by_fd.items() if fd in ready)
                if self.egress in ready:
                    self._drain(self.egress, self._handle_subscription)
                if taking:
                    acks = self.acks.sock in waiting
                    self._ingest(self.ingress in ready, acks)
                    if acks:
                        self._recheck(self.acks.sock, waiting)  # after its answers were sent
                if self.router in waiting:
                    self._drain(self.router, self.requests.handle)
                    self._recheck(self.router, waiting)
                if time.monotonic() >= next_heartbeat:
                    self._heartbeat()
                    for sock in by_fd.values():
                        self._recheck(sock, waiting)
                    next_heartbeat = time.monotonic() + self.config.bus_heartbeat
            self._ingest(True, True)
        except JournalError:
            self._close(linger=0)
            raise
        self._close()

    @staticmethod
    def _recheck(sock: zmq.Socket[Any], waiting: set[zmq.Socket[Any]]) -> None:
        """Whether `sock` (polled by its FD) holds a message: ZMQ_EVENTS, which also re-arms its FD."""
        events = sock.getsockopt(zmq.EVENTS)
        if isinstance(events, int) and events & zmq.POLLIN:
            waiting.add(sock)
        else:
            waiting.discard(sock)

    def _ingest(self, pull: bool, acks: bool) -> None:
        """One batch from the ingresses: sequenced, journaled, published, then acknowledged."""
        if pull:
            self._drain_ingress()
        if acks:
            self._drain(self.acks.sock, self.acks.handle)
        published, control = self.ingest.flush(self.egress)
        self.stats.published += published
        self.stats.control += control
        self.acks.answer()

    def _close(self, linger: int | None = None) -> None:
        for sock in self._sockets:
            sock.close(linger)
        if self.ingest.journal is not None:
            self.ingest.journal.close()

    def _drain(self, sock: zmq.Socket[Any], handle: Any) -> None:
        """Handle what is waiting on `sock`, at most DRAIN_BATCH messages per turn."""
        receive = self._receive.get(sock, recv_frames)
        for _ in range(DRAIN_BATCH):
            try:
                frames = receive(sock)
            except zmq.Again:
                return
            if frames is None:
                continue  # refused and counted by bus/security.py
            try:
                handle(frames)
            except Exception:
                log.exception("message skipped")

    def _drain_ingress(self) -> None:
        """The PULL ingress: `_drain` with `_handle_ingress` inlined, the broker's hot loop."""
        sock = self.ingress
        receive = self._receive[sock]
        take = self.ingest.take
        received = 0
        try:
            for _ in range(DRAIN_BATCH):
                try:
                    frames = receive(sock)
                except zmq.Again:
                    return
                if frames is None:
                    continue  # refused and counted by bus/security.py
                received += 1
                if len(frames) != 2:
                    self._drop(f"{len(frames)} frames, expected [topic, payload]")
                    continue
                try:
                    take(frames[0], frames[1])
                except PayloadTooLarge:
                    pass  # counted by Ingest, logged once per interval by the heartbeat
                except DecodeError as exc:
                    self._drop(str(exc))
                except Exception:
                    log.exception("message skipped")
        finally:
            self.stats.received += received

    def _drop(self, reason: str) -> None:
        self.stats.dropped_malformed += 1
        self._drops("dropped malformed frame: %s", reason)

    def _handle_subscription(self, frames: list[bytes]) -> None:
        message = frames[0]
        if not message or message[0] != 1:
            return  # an unsubscription: nothing to answer
        topic = message[1:]
        self.stats.subscriptions += 1
        self._grace.heard(time.monotonic(), control=topic == CONTROL_TOPIC)
        if topic != CONTROL_TOPIC:
            try:
                parse_key_topic(topic)
            except DecodeError:
                return  # a wildcard or foreign subscription gets events, not markers
        now = time.time_ns()
        head = self.sequencer.head(topic)
        send3(self.egress, topic, protocol.pack_header(self.sequencer.epoch, head, now, now), protocol.HEAD_PAYLOAD)

    def _counters(self) -> dict[str, int]:
        """Every counter a `stats` request answers: the broker's, the acknowledged ingress's, the bus security's."""
        self.stats.keys = len(self.sequencer.heads)
        self.stats.keys_with_history = self.sequencer.keys_with_history
        self.stats.history_bytes = self.sequencer.bytes_kept
        self.stats.histories_evicted = self.sequencer.histories_evicted
        self.stats.refused_oversize = self.ingest.refused_oversize
        self.stats.journal_commits = self.ingest.commits
        return {**asdict(self.stats), **asdict(self.acks.stats), **security.stats(self.ingress)}

    def _heartbeat(self) -> None:
        self._oversize_log.tick(self.ingest.refused_oversize)
        self._replay_drop_log.tick(self.stats.replay_answers_dropped)
        now = time.time_ns()
        header = protocol.pack_header(self.sequencer.epoch, 0, now, now)
        send3(self.egress, CONTROL_TOPIC, header, protocol.HEARTBEAT_PAYLOAD)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tradestream-broker`."""
    config, log_level = parse_config(argv)
    configure_logging("broker", log_level)
    exit_on_stop_signals_while_starting()
    if not security.start(config.bus_keys, binds=(config.ingress, config.publish, config.replay, config.ack_ingress)):
        return 1
    try:
        broker = Broker(config)
    except JournalError as exc:
        log.error("%s", exc)  # not a new epoch in silence: the operator decides what to do with the file
        return 1
    except (zmq.ZMQError, BusError) as exc:
        log.error("cannot bind: %s", exc)
        return 1
    stop_on_signals(broker.stop)
    ends = broker.endpoints
    if config.journal:
        log.info("journal %s %s", config.journal, broker.ingest.restored or "new")
    log.info(
        "broker epoch=%d listening ingress=%s publish=%s replay=%s ack_ingress=%s history=%d history_bytes=%d"
        " history_total_bytes=%d max_payload=%d",
        broker.sequencer.epoch, ends["ingress"], ends["publish"], ends["replay"], ends["ack_ingress"], config.history,
        config.history_bytes, config.history_total_bytes, config.max_payload,
    )
    try:
        broker.run()
    except JournalError as exc:
        log.error("stopping: %s", exc)
        return 1
    log.info("broker stopped: %s", asdict(broker.stats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
