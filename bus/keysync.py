"""One key's sync state in the subscriber, with no sockets and no loop (shaped like sequencer.py).

A `KeySync` is fed what arrives for its key (head markers, live events, replay
answers, "the SUB socket was recreated") and says what to do: deliver the event,
start a replay, tell a resync first. It keeps the key's position (epoch, seq of
the last event delivered) and the live events that wait while a replay runs.

                  marker
  SUBSCRIBING ──────────────▶ LIVE ──── gap: seq jump, marker ahead ────▶ REPLAYING
                             │  ▲ ◀──── answer, nothing left pending ──── │  ▲
            socket recreated │  │ marker                 socket recreated │  │ marker
                             ▼  │ (ahead: REPLAYING)                      ▼  │
                       RESUBSCRIBING ◀── answer, nothing left pending ── RESUBSCRIBING_REPLAYING

While SUBSCRIBING or RESUBSCRIBING*, live events are dropped: the coming
marker's head covers them (the broker sends it after the subscription took
effect). While REPLAYING*, live events wait in `pending` (at most `max_pending`;
beyond that the next replay fetches them again). Resyncs (the position jumps,
history is lost) happen in any state but SUBSCRIBING and do not change it:
`epoch_changed` when a marker, an event or a replay answer brings another
epoch, `history_gone` when the broker no longer has the range asked for.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from bus.replay import BusEvent, Position, Replay

MAX_PENDING = 10_000
EPOCH_CHANGED = "epoch_changed"
HISTORY_GONE = "history_gone"


class Sync(enum.Enum):
    """Where one key stands."""

    SUBSCRIBING = "subscribing"  # no head yet: waiting for the first marker
    LIVE = "live"  # in order: the next live event must be seq + 1
    REPLAYING = "replaying"  # a replay is in flight; live events wait in pending
    RESUBSCRIBING = "resubscribing"  # the SUB socket was recreated: waiting for the marker
    RESUBSCRIBING_REPLAYING = "resubscribing_replaying"  # both of the above

    @property
    def replaying(self) -> bool:
        return self in (Sync.REPLAYING, Sync.RESUBSCRIBING_REPLAYING)

    @property
    def awaiting_marker(self) -> bool:
        return self in (Sync.SUBSCRIBING, Sync.RESUBSCRIBING, Sync.RESUBSCRIBING_REPLAYING)


class Action(enum.Enum):
    """What the owner does with a marker or a live event."""

    NONE = "none"
    DELIVER = "deliver"  # the event is next: deliver it
    REPLAY = "replay"  # a gap: start a replay (`replay_from()`, then `on_replay()`)


@dataclass(frozen=True, slots=True)
class Resync:
    """The key's history is lost: it goes on after `position`. Told before anything after it."""

    reason: str
    position: Position


class Step(NamedTuple):
    """The answer to a marker or an event: a resync to tell first (or None), then the action."""

    action: Action
    resync: Resync | None = None


DELIVER = Step(Action.DELIVER)  # the hot path: shared, nothing allocated per event
NOTHING = Step(Action.NONE)
REPLAY = Step(Action.REPLAY)


@dataclass(frozen=True, slots=True)
class ReplayStep:
    """The answer to a replay answer, told in this order: `replayed`, `resync`, `released`."""

    stale: bool = False  # the key moved on meanwhile: nothing happened, ask again
    replayed: list[BusEvent] = field(default_factory=list)  # contiguous run from the answer
    resync: Resync | None = None
    released: list[BusEvent] = field(default_factory=list)  # pending events now in order
    done: bool = False  # nothing left pending: the replay is over


class SyncCounters(Protocol):
    """The counters a KeySync adds to (SubscriberStats has them)."""

    duplicates_dropped: int
    gaps_detected: int
    gaps_recovered: int
    resyncs: int


class KeySync:
    """One key: its position, its state and the events waiting for a replay to end."""

    def __init__(self, counters: SyncCounters, max_pending: int = MAX_PENDING) -> None:
        self.counters = counters
        self.max_pending = max_pending
        self.state = Sync.SUBSCRIBING
        self.epoch: int | None = None
        self.seq = 0
        self.pending: list[BusEvent] = []

    @property
    def position(self) -> Position | None:
        """The last position delivered; None before the first marker."""
        return None if self.epoch is None else Position(self.epoch, self.seq)

    def on_marker(self, epoch: int, head: int) -> Step:
        """A `_head` marker: the broker's head of the key, sent after a subscription took effect."""
        state = self.state
        if state is Sync.SUBSCRIBING:
            self.epoch, self.seq, self.state = epoch, head, Sync.LIVE
            return NOTHING
        self.state = Sync.REPLAYING if state.replaying else Sync.LIVE
        if epoch != self.epoch:
            return Step(Action.NONE, self._resync(EPOCH_CHANGED, Position(epoch, head)))
        if head > self.seq and not state.replaying:
            return self._start_replay()
        return NOTHING

    def on_event(self, event: BusEvent) -> Step:
        """A live event of the key."""
        if self.state is Sync.LIVE and event.seq == self.seq + 1 and event.epoch == self.epoch:
            self.seq = event.seq  # the hot path, decided as below without the two state properties
            return DELIVER
        if self.state.awaiting_marker:
            return NOTHING  # its seq is <= the head the marker will bring
        resync = None
        if event.epoch != self.epoch:
            resync = self._resync(EPOCH_CHANGED, Position(event.epoch, event.seq - 1))
        if self.state.replaying:
            if len(self.pending) < self.max_pending:
                self.pending.append(event)
            return Step(Action.NONE, resync) if resync else NOTHING
        if event.seq <= self.seq:
            self.counters.duplicates_dropped += 1
            action = Action.NONE
        elif event.seq == self.seq + 1:
            self.seq = event.seq
            action = Action.DELIVER
        else:
            self.pending.append(event)
            action = self._start_replay().action
        return Step(action, resync) if resync else _STEPS[action]

    def on_socket_recreated(self) -> None:
        """Every subscription was sent again: wait for the markers that answer them."""
        if self.state is Sync.LIVE:
            self.state = Sync.RESUBSCRIBING
        elif self.state is Sync.REPLAYING:
            self.state = Sync.RESUBSCRIBING_REPLAYING

    def replay_from(self) -> Position:
        """What a replay asks for: the events after the current position."""
        assert self.epoch is not None, "replays start only after the first marker"
        return Position(self.epoch, self.seq)

    def on_replay(self, asked: Position, reply: Replay) -> ReplayStep:
        """The broker's answer to the replay asked `asked`."""
        if not self.state.replaying or self.position != asked:
            return ReplayStep(stale=True)
        replayed: list[BusEvent] = []
        resync = None
        if reply.ok:
            self.counters.gaps_recovered += 1
            replayed = self._take_in_order(reply.events)
        else:
            reason = HISTORY_GONE if reply.epoch == asked.epoch else EPOCH_CHANGED
            resync = self._resync(reason, Position(reply.epoch, reply.head))
        waiting, self.pending = self.pending, []
        released = self._take_in_order(waiting)
        done = not self.pending
        if done:
            self.state = Sync.RESUBSCRIBING if self.state is Sync.RESUBSCRIBING_REPLAYING else Sync.LIVE
        return ReplayStep(False, replayed, resync, released, done)

    def _start_replay(self) -> Step:
        self.counters.gaps_detected += 1
        self.state = Sync.REPLAYING
        return REPLAY

    def _resync(self, reason: str, position: Position) -> Resync:
        self.counters.resyncs += 1
        self.epoch, self.seq = position
        self.pending = [e for e in self.pending if e.epoch == position.epoch and e.seq > position.seq]
        return Resync(reason, position)

    def _take_in_order(self, candidates: Sequence[BusEvent]) -> list[BusEvent]:
        """The contiguous run of `candidates` after the position; what follows a hole goes back to pending."""
        run: list[BusEvent] = []
        for i, event in enumerate(candidates):
            if event.epoch != self.epoch:
                continue
            if event.seq <= self.seq:
                self.counters.duplicates_dropped += 1
                continue
            if event.seq != self.seq + 1:
                self.pending = list(candidates[i:]) + self.pending
                break
            self.seq = event.seq
            run.append(event)
        return run


_STEPS = {Action.NONE: NOTHING, Action.DELIVER: DELIVER, Action.REPLAY: REPLAY}
