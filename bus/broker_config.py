"""The broker's settings (`BrokerConfig`) and how flags and TRADESTREAM_* variables become them.

Every setting of `tradestream-broker` is a field here (CLI > environment > default,
bus/process.py); bus/broker.py builds the broker from one.
"""

from __future__ import annotations

from dataclasses import dataclass

from bus import codec, endpoints, kinds
from bus.process import SettingsParser, setting
from bus.security import bus_keys_setting


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Settings of one broker process."""

    ingress: str = setting(endpoints.INGRESS, kind=kinds.zmq_endpoint, help="PULL endpoint producers push to (bound)")
    publish: str = setting(endpoints.PUBLISH, kind=kinds.zmq_endpoint, help="XPUB endpoint streamers subscribe to (bound)")
    replay: str = setting(endpoints.REPLAY, kind=kinds.zmq_endpoint, help="ROUTER endpoint answering replay requests (bound)")
    ack_ingress: str = setting(endpoints.ACK_INGRESS, kind=kinds.zmq_endpoint, help="ROUTER endpoint of the acknowledged ingress, for the producers' outbox relays (bound)")
    journal: str = setting("", help="SQLite file keeping epoch, heads, histories and producer streams across restarts (empty: none, a new epoch at every start)")
    history: int = setting(100, kind=kinds.positive_int, help="events kept per key for replay")
    history_bytes: int = setting(1 << 20, kind=kinds.positive_int, help="bytes of events kept per key for replay (header + payload); the oldest go first")
    history_total_bytes: int = setting(512 << 20, kind=kinds.positive_int, help="bytes of events kept for replay over all keys; beyond it the least recently active key loses its history")
    max_keys: int = setting(100_000, kind=kinds.positive_int, help="keys whose history is kept; the least recently active loses it first")
    max_payload: int = setting(64 << 10, kind=kinds.int_range(1, codec.MAX_FRAME_BYTES), help="largest event payload accepted, in bytes; a larger one is refused and counted")
    bus_heartbeat: float = setting(1.0, kind=kinds.positive_float, help="seconds between broker heartbeats on the control topic")
    resume_grace: float = setting(
        1.0, kind=kinds.non_negative_float,
        help="after a restart that restored keys from --journal: seconds at most to serve only subscriptions and replays, "
        "so streamers are subscribed again before the producers' backlog is sequenced (0: take events at once)",
    )
    hwm: int = setting(100_000, kind=kinds.positive_int, help="high-water mark of the ingress and of each subscriber's queue, in messages")
    bus_keys: str = bus_keys_setting()


def parse_config(argv: list[str] | None) -> tuple[BrokerConfig, str]:
    """Read flags and TRADESTREAM_* variables into a BrokerConfig and a log level."""
    parser = SettingsParser(
        BrokerConfig,
        prog="tradestream-broker",
        description="Sequencing PUB/SUB proxy: numbers events per (user, strategy) key, "
        "keeps a short history per key and replays it on request.",
    )
    return parser.parse(argv)
