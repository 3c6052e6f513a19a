"""Where a resuming stream starts: its Last-Event-ID against the key's live head.

`plan_resume` is pure. `head` is where this streamer's subscription of the key
stands, which may lag the broker's by the events on their way (a snapshot's
`last_event_id` is the broker's head, read on its ROUTER). An id `<epoch>-<seq>`
of the head's epoch is honoured by replaying the events after it, and only the
broker can say that a seq is beyond its history; anything else gets a `resync`
and the live stream, never an HTTP error:

    no id / empty           → live from the head
    unparsable              → resync "history_gone" (no history we know matches it)
    another epoch           → resync "epoch_changed" (the broker restarted since)
    equal to the head       → live (nothing missed)
    older than the head     → replay after it; a "gone" answer becomes a resync
    ahead of the head       → replay after it too: the broker answers what came after
                              (CatchUp then waits for the live stream to pass it), or
                              "gone" when the id is beyond its own head (a resync)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bus.replay import Position, Replay
from bus.topics import MAX_ID

EPOCH_CHANGED = "epoch_changed"
HISTORY_GONE = "history_gone"
_EVENT_ID = re.compile(r"(0|[1-9][0-9]{0,18})-(0|[1-9][0-9]{0,18})", re.ASCII)


@dataclass(frozen=True, slots=True)
class ResumePlan:
    """What a new stream does before going live: replay after a position, resync, or neither."""

    replay_after: Position | None = None
    resync: str | None = None


LIVE = ResumePlan()


def parse_event_id(text: str) -> Position | None:
    """`<epoch>-<seq>` as a Position; None for anything else."""
    match = _EVENT_ID.fullmatch(text)
    if match is None:
        return None
    epoch, seq = int(match[1]), int(match[2])
    if epoch > MAX_ID or seq > MAX_ID:
        return None
    return Position(epoch, seq)


def plan_resume(last_event_id: str | None, head: Position) -> ResumePlan:
    """The plan for a stream whose client last saw `last_event_id`, the key being at `head`."""
    if not last_event_id:
        return LIVE
    seen = parse_event_id(last_event_id)
    if seen is None:
        return ResumePlan(resync=HISTORY_GONE)
    if seen.epoch != head.epoch:
        return ResumePlan(resync=EPOCH_CHANGED)
    if seen.seq == head.seq:
        return LIVE
    return ResumePlan(replay_after=seen)


def refusal_reason(reply: Replay | None, asked: Position) -> str:
    """Why a replay could not be used: the broker's epoch moved on, or the history is gone."""
    if reply is not None and reply.epoch != asked.epoch:
        return EPOCH_CHANGED
    return HISTORY_GONE
