"""The broker's replay ROUTER: `[replay, topic, [epoch, after_seq]]` and `[stats]` answered.

    ROUTER ─▶ [identity, request...] ─▶ answer ─▶ [identity, ok | gone | stats | error, ...] ─▶ ROUTER

The frames of both are drawn in bus/protocol.py (CONTRACT section 2). An answer
is sent without blocking: one for a peer whose queue is full, or that left, is
dropped and counted, so a peer that does not read cannot grow the broker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

from bus import codec, protocol
from bus.errors import DecodeError
from bus.sequencer import Sequencer
from bus.topics import parse_key_topic

# Replay answers queued for one peer at most (ROUTER SNDHWM): a streamer asks one at a time;
# a peer that does not read loses the answers beyond these (counted), it cannot grow the broker.
REPLAY_QUEUE = 4


@dataclass(slots=True)
class BrokerStats:
    """Counters answered to a `stats` request."""

    epoch: int
    received: int = 0
    published: int = 0
    control: int = 0
    dropped_malformed: int = 0
    refused_oversize: int = 0
    replay_requests: int = 0
    replay_gone: int = 0
    replay_answers_dropped: int = 0
    bad_requests: int = 0
    subscriptions: int = 0
    keys: int = 0
    keys_with_history: int = 0
    history_bytes: int = 0
    histories_evicted: int = 0
    journal_commits: int = 0


class Requests:
    """Answers the requests of the broker's ROUTER from its sequencer; `counters()` is what `stats` answers."""

    def __init__(self, router: zmq.Socket[Any], sequencer: Sequencer, stats: BrokerStats,
                 counters: Callable[[], dict[str, int]]) -> None:
        self.router, self.sequencer, self.stats, self.counters = router, sequencer, stats, counters

    def handle(self, frames: list[bytes]) -> None:
        """Answer one request, `[identity, request...]`; a malformed one gets an error answer, counted."""
        identity, request = frames[0], frames[1:]
        try:
            reply = self._answer(request)
        except DecodeError as exc:
            self.stats.bad_requests += 1
            reply = [protocol.ERROR, str(exc).encode()]
        try:
            self.router.send_multipart([identity, *reply], zmq.NOBLOCK)
        except zmq.Again:
            self.stats.replay_answers_dropped += 1  # REPLAY_QUEUE answers wait unread already
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self.stats.replay_answers_dropped += 1  # the peer left

    def _answer(self, request: list[bytes]) -> list[bytes]:
        if request[:1] == [protocol.STATS]:
            return [protocol.STATS, codec.pack(self.counters())]
        if len(request) != 3 or request[0] != protocol.REPLAY:
            raise DecodeError("expected [replay, topic, [epoch, after_seq]] or [stats]")
        topic = request[1]
        parse_key_topic(topic)
        epoch, after_seq = protocol.unpack_int_pair(request[2])
        self.stats.replay_requests += 1
        result = self.sequencer.replay(topic, epoch, after_seq)
        status = protocol.pack_int_pair(result.epoch, result.head)
        if not result.ok:
            self.stats.replay_gone += 1
            return [protocol.GONE, status]
        return [protocol.OK, status, *(frame for pair in result.events for frame in pair)]
