"""Frozen processes, with real SIGSTOP and SIGCONT: a stall is not a loss.

A subscriber (the streamer's side of the bus) frozen for 3 s must not take its
own stall for broker silence and throw away what is queued for it; a broker
frozen for 5 s must not make its subscribers lose what it publishes when it
wakes up. Both used to end in `resync` (history_gone) whenever more events than
the history went by during the freeze.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import zmq

from bus.publisher import Publisher
from bus.topics import StreamKey
from tests.bus.conftest import BrokerProcess, broker_stats, make_order
from tests.waiting import wait_until

KEYS = [StreamKey(1, 1), StreamKey(2, 1)]
HISTORY = 20
BURST = 50  # events per key during a freeze: more than the history holds


class SubscriberProcess:
    """tests/bus/subscriber_child.py on the broker's endpoints; what it printed, parsed."""

    def __init__(self, broker: BrokerProcess, keys: list[StreamKey], *extra: str) -> None:
        args = [sys.executable, "-m", "tests.bus.subscriber_child", broker.endpoints["publish"], broker.endpoints["replay"],
                ",".join(f"{k.user_id}:{k.strategy_id}" for k in keys), *extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        self.lines: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_until(lambda: {"ready": True} in self.lines, what="the subscriber to be live")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def delivered(self, key: StreamKey) -> list[int]:
        return [seq for line in list(self.lines) for k, _epoch, seq, _id in line.get("events", []) if k == str(key)]

    def order_ids(self, key: StreamKey) -> dict[int, str]:
        """seq -> order_id of what was delivered for `key`."""
        return {seq: oid for line in list(self.lines) for k, _epoch, seq, oid in line.get("events", []) if k == str(key)}

    @property
    def resyncs(self) -> list[dict[str, Any]]:
        return [line for line in list(self.lines) if "resync" in line]

    def caught_up(self, count: int) -> bool:
        """Every key delivered up to `count`, or a resync (which the test then reports)."""
        return bool(self.resyncs) or all(self.delivered(key)[-1:] == [count] for key in KEYS)

    def stop(self) -> dict[str, int]:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)
        self._reader.join(5)
        return next(line["stats"] for line in self.lines if "stats" in line)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def publish_burst(pub: Publisher, count: int, first: int) -> None:
    for i in range(first, first + count):
        for key in KEYS:
            pub.publish(make_order(*key, order_id=str(i)))


def sequenced(ctx: zmq.Context[Any], broker: BrokerProcess) -> int:
    return broker_stats(ctx, broker.endpoints["replay"])["published"]


def freeze_for(proc: subprocess.Popen[Any], seconds: float, frozen_at: float) -> None:
    """Keep `proc` stopped until `seconds` after `frozen_at`, then continue it."""
    time.sleep(max(0.0, frozen_at + seconds - time.monotonic()))  # the freeze's length: a time, not a condition
    proc.send_signal(signal.SIGCONT)


def test_a_subscriber_frozen_for_3s_loses_nothing_that_was_queued_for_it(tmp_path: Path, zctx: zmq.Context[Any]) -> None:
    broker = BrokerProcess(tmp_path, "--history", str(HISTORY), "--bus-heartbeat", "1.0").start()
    child = SubscriberProcess(broker, KEYS)
    try:
        with Publisher(broker.endpoints["ingress"], context=zctx) as pub:
            sent = 0
            # The race this guards against (the watchdog's timer against libzmq's I/O thread after
            # SIGCONT) went the bad way about every other time: four freezes in a row.
            for _ in range(4):
                child.proc.send_signal(signal.SIGSTOP)
                frozen_at = time.monotonic()
                publish_burst(pub, BURST, sent)
                sent += BURST
                # The lambdas run before the loop moves on: binding `sent` late is what is meant.
                wait_until(lambda: sequenced(zctx, broker) == sent * len(KEYS), what="the burst sequenced")  # noqa: B023
                freeze_for(child.proc, 3.0, frozen_at)
                wait_until(lambda: child.caught_up(sent), what="the subscriber to catch up")  # noqa: B023
        assert child.resyncs == []
        for key in KEYS:
            assert child.delivered(key) == list(range(1, sent + 1))
        assert child.stop()["socket_recreations"] == 0
    finally:
        child.kill()
        broker.kill()


def test_a_broker_frozen_for_5s_is_followed_on_the_same_connection_without_loss(tmp_path: Path, zctx: zmq.Context[Any]) -> None:
    broker = BrokerProcess(tmp_path, "--history", str(HISTORY), "--bus-heartbeat", "1.0").start()
    child = SubscriberProcess(broker, KEYS)
    assert broker.proc is not None
    try:
        with Publisher(broker.endpoints["ingress"], context=zctx) as pub:
            publish_burst(pub, 5, 0)
            wait_until(lambda: child.caught_up(5), what="the first events")
            broker.proc.send_signal(signal.SIGSTOP)
            frozen_at = time.monotonic()
            publish_burst(pub, BURST, 5)  # queued by the PUSH socket and the kernel meanwhile
            wait_until(lambda: {"broker_up": False} in child.lines, what="the subscriber to notice the silence")
            freeze_for(broker.proc, 5.0, frozen_at)
            wait_until(lambda: child.caught_up(5 + BURST), what="the subscriber to catch up")
        assert child.resyncs == []
        for key in KEYS:
            assert child.delivered(key) == list(range(1, 5 + BURST + 1))
        assert child.lines.count({"broker_up": True}) == 2  # at start, and after the freeze
        assert child.stop()["socket_recreations"] == 0
    finally:
        child.kill()
        broker.kill()


def test_a_broker_frozen_past_the_reconnect_is_caught_up_from_its_history(tmp_path: Path, zctx: zmq.Context[Any]) -> None:
    broker = BrokerProcess(tmp_path, "--history", str(HISTORY), "--bus-heartbeat", "1.0").start()
    child = SubscriberProcess(broker, KEYS, "--reconnect-after", "3.5")
    assert broker.proc is not None
    try:
        with Publisher(broker.endpoints["ingress"], context=zctx) as pub:
            publish_burst(pub, 5, 0)
            wait_until(lambda: child.caught_up(5), what="the first events")
            broker.proc.send_signal(signal.SIGSTOP)
            frozen_at = time.monotonic()
            publish_burst(pub, HISTORY // 2, 5)  # what the new socket may miss, the history still has
            freeze_for(broker.proc, 5.0, frozen_at)
            wait_until(lambda: child.caught_up(5 + HISTORY // 2), what="the subscriber to catch up")
        assert child.resyncs == []
        for key in KEYS:
            assert child.delivered(key) == list(range(1, 5 + HISTORY // 2 + 1))
        assert child.stop()["socket_recreations"] == 1
    finally:
        child.kill()
        broker.kill()
