"""Fixtures for bus tests: a real tradestream-broker process and real sockets."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from bus import codec, protocol
from bus.events import Account, OrderEvent, utc_now
from bus.topics import StreamKey, key_topic
from tests.waiting import PROCESS_START_S, wait_until

_LISTENING = re.compile(r"listening ingress=(\S+) publish=(\S+) replay=(\S+) ack_ingress=(\S+)")
ENDPOINTS = ("ingress", "publish", "replay", "ack_ingress")


class BrokerProcess:
    """A `tradestream-broker` subprocess; starts on free ports, restarts on the same ones."""

    def __init__(self, log_dir: Path, *extra: str) -> None:
        self.log_dir = log_dir
        self.extra = list(extra)
        self.endpoints = dict.fromkeys(ENDPOINTS, "tcp://127.0.0.1:*")
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> BrokerProcess:
        """Start the broker and wait for its `listening` line.

        A restart binds the ports the first start chose. Between the two, another test's process
        may bind one of them for a moment (port 0 picks any free port): the broker then exits
        with "cannot bind", and a restart is tried again until the port is free or the deadline passes.
        """
        restart = self.proc is not None
        deadline = time.monotonic() + PROCESS_START_S
        while True:
            match, log_text = self._launch(deadline)
            if match is not None:
                self.endpoints = dict(zip(ENDPOINTS, match.groups()))
                return self
            if not restart or "cannot bind" not in log_text or time.monotonic() > deadline:
                raise AssertionError(f"the broker exited {self.proc and self.proc.returncode} before listening:\n{log_text}")

    def _launch(self, deadline: float) -> tuple[re.Match[str] | None, str]:
        """One broker process: its `listening` line, or None and its log once it has exited."""
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

        outcome = wait_until(listening_or_exited, timeout=max(deadline - time.monotonic(), 0.1),
                             what=f"the broker to listen (log: {log_path})")
        return (outcome, "") if isinstance(outcome, re.Match) else (None, outcome)

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
