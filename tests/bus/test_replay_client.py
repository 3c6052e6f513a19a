"""The streamer's replay client against a real ROUTER standing in for the broker: one answer, one request."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import zmq
import zmq.asyncio

from bus import codec, protocol
from bus.errors import BusUnavailable
from bus.replay import ATTEMPTS, ReplayClient
from bus.topics import StreamKey, key_topic
from tests.bus.conftest import make_order

A, B = StreamKey(1, 1), StreamKey(2, 2)


@contextlib.asynccontextmanager
async def broker_stand_in(timeout: float) -> AsyncIterator[tuple[zmq.asyncio.Socket, ReplayClient]]:
    """A real ROUTER standing in for the broker's replay socket, and a ReplayClient asking it."""
    ctx = zmq.asyncio.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind("tcp://127.0.0.1:*")
    client = ReplayClient(router.getsockopt(zmq.LAST_ENDPOINT).decode(), ctx, timeout=timeout)
    try:
        yield router, client
    finally:
        client.close()
        router.close()
        ctx.destroy(linger=0)


def answer_for(key: StreamKey, epoch: int = 7) -> list[bytes]:
    """An `ok` answer holding one event of `key`."""
    order = codec.pack(make_order(*key, order_id=f"of-{key.user_id}").to_wire())
    return [protocol.OK, protocol.pack_int_pair(epoch, 1), protocol.pack_header(epoch, 1, 0, 0), order]


def test_a_request_cancelled_while_waiting_does_not_leave_its_answer_for_the_next_key() -> None:
    async def main() -> None:
        async with broker_stand_in(timeout=10.0) as (router, client):
            waiting = asyncio.create_task(client.replay(A, 7, 0))
            identity, *request = await router.recv_multipart()
            assert request[1] == key_topic(A)
            waiting.cancel()  # e.g. the browser went away, or the stream closed, while A's answer was coming
            await asyncio.gather(waiting, return_exceptions=True)
            await router.send_multipart([identity, *answer_for(A)])  # A's answer arrives late

            next_request = asyncio.create_task(client.replay(B, 7, 0))
            identity, *request = await router.recv_multipart()
            assert request[1] == key_topic(B)
            await router.send_multipart([identity, *answer_for(B)])
            reply = await next_request
            assert [event.payload["user_id"] for event in reply.events] == [B.user_id]  # B's, never A's

    asyncio.run(main())


def test_an_answer_the_broker_dropped_is_asked_again_on_a_new_socket_within_the_timeout() -> None:
    async def main() -> None:
        async with broker_stand_in(timeout=4.0) as (router, client):
            waiting = asyncio.create_task(client.replay(A, 7, 0))
            dropped, *request = await router.recv_multipart()  # its answer is lost (the peer's queue was full)
            assert request[1] == key_topic(A)
            # The same request, from a new socket, before the timeout ends the wait (then never)
            identity, *again = await asyncio.wait_for(router.recv_multipart(), 10.0)
            assert again == request and identity != dropped
            await router.send_multipart([identity, *answer_for(A)])
            reply = await waiting
            assert [event.payload["user_id"] for event in reply.events] == [A.user_id]
            assert client.stats.replay_resent == 1

    asyncio.run(main())


def test_a_broker_that_never_answers_is_bus_unavailable_after_its_attempts() -> None:
    async def main() -> None:
        async with broker_stand_in(timeout=0.4) as (router, client):
            with pytest.raises(BusUnavailable, match="no replay answer"):
                await client.replay(A, 7, 0)
            identities = set()
            while await router.poll(0):
                identity, *_ = await router.recv_multipart()
                identities.add(identity)
            assert len(identities) == ATTEMPTS and client.stats.replay_resent == ATTEMPTS - 1  # each on its own socket

    asyncio.run(main())
