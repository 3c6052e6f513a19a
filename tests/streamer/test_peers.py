"""The stream-count exchange over a real PUSH socket: bursts coalesced, repeats chunked, a leaving message at stop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from bus.events import MAX_COUNTS, StreamCountsMessage
from streamer.admission import Admission
from streamer.peers import PeerCounts
from tests.store.conftest import ControlInbox
from tests.waiting import async_wait_until


@pytest.fixture
def inbox() -> Iterator[ControlInbox]:
    context: zmq.Context[Any] = zmq.Context()
    yield ControlInbox(context)
    context.destroy(linger=0)


def counts(inbox: ControlInbox) -> StreamCountsMessage:
    message = inbox.receive()
    assert isinstance(message, StreamCountsMessage)
    return message


def test_a_burst_of_changes_is_one_message_and_every_count_is_repeated_in_bounded_chunks(inbox: ControlInbox) -> None:
    admission = Admission(limit=5, me="b")
    for user_id in range(1, 2 * MAX_COUNTS + 2):
        admission.streams_per_user[user_id] = 1
    shed: list[tuple[int, int]] = []

    async def scenario() -> None:
        peers = PeerCounts(admission, inbox.endpoint, lambda user, n: shed.append((user, n)) or n)
        peers.start()  # the first repeat: every user, in chunks
        repeat = [counts(inbox) for _ in range(3)]
        assert [len(m.counts) for m in repeat] == [MAX_COUNTS, MAX_COUNTS, 1]
        assert {pair for m in repeat for pair in m.counts} == {(u, 1) for u in range(1, 2 * MAX_COUNTS + 2)}
        assert admission.reserve(7, 0.0) and admission.reserve(7, 0.0) and admission.reserve(8, 0.0)
        await async_wait_until(lambda: inbox.socket.poll(0), what="the flush, FLUSH_DELAY_S after the first change")
        burst = counts(inbox)
        assert sorted(burst.counts) == [(7, 3), (8, 2)] and not burst.leaving
        peers.on_message(StreamCountsMessage("a", ((7, 4),)))  # "a" ranks first: 3 + 4 > 5
        assert shed == [(7, 2)]
        peers.on_message(StreamCountsMessage("b", ((9, 5),)))  # its own, come back: skipped
        peers.on_message(StreamCountsMessage("a", (), leaving=True))
        assert admission.peers == 0
        peers.stop()
        assert counts(inbox) == StreamCountsMessage("b", (), leaving=True)

    asyncio.run(scenario())
