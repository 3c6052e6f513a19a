"""The producer loop: catch-up at start, on wake-ups and on its sweep; failures retried; relay drained at stop."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq
from sqlalchemy.exc import InterfaceError, OperationalError

from bus.protocol import ACK
from producers.errors import NotRestored
from producers.pull_loop import ProducerLoop, drain_rows
from producers.relay import Relay
from producers.relay_window import WindowLimits
from tests.producers.conftest import World
from tests.producers.test_relay import StandInBroker, commit_events, summary
from tests.waiting import wait_until


@pytest.mark.parametrize(("raised", "retried"), [
    (OperationalError("COMMIT", {}, Exception("server closed the connection")), True),
    (InterfaceError("SELECT 1", {}, Exception("connection already closed")), True),
    (NotRestored("the exchange cannot be restored"), True),
    (KeyError("paper-1"), False),
    (ValueError("not a signal"), False),
])
def test_drain_rows_leaves_a_row_pending_on_what_is_not_its_fault_and_fails_it_otherwise(raised: Exception, retried: bool) -> None:
    handled: list[int] = []
    failed: list[tuple[int, Exception]] = []

    def handle(row: int) -> None:
        if row == 2:
            raise raised
        handled.append(row)

    def run() -> None:
        drain_rows(lambda: [1, 2, 3], handle, lambda row, exc: failed.append((row, exc)), lambda: False, limit=10)

    if retried:
        with pytest.raises(type(raised)):
            run()
        assert (handled, failed) == ([1], [])  # row 2 stays pending, and so does every row after it
    else:
        run()
        assert (handled, failed) == ([1, 3], [(2, raised)])


class CountingWorker:
    """Counts what the loop asks of it; raises when told to."""

    def __init__(self) -> None:
        self.messages: list[list[bytes]] = []
        self.catch_ups = 0
        self.fail_next = 0

    def on_message(self, frames: list[bytes]) -> bool:
        self.messages.append(frames)
        return frames[0] == b"behind"

    def catch_up(self, stopping: Callable[[], bool]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise OperationalError("SELECT 1", {}, Exception("database is locked"))
        self.catch_ups += 1


class Running:
    """A ProducerLoop in a thread, a PUSH socket to wake it, a stand-in broker for its relay."""

    def __init__(self, world: World, ctx: zmq.Context[Any], worker: CountingWorker) -> None:
        self.broker = StandInBroker(ctx)
        self.relay = Relay(world.sessions, "orders", self.broker.endpoint, context=ctx, limits=WindowLimits(retry_s=0.05))
        self.loop = ProducerLoop("tcp://127.0.0.1:*", worker, self.relay, context=ctx, sweep_s=0.05)
        self.push = ctx.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 0)
        self.push.connect(self.loop.endpoint)
        self.thread = threading.Thread(target=self.loop.run)
        self.thread.start()

    def stop(self) -> None:
        self.loop.stop()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()
        self.push.close()
        self.broker.socket.close()


@pytest.fixture
def worker() -> CountingWorker:
    return CountingWorker()


@pytest.fixture
def running(world: World, zctx: zmq.Context[Any], worker: CountingWorker) -> Iterator[Running]:
    started = Running(world, zctx, worker)
    yield started
    if started.thread.is_alive():
        started.stop()


def test_the_worker_catches_up_at_start_and_on_its_sweep_without_any_message(running: Running, worker: CountingWorker) -> None:
    wait_until(lambda: worker.catch_ups >= 3, what="three sweeps")
    assert worker.messages == []


def test_a_wake_up_reaches_the_worker_and_catches_up_only_when_it_asks(running: Running, worker: CountingWorker) -> None:
    running.push.send_multipart([b"fast", b""])
    wait_until(lambda: worker.messages, what="the first wake-up")
    before = worker.catch_ups
    running.push.send_multipart([b"behind", b""])
    wait_until(lambda: len(worker.messages) == 2 and worker.catch_ups > before, what="a catch-up after the second")
    assert worker.messages == [[b"fast", b""], [b"behind", b""]]


@pytest.mark.expect_log("producer step failed")
def test_a_failing_step_is_logged_once_and_retried_at_the_next_sweep(
    running: Running, worker: CountingWorker, caplog: pytest.LogCaptureFixture
) -> None:
    wait_until(lambda: worker.catch_ups >= 1, what="the start-up catch-up")
    worker.fail_next = 3
    wait_until(lambda: worker.fail_next == 0 and worker.catch_ups >= 3, what="catch-ups after three failures")
    assert running.loop.failures == 3
    assert caplog.text.count("producer step failed") == 1  # at most one line per WARN_EVERY_S


def test_rows_left_from_before_go_out_at_start_and_stop_waits_for_their_confirmation(
    world: World, zctx: zmq.Context[Any], worker: CountingWorker
) -> None:
    commit_events(world, summary(world.user_ids["alice"], 1))  # committed by a process that died before sending
    running = Running(world, zctx, worker)
    running.loop.stop()
    ((_, event_id, prev_id, _),) = running.broker.receive(None, 1)  # the loop's thread pumps the relay
    assert prev_id == 0
    running.broker.answer(ACK, running.relay.stream, event_id)
    running.stop()
    assert running.relay.idle
