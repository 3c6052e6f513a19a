"""Positions, sequenced events and the client of the broker's replay ROUTER.

A request and its answer are drawn in bus/protocol.py (CONTRACT section 2).
Requests go one at a time over one DEALER: answers carry no request id, so a
timed-out request closes the socket rather than risk matching its late answer
to the next request.

A request is a read, so asking again is safe: one unanswered for a quarter of
the timeout is sent again on a new socket (the old one, closed, drops its late
answer), up to the timeout. An answer the broker dropped (it counts
`replay_answers_dropped`) or one whose wake-up was missed then costs a quarter
of the timeout, not the whole of it and a 503 with the broker up.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import zmq
import zmq.asyncio

from bus import codec, peersock, protocol, security
from bus.errors import BusUnavailable
from bus.quiet_log import QuietLog
from bus.topics import StreamKey, key_topic

log = logging.getLogger(__name__)

ATTEMPTS = 4  # sends of one request within its timeout, each on a new socket


class Position(NamedTuple):
    """Where a key's stream stands: `<epoch>-<seq>`, the SSE event id."""

    epoch: int
    seq: int

    def __str__(self) -> str:
        return f"{self.epoch}-{self.seq}"


@dataclass(frozen=True, slots=True)
class BusEvent:
    """One sequenced event of a key, its payload decoded."""

    key: StreamKey
    epoch: int
    seq: int
    published_ns: int
    sequenced_ns: int
    payload: dict[str, Any]

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.seq)


@dataclass(frozen=True, slots=True)
class Replay:
    """The broker's answer to a replay request."""

    ok: bool
    epoch: int
    head: int
    events: list[BusEvent] = field(default_factory=list)


class ResendCounter(Protocol):
    """Where a ReplayClient counts the requests it sent again (bus.subscriber.SubscriberStats)."""

    replay_resent: int


@dataclass(slots=True)
class ReplayStats:
    """The counter of a ReplayClient on its own."""

    replay_resent: int = 0


class ReplayClient:
    """Asks the broker for a key's history or head, one request at a time."""

    def __init__(self, endpoint: str, context: zmq.asyncio.Context, timeout: float,
                 stats: ResendCounter | None = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.stats: ResendCounter = stats if stats is not None else ReplayStats()
        self._ctx = context
        self._dealer: zmq.asyncio.Socket | None = None
        self._lock = asyncio.Lock()
        self._resent_log = QuietLog(log, logging.INFO, 10.0)

    async def head(self, key: StreamKey) -> Position:
        """The broker's current head of `key`."""
        reply = await self.replay(key, 0, protocol.HEAD_ONLY)
        return Position(reply.epoch, reply.head)

    async def replay(self, key: StreamKey, epoch: int, after_seq: int) -> Replay:
        """The events of `key` after `after_seq`; BusUnavailable when the broker does not answer in time."""
        request = protocol.replay_request(key_topic(key), epoch, after_seq)
        async with self._lock:
            for attempt in range(ATTEMPTS):
                if attempt:
                    self.stats.replay_resent += 1
                    self._resent_log("no replay answer from %s in %.1f s: asked again on a new socket",
                                     self.endpoint, self.timeout / ATTEMPTS)
                dealer = self._dealer or self._open()
                try:
                    frames = await asyncio.wait_for(_ask(dealer, request), self.timeout / ATTEMPTS)
                    break
                except TimeoutError:
                    self.close()  # a late answer must not be taken for the next request's
                except BaseException:
                    # Cancelled (its stream closed, the server stopping) with the answer still coming: the
                    # next request, maybe another key's, would read it as its own. A new socket drops it.
                    self.close()
                    raise
            else:
                raise BusUnavailable(f"no replay answer from {self.endpoint} in {self.timeout:g} s")
        return _parse_replay(key, frames)

    def close(self) -> None:
        """Close the socket; the next request opens a new one."""
        if self._dealer is not None:
            self._dealer.close(linger=0)
            self._dealer = None

    def _open(self) -> zmq.asyncio.Socket:
        dealer = peersock.make(self._ctx, zmq.DEALER, linger=0)
        security.connect(dealer, self.endpoint)
        self._dealer = dealer
        return dealer


async def _ask(dealer: zmq.asyncio.Socket, request: list[bytes]) -> list[bytes]:
    await dealer.send_multipart(request)
    frames: list[bytes] = await dealer.recv_multipart()
    return frames


def _parse_replay(key: StreamKey, frames: list[bytes]) -> Replay:
    if len(frames) < 2 or frames[0] not in (protocol.OK, protocol.GONE) or len(frames) % 2:
        raise BusUnavailable(f"unexpected replay answer {frames[:1]!r}")
    epoch, head = protocol.unpack_int_pair(frames[1])
    if frames[0] == protocol.GONE:
        return Replay(False, epoch, head)
    replayed = []
    for header_frame, payload_frame in zip(frames[2::2], frames[3::2]):
        header = protocol.unpack_header(header_frame)
        payload = codec.unpack_map(payload_frame)
        replayed.append(BusEvent(key, header.epoch, header.seq, header.published_ns, header.sequenced_ns, payload))
    return Replay(True, epoch, head, replayed)
