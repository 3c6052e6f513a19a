"""The publisher process: PUSHes order events at a steady rate, each stamped with its publish time.

The publish time travels in `order_id` as `bench-<time_ns>`, so a client finds
it with one bytes search in the data line, whatever JSON spacing the streamer uses.
"""

from __future__ import annotations

import os
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

import zmq

from bus import codec
from bus.events import utc_now
from bus.topics import StreamKey, key_topic

ORDER_ID_PREFIX = b"bench-"
TICK_S = 0.001


def order_wire(key: StreamKey, published_ns: int, timestamp: str) -> dict[str, Any]:
    """An `order_update` of ~300 bytes of JSON whose order_id carries `published_ns`."""
    return {
        "kind": "order_update", "event_type": "order_created", "order_id": f"bench-{published_ns}",
        "symbol": "BTC/USDT", "strategy_id": key.strategy_id, "user_id": key.user_id, "side": "BUY",
        "quantity": 0.125, "price": 90000.5, "status": "NEW", "timestamp": timestamp, "order_type": "LIMIT",
        "stop_price": None, "account": {"account_id": 1, "name": "bench", "exchange": "paper"},
        "suppress_toast": False, "filled_quantity": None, "average_price": None, "published_ns": published_ns,
    }


def push_socket(ingress: str, hwm: int = 1_000_000) -> zmq.Socket[Any]:
    """A PUSH socket to the broker's ingress with a queue deep enough for a burst."""
    sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.LINGER, 5000)
    sock.connect(ingress)
    return sock


def publish_paced(ingress: str, keys: list[StreamKey], rate: float, duration_s: float) -> list[int]:
    """Publish `rate` events/s round-robin over `keys` for `duration_s`; the count sent per key."""
    sock = push_socket(ingress)
    topics = [key_topic(key) for key in keys]
    sent = [0] * len(keys)
    total = 0
    # Exactly rate * duration events: the last tick falls short of `end`, so it sends what is still due.
    goal = round(rate * duration_s)
    start = time.monotonic()
    end = start + duration_s
    while total < goal:
        now = time.monotonic()
        due = goal if now >= end else min(goal, int((now - start) * rate))
        timestamp = utc_now()
        while total < due:
            index = total % len(keys)
            published_ns = time.time_ns()
            payload = codec.pack(order_wire(keys[index], published_ns, timestamp))
            sock.send_multipart((topics[index], payload))
            sent[index] += 1
            total += 1
        # Pace in 1 ms ticks: sleeping is the pacing itself here, not a wait for a condition.
        time.sleep(max(0.0, TICK_S - (time.monotonic() - now)))
    sock.close()
    return sent


def push_flat_out(ingress: str, keys: list[StreamKey], duration_s: float) -> int:
    """Push pre-packed events round-robin as fast as possible for `duration_s`; the count sent."""
    sock = push_socket(ingress, hwm=10_000)  # blocks rather than queueing seconds of backlog
    timestamp = utc_now()
    frames = [(key_topic(key), codec.pack(order_wire(key, time.time_ns(), timestamp))) for key in keys]
    sent = 0
    end = time.monotonic() + duration_s
    while time.monotonic() < end:
        for frame in frames:
            sock.send_multipart(frame)
        sent += len(frames)
    sock.close(linger=0)
    return sent


def publisher_process(conn: Connection, ingress: str, keys: list[StreamKey], rate: float,
                      duration_s: float, cores: set[int] | None) -> None:
    """Entry of the publisher process: say "ready", wait for "go", publish, send back the counts per key."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the harness tears us down
    if cores:
        os.sched_setaffinity(0, cores)
    conn.send("ready")  # started and imported: a window timed from "go" is all publishing
    conn.recv()
    if rate > 0:
        conn.send(publish_paced(ingress, keys, rate, duration_s))
    else:
        conn.send(push_flat_out(ingress, keys, duration_s))
    conn.close()
