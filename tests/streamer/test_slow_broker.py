"""A broker that is slow to answer, not down: the streamer waits for it as long as for a subscription.

A real broker process frozen with SIGSTOP for 2.5 s (below the 3 s of heartbeat silence that
makes the bus "down") while a snapshot asks for its head: the answer comes after SIGCONT, and the
snapshot is 200, not 503 bus_unavailable. The streamer used to give a broker answer 2 s (the
bus's default) while it gives a subscription 5 s (`bus_timeout`): under load a dashboard's
`/api/batches/latest` answered 503 with every process up (a CI run of tests/deploy/dashboard), and
such a 503 left no trace in the logs (its access line is DEBUG): its reason is now logged at INFO.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import tornado.ioloop
import zmq.asyncio

from bus.errors import BusUnavailable
from bus.quiet_log import QuietLog
from bus.topics import StreamKey
from streamer import handlers
from streamer.handlers import bus_answer
from streamer.services import Services
from tests.bus.conftest import BrokerProcess
from tests.streamer.conftest import World, streamer_config
from web.errors import ApiError

FREEZE_S = 2.5  # past the bus's 2 s default deadline, short of the 3 s after which the broker counts as down


@pytest.fixture
def broker_process(tmp_path: Path) -> Iterator[BrokerProcess]:
    broker = BrokerProcess(tmp_path).start()
    yield broker
    if broker.proc is not None and broker.proc.poll() is None:
        broker.proc.send_signal(signal.SIGCONT)
        broker.kill()


def test_a_broker_frozen_past_2s_still_answers_a_snapshots_head(
    world: World, broker_process: BrokerProcess, io_loop: tornado.ioloop.IOLoop
) -> None:
    config = streamer_config(world, broker_process)  # type: ignore[arg-type]  # only its endpoints are read
    context = zmq.asyncio.Context()
    services = Services(config, context)
    io_loop.run_sync(services.start)
    proc = broker_process.proc
    assert proc is not None
    subscriber = services.hub.subscriber
    key = StreamKey(10, 1)

    async def head_while_frozen() -> tuple[int, int]:
        before = await subscriber.head(key)  # the socket is connected and the broker answers
        proc.send_signal(signal.SIGSTOP)
        asyncio.get_running_loop().call_later(FREEZE_S, proc.send_signal, signal.SIGCONT)
        try:
            after = await subscriber.head(key)
        finally:
            proc.send_signal(signal.SIGCONT)
        return before.epoch, after.epoch

    try:
        epoch_before, epoch_after = io_loop.run_sync(head_while_frozen, timeout=30)
        stats = services.snapshot(per_key=False)
    finally:
        io_loop.run_sync(services.close)
        context.destroy(linger=0)
    assert epoch_after == epoch_before  # the same broker answered, after its freeze
    # Asked again on a new socket a quarter of bus_timeout (1.25 s) into the 2.5 s freeze, counted
    assert stats["replay_resent"] == stats["bus"]["replay_resent"] >= 1


def test_a_bus_error_answered_503_logs_its_reason_at_info(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    # A QuietLog of its own: the process's may have logged another test's 503 less than 10 s ago.
    monkeypatch.setattr(handlers, "_bus_refusals", QuietLog(logging.getLogger("streamer.handlers"), logging.INFO, interval_s=10.0))
    with caplog.at_level(logging.INFO, logger="streamer.handlers"), pytest.raises(ApiError) as raised, bus_answer():
        raise BusUnavailable("no replay answer from tcp://127.0.0.1:1")
    assert (raised.value.status_code, raised.value.code) == (503, "bus_unavailable")
    lines = [r for r in caplog.records if r.name == "streamer.handlers"]
    assert [r.levelno for r in lines] == [logging.INFO]
    assert "no replay answer from tcp://127.0.0.1:1" in lines[0].getMessage()
