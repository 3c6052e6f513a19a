"""tradestream-broker: the sequencing PUB/SUB proxy (the ZeroMQ guide's Clone pattern).

    PULL ingress ─▶ validate ─▶ Sequencer (seq per key, history) ─▶ XPUB egress
    ROUTER ◀─▶ replay / stats requests          XPUB subscriptions ─▶ head markers

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
from dataclasses import asdict, dataclass
from typing import Any

import zmq

from bus import codec, endpoints, events, kinds, protocol
from bus.errors import DecodeError
from bus.frames import recv_frames, send3
from bus.process import SettingsParser, configure_logging, setting, stop_on_signals
from bus.sequencer import Sequencer, new_epoch
from bus.topics import CONTROL_TOPIC, key_topic, parse_key_topic

log = logging.getLogger(__name__)

DRAIN_BATCH = 1024


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Settings of one broker process."""

    ingress: str = setting(endpoints.INGRESS, kind=kinds.zmq_endpoint, help="PULL endpoint producers push to (bound)")
    publish: str = setting(endpoints.PUBLISH, kind=kinds.zmq_endpoint, help="XPUB endpoint streamers subscribe to (bound)")
    replay: str = setting(endpoints.REPLAY, kind=kinds.zmq_endpoint, help="ROUTER endpoint answering replay requests (bound)")
    history: int = setting(100, kind=kinds.positive_int, help="events kept per key for replay")
    max_keys: int = setting(100_000, kind=kinds.positive_int, help="keys whose history is kept; the least recently active loses it first")
    bus_heartbeat: float = setting(1.0, kind=kinds.positive_float, help="seconds between broker heartbeats on the control topic")
    hwm: int = setting(100_000, kind=kinds.positive_int, help="high-water mark of the ingress and of each subscriber's queue, in messages")


@dataclass(slots=True)
class BrokerStats:
    """Counters answered to a `stats` request."""

    epoch: int
    received: int = 0
    published: int = 0
    control: int = 0
    dropped_malformed: int = 0
    replay_requests: int = 0
    replay_gone: int = 0
    bad_requests: int = 0
    subscriptions: int = 0
    keys: int = 0
    keys_with_history: int = 0


class DropLog:
    """Logs dropped frames at most once per interval, with the count suppressed."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self._next = 0.0
        self._suppressed = 0

    def drop(self, reason: str) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        log.warning("dropped malformed frame: %s (%d more since last report)", reason, self._suppressed)
        self._suppressed = 0
        self._next = now + self.interval_s


class Broker:
    """Owns the three sockets and the sequencer; `run()` until `stop()`."""

    def __init__(self, config: BrokerConfig, context: zmq.Context[Any] | None = None) -> None:
        self.config = config
        self.sequencer = Sequencer(new_epoch(), config.history, config.max_keys)
        self.stats = BrokerStats(epoch=self.sequencer.epoch)
        self._drops = DropLog()
        self._stopping = False
        ctx = context or zmq.Context.instance()
        self.ingress = ctx.socket(zmq.PULL)
        self.ingress.setsockopt(zmq.RCVHWM, config.hwm)
        self.egress = ctx.socket(zmq.XPUB)
        self.egress.setsockopt(zmq.SNDHWM, config.hwm)
        self.egress.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.router = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 0)
        for sock in (self.ingress, self.egress, self.router):
            sock.setsockopt(zmq.LINGER, 1000)
        try:
            self.ingress.bind(config.ingress)
            self.egress.bind(config.publish)
            self.router.bind(config.replay)
        except zmq.ZMQError:
            for sock in (self.ingress, self.egress, self.router):
                sock.close(linger=0)
            raise

    @property
    def endpoints(self) -> dict[str, str]:
        """The bound endpoints, with real ports when `*` was asked for."""
        return {
            name: sock.getsockopt(zmq.LAST_ENDPOINT).decode()
            for name, sock in (("ingress", self.ingress), ("publish", self.egress), ("replay", self.router))
        }

    def stop(self) -> None:
        """Ask `run()` to return after draining what is already received."""
        self._stopping = True

    def run(self) -> None:
        """Serve until `stop()`; then drain the ingress once and close the sockets."""
        poller = zmq.Poller()
        for sock in (self.ingress, self.egress, self.router):
            poller.register(sock, zmq.POLLIN)
        next_heartbeat = time.monotonic()
        while not self._stopping:
            timeout_ms = max(0, min(100, int((next_heartbeat - time.monotonic()) * 1000)))
            ready = dict(poller.poll(timeout_ms))
            if self.egress in ready:
                self._drain(self.egress, self._handle_subscription)
            if self.ingress in ready:
                self._drain(self.ingress, self._handle_ingress)
            if self.router in ready:
                self._drain(self.router, self._handle_request)
            if time.monotonic() >= next_heartbeat:
                self._heartbeat()
                next_heartbeat = time.monotonic() + self.config.bus_heartbeat
        self._drain(self.ingress, self._handle_ingress)
        for sock in (self.ingress, self.egress, self.router):
            sock.close()

    def _drain(self, sock: zmq.Socket[Any], handle: Any) -> None:
        """Handle what is waiting on `sock`, at most DRAIN_BATCH messages per turn."""
        for _ in range(DRAIN_BATCH):
            try:
                frames = recv_frames(sock)
            except zmq.Again:
                return
            try:
                handle(frames)
            except Exception:
                log.exception("message skipped")

    def _handle_ingress(self, frames: list[bytes]) -> None:
        self.stats.received += 1
        if len(frames) != 2:
            return self._drop(f"{len(frames)} frames, expected [topic, payload]")
        topic, payload = frames
        now = time.time_ns()
        try:
            message = events.decode(payload)
            # The schema skips unknown keys unread; decoding the whole map as well guarantees that
            # every subscriber can decode what is sequenced (a bad string there would poison the
            # key's replays), and gives the transport's `published_ns`. Both passes: ~2.1 µs per
            # event against ~5 µs for the old msgpack unpack + Python checks (docs/benchmarks.md).
            wire = codec.unpack_map(payload)
        except DecodeError as exc:
            return self._drop(str(exc))
        published_ns = wire.get("published_ns")
        if type(published_ns) is not int or published_ns < 0:
            published_ns = now
        if isinstance(message, events.ControlMessage):
            if topic != CONTROL_TOPIC:
                return self._drop(f"topic {topic[:40]!r} does not match a {message.kind} payload")
            send3(self.egress, topic, protocol.pack_header(self.sequencer.epoch, 0, published_ns, now), payload)
            self.stats.control += 1
        elif topic == key_topic(message.key):
            header = self.sequencer.sequence(topic, payload, published_ns, now)
            send3(self.egress, topic, header, payload)
            self.stats.published += 1
        else:
            return self._drop(f"topic {topic[:40]!r} does not match a {message.kind} payload")

    def _drop(self, reason: str) -> None:
        self.stats.dropped_malformed += 1
        self._drops.drop(reason)

    def _handle_subscription(self, frames: list[bytes]) -> None:
        message = frames[0]
        if not message or message[0] != 1:
            return  # an unsubscription: nothing to answer
        topic = message[1:]
        self.stats.subscriptions += 1
        if topic != CONTROL_TOPIC:
            try:
                parse_key_topic(topic)
            except DecodeError:
                return  # a wildcard or foreign subscription gets events, not markers
        now = time.time_ns()
        head = self.sequencer.head(topic)
        send3(self.egress, topic, protocol.pack_header(self.sequencer.epoch, head, now, now), protocol.HEAD_PAYLOAD)

    def _heartbeat(self) -> None:
        now = time.time_ns()
        header = protocol.pack_header(self.sequencer.epoch, 0, now, now)
        send3(self.egress, CONTROL_TOPIC, header, protocol.HEARTBEAT_PAYLOAD)

    def _handle_request(self, frames: list[bytes]) -> None:
        identity, request = frames[0], frames[1:]
        try:
            reply = self._answer(request)
        except DecodeError as exc:
            self.stats.bad_requests += 1
            reply = [protocol.ERROR, str(exc).encode()]
        self.router.send_multipart([identity, *reply])

    def _answer(self, request: list[bytes]) -> list[bytes]:
        if request[:1] == [protocol.STATS]:
            self.stats.keys = len(self.sequencer.heads)
            self.stats.keys_with_history = self.sequencer.keys_with_history
            return [protocol.STATS, codec.pack(asdict(self.stats))]
        if len(request) != 3 or request[0] != protocol.REPLAY:
            raise DecodeError("expected [replay, topic, [epoch, after_seq]] or [stats]")
        topic = request[1]
        parse_key_topic(topic)
        epoch, after_seq = protocol.unpack_int_pair(request[2])
        self.stats.replay_requests += 1
        result = self.sequencer.replay(topic, epoch, after_seq)
        status = protocol.pack_int_pair(result.epoch, result.head)
        if not result.ok:
            self.stats.replay_gone += 1
            return [protocol.GONE, status]
        return [protocol.OK, status, *(frame for pair in result.events for frame in pair)]


def parse_config(argv: list[str] | None) -> tuple[BrokerConfig, str]:
    """Read flags and TRADESTREAM_* variables into a BrokerConfig and a log level."""
    parser = SettingsParser(
        BrokerConfig,
        prog="tradestream-broker",
        description="Sequencing PUB/SUB proxy: numbers events per (user, strategy) key, "
        "keeps a short history per key and replays it on request.",
    )
    return parser.parse(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tradestream-broker`."""
    config, log_level = parse_config(argv)
    configure_logging("broker", log_level)
    try:
        broker = Broker(config)
    except zmq.ZMQError as exc:
        log.error("cannot bind: %s", exc)
        return 1
    stop_on_signals(broker.stop)
    endpoints = broker.endpoints
    log.info(
        "broker epoch=%d listening ingress=%s publish=%s replay=%s history=%d",
        broker.sequencer.epoch, endpoints["ingress"], endpoints["publish"], endpoints["replay"], config.history,
    )
    broker.run()
    log.info("broker stopped: %s", asdict(broker.stats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
