"""The SUB reader's coalescing, wired to real ZeroMQ sockets (bus/subreader.py, bus/coalesce.py).

An XPUB in the test publishes to a SubReader on loopback TCP. Every wait is for a
condition with a deadline; a long rest (an hour) stands for "the timer has not
fired", a short one (20 ms) lets the timer do its work while the test waits for
what must follow.
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import zmq

from bus.coalesce import Mode
from bus.subreader import Batch, SubReader
from bus.topics import StreamKey, key_topic
from tests.waiting import async_wait_until

TOPIC = key_topic(StreamKey(1, 1))
HOUR = 3600.0
SHORT = 0.02


def message(number: int) -> list[bytes]:
    return [TOPIC, b"h", b"%d" % number]


@dataclass
class Wire:
    """An XPUB, the reader on it, and every batch the reader handed over."""

    pub: zmq.Socket[Any]
    reader: SubReader
    batches: list[list[int]] = field(default_factory=list)

    @property
    def numbers(self) -> list[int]:
        return [number for batch in self.batches for number in batch]

    def publish(self, *numbers: int) -> None:
        for number in numbers:
            self.pub.send_multipart(message(number))

    async def delivered(self, count: int, what: str) -> None:
        await async_wait_until(lambda: len(self.numbers) >= count, what=what)

    async def subscribed(self) -> None:
        """Wait for the reader's (new) subscription to reach the XPUB (libzmq applies it before we read it)."""
        while True:
            assert self.pub.poll(10_000), "the subscription did not reach the XPUB within 10 s"
            if self.pub.recv() == b"\x01" + TOPIC:  # not an old socket's unsubscription
                return


@asynccontextmanager
async def wire(coalesce_s: float) -> AsyncIterator[Wire]:
    ctx: zmq.Context[Any] = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.setsockopt(zmq.XPUB_VERBOSE, 1)  # a new socket's subscription shows even while the old one's lasts
    pub.bind("tcp://127.0.0.1:*")
    endpoint = pub.getsockopt_string(zmq.LAST_ENDPOINT)
    batches: list[list[int]] = []

    def on_batch(batch: Batch) -> None:
        batches.append([int(frames[2]) for frames in batch])

    reader = SubReader(ctx, endpoint, 100_000, on_batch, coalesce_s)
    the_wire = Wire(pub, reader, batches)
    reader.open(asyncio.get_running_loop(), [TOPIC])
    await the_wire.subscribed()
    try:
        yield the_wire
    finally:
        reader.close()
        ctx.destroy(linger=0)


async def signalled(reader: SubReader) -> None:
    """Wait until libzmq signals the reader's FD: a message reached its socket."""
    fd = reader.fd
    assert fd is not None
    loop = asyncio.get_running_loop()
    readable, _, _ = await loop.run_in_executor(None, select.select, [fd], [], [], 10.0)
    assert readable, "no message reached the SUB socket within 10 s"


async def loop_turns(count: int = 5) -> None:
    """Let the loop run its ready callbacks and poll its FDs (a watching reader reads in the next turn)."""
    for _ in range(count):
        await asyncio.sleep(0)


def test_a_resting_reader_does_not_read_on_the_fds_edge() -> None:
    async def scenario() -> None:
        async with wire(HOUR) as w:
            w.publish(1)
            await w.delivered(1, "the first event (read on its edge, at once)")
            w.publish(2)
            await signalled(w.reader)
            await loop_turns()
            assert w.numbers == [1]  # without coalescing the edge is read in the next turn: [1, 2]
            assert w.reader.mode is Mode.RESTING

    asyncio.run(scenario())


def test_events_published_during_the_rest_are_all_delivered_in_order() -> None:
    async def scenario() -> None:
        async with wire(SHORT) as w:
            w.publish(1)
            await w.delivered(1, "the first event")
            w.publish(*range(2, 501))  # while it rests; the timer's read takes them
            await w.delivered(500, "the events published during the rest")
            assert w.numbers == list(range(1, 501))

    asyncio.run(scenario())


def test_a_lone_event_after_a_rest_is_delivered_without_another_event() -> None:
    async def scenario() -> None:
        async with wire(SHORT) as w:
            for number in range(1, 41):
                if number % 2:  # the rest ended first: the reader is back on the FD
                    await async_wait_until(lambda: w.reader.mode is Mode.WATCHING, what="the rest to end")
                # else: published at once, while the reader still rests
                w.publish(number)
                await w.delivered(number, f"lone event {number}, nothing published after it")
            assert w.numbers == list(range(1, 41))
            await async_wait_until(lambda: w.reader.mode is Mode.WATCHING, what="the last rest to end")

    asyncio.run(scenario())


def test_close_during_the_rest_cancels_it_and_reopen_reads_the_new_socket_at_once() -> None:
    async def scenario() -> None:
        async with wire(HOUR) as w:
            w.publish(1)
            await w.delivered(1, "the first event")
            assert w.reader.mode is Mode.RESTING
            w.reader.close()
            assert w.reader.mode is Mode.WATCHING
            w.reader.open(asyncio.get_running_loop(), [TOPIC])
            await w.subscribed()
            w.publish(2)  # an hour's rest of the old socket must not hold the new one's first event
            await w.delivered(2, "the new socket's first event")
            w.reader.reopen([TOPIC])  # during the new socket's rest
            await w.subscribed()
            w.publish(3)
            await w.delivered(3, "the reopened socket's first event")
            assert w.numbers == [1, 2, 3]

    asyncio.run(scenario())
