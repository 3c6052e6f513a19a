"""Fixtures for bus tests: a real tradestream-broker process and real sockets."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from bus import codec, protocol
from bus.events import Account, OrderEvent, utc_now
from bus.topics import StreamKey, key_topic
from tests.ports import reserved_ports
from tests.waiting import PROCESS_START_S, wait_until

_LISTENING = re.compile(r"listening ingress=(\S+) publish=(\S+) replay=(\S+) ack_ingress=(\S+)")
ENDPOINTS = ("ingress", "publish", "replay", "ack_ingress")


class BrokerProcess:
    """A `tradestream-broker` subprocess on reserved ports (tests/ports.py), restarted on the same ones.

    Reserved, not port 0 then the ones it took: another test's port-0 bind could take one of those
    while the broker is down. They are released when this object goes (the test's end).
    """

    def __init__(self, log_dir: Path, *extra: str) -> None:
        self.log_dir = log_dir
        self.extra = list(extra)
        ports = reserved_ports(len(ENDPOINTS))
        weakref.finalize(self, ports.close)
        self.endpoints = {name: f"tcp://127.0.0.1:{port}" for name, port in zip(ENDPOINTS, ports.ports, strict=True)}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> BrokerProcess:
        """Start the broker (again: on the same ports) and wait for its `listening` line."""
        self.starts += 1
        log_path = self.log_dir / f"broker-{self.starts}.log"
        args = [sys.executable, "-m", "bus.broker", "--bus-heartbeat", "0.1", *self.extra]
        for name, endpoint in self.endpoints.items():
            args += [f"--{name.replace('_', '-')}", endpoint]
        with open(log_path, "wb") as log:
            proc = self.proc = subprocess.Popen(args, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})

        def listening_or_exited() -> re.Match[str] | str | None:
            text = log_path.read_text()
            return _LISTENING.search(text) or (None if proc.poll() is None else text or "(empty log)")

        outcome = wait_until(listening_or_exited, timeout=PROCESS_START_S, what=f"the broker to listen (log: {log_path})")
        if not isinstance(outcome, re.Match):
            raise AssertionError(f"the broker exited {proc.returncode} before listening:\n{outcome}")
        self.endpoints = dict(zip(ENDPOINTS, outcome.groups(), strict=True))
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=5)

    def log_text(self) -> str:
        return "".join(p.read_text() for p in sorted(self.log_dir.glob("broker-*.log")))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    process = BrokerProcess(tmp_path).start()
    yield process
    if process.proc is not None and process.proc.poll() is None:
        process.kill()


@pytest.fixture
def zctx() -> Iterator[zmq.Context[Any]]:
    ctx: zmq.Context[Any] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def make_order(user_id: int, strategy_id: int, order_id: str = "o-1") -> OrderEvent:
    """A valid order event of the given key."""
    return OrderEvent(
        event_type="order_created", order_id=order_id, symbol="BTC/USDT", strategy_id=strategy_id, user_id=user_id,
        side="BUY", quantity=1.0, price=100.0, status="NEW", timestamp=utc_now(), order_type="LIMIT", stop_price=None,
        account=Account(1, "main", "paper"), suppress_toast=False,
    )


def request(ctx: zmq.Context[Any], endpoint: str, *frames: bytes) -> list[bytes]:
    """One request on the broker's ROUTER through a fresh DEALER."""
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.RCVTIMEO, 5000)
    dealer.connect(endpoint)
    try:
        dealer.send_multipart(frames)
        return dealer.recv_multipart()
    finally:
        dealer.close()


def history(ctx: zmq.Context[Any], broker: BrokerProcess, key: StreamKey, newest: int | None = None) -> tuple[int, list[tuple[int, dict[str, Any]]]]:
    """The epoch, and (seq, payload) of every event the broker's history holds for `key` (its `newest` only, if given)."""
    topic = key_topic(key)
    _, pair = request(ctx, broker.endpoints["replay"], *protocol.replay_request(topic, 0, protocol.HEAD_ONLY))
    epoch, head = protocol.unpack_int_pair(pair)
    after = 0 if newest is None else max(0, head - newest)
    status, _, *frames = request(ctx, broker.endpoints["replay"], *protocol.replay_request(topic, epoch, after))
    assert status == protocol.OK
    return epoch, [(protocol.unpack_header(h).seq, codec.unpack_map(p)) for h, p in zip(frames[0::2], frames[1::2])]


def broker_stats(ctx: zmq.Context[Any], endpoint: str) -> dict[str, int]:
    """The broker's counters."""
    status, payload = request(ctx, endpoint, protocol.STATS)
    assert status == protocol.STATS
    return codec.unpack_map(payload)  # type: ignore[return-value]
