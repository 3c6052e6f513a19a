"""One stream's catch-up from its Last-Event-ID to the live stream, with no sockets and no loop.

A stream resuming from an id older than its key's head (DESIGN hard part 2)
is replayed from the broker while live events keep arriving. `CatchUp` is
that stream's state until it is live; the hub feeds it what happens and
writes what it decides (a `Step`), in order. Frames are `(seq, bytes)`,
formatted once per key by the hub.

    REPLAYING ─ live frames ─▶ held (at most `limit`: an overflow drops what is held, keeps the newest)
      │ resync from the bus ─▶ held dropped, reason kept: answered when the replay returns
      │
      ├─ replay refused or failed, or a resync came ─▶ resync, the held frames ─────────────▶ LIVE
      ├─ replay ok, a hole between it and the held frames ─▶ replayed; ask again after its last
      │     (stays REPLAYING)
      ├─ replay ok, its last ≤ the live head ─▶ replayed, held frames after its last ───────▶ LIVE
      └─ replay ok, its last > the live head ─▶ replayed, held frames after its last ─▶ AWAITING_LIVE
    AWAITING_LIVE (floor = the replay's last seq)
      ├─ live frames ─▶ those with seq > floor; once one reaches floor ──────────────────────▶ LIVE
      └─ resync from the bus ─▶ resync ──────────────────────────────────────────────────────▶ LIVE
    LIVE: live frames and resyncs pass through, a late replay answer is ignored (the hub then
      drops the core: the client is one of its channel's live clients).

Dropped, never sent: replayed frames with seq ≤ what the client has, held
frames the replay already covered, live frames ≤ floor. So nothing is sent
twice or out of order, and what an overflow drops is asked for again.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from bus.replay import Position, Replay
from streamer.resume import refusal_reason

Frame = tuple[int, bytes]  # (seq, the formatted SSE frame)


class Phase(enum.Enum):
    """Where a stream stands on its way to the live stream."""

    REPLAYING = "replaying"
    AWAITING_LIVE = "awaiting_live"
    LIVE = "live"


@dataclass(frozen=True, slots=True)
class Step:
    """What to write after one input, in this order; then, with `ask_after`, replay again after it.

    `replayed` frames count against the client's buffer bound unless `counted`
    is False: the first catch-up is bounded by the broker's history instead,
    so a reader resuming far back is not taken for a slow one.
    """

    resync: str | None = None
    replayed: tuple[bytes, ...] = ()
    counted: bool = True
    released: tuple[bytes, ...] = ()
    ask_after: Position | None = None


NOTHING = Step()


class CatchUp:
    """The catch-up of one stream: its phase, the live frames it holds, and where to replay from."""

    __slots__ = ("after", "dropped", "floor", "held", "limit", "phase", "replays", "resync_reason")

    def __init__(self, after: Position, limit: int) -> None:
        self.phase = Phase.REPLAYING
        self.after = after  # the next replay asks for the events after this position
        self.limit = limit
        self.held: list[Frame] = []
        self.floor = 0  # in AWAITING_LIVE: the last seq already sent
        self.resync_reason: str | None = None
        self.replays = 0
        self.dropped = 0  # held frames dropped by overflows (and asked for again)

    def on_live(self, frames: Sequence[Frame]) -> Step:
        """Live frames of the key arrived (in seq order)."""
        if not frames:
            return NOTHING
        if self.phase is Phase.REPLAYING:
            self._hold(frames)
            return NOTHING
        if self.phase is Phase.LIVE:
            return Step(released=tuple(frame for _, frame in frames))
        newer = tuple(frame for seq, frame in frames if seq > self.floor)
        if frames[-1][0] >= self.floor:
            self.phase = Phase.LIVE
        return Step(released=newer) if newer else NOTHING

    def on_resync(self, reason: str) -> Step:
        """The key's history is lost (the broker restarted, or a gap could not be filled)."""
        if self.phase is Phase.REPLAYING:
            self.dropped += len(self.held)
            self.held = []
            self.resync_reason = reason
            return NOTHING
        self.phase = Phase.LIVE
        return Step(resync=reason)

    def on_replay(self, reply: Replay | None, frames: Sequence[Frame], head: int) -> Step:
        """The broker answered the replay after `self.after` (None: it did not).

        `frames` are the reply's events, formatted; `head` is the seq the live stream has reached.
        """
        if self.phase is not Phase.REPLAYING:
            return NOTHING
        if self.resync_reason is not None or reply is None or not reply.ok:
            return self._give_up(self.resync_reason or refusal_reason(reply, self.after))
        replayed = [(seq, frame) for seq, frame in frames if seq > self.after.seq]
        last = replayed[-1][0] if replayed else self.after.seq
        counted = self.replays > 0
        self.replays += 1
        sent = tuple(frame for _, frame in replayed)
        if self.held and self.held[0][0] > last + 1:
            self.after = Position(reply.epoch, last)  # frames between the replay and the held ones were dropped
            return Step(replayed=sent, counted=counted, ask_after=self.after)
        released = tuple(frame for seq, frame in self.held if seq > last)
        self.held = []
        if last > head:
            self.phase, self.floor = Phase.AWAITING_LIVE, last  # the replay is ahead of the live stream
        else:
            self.phase = Phase.LIVE
        return Step(replayed=sent, counted=counted, released=released)

    def _hold(self, frames: Sequence[Frame]) -> None:
        if len(self.held) + len(frames) > self.limit:
            # The replay will see the hole before the newest frames and ask the broker again.
            self.dropped += len(self.held) + max(0, len(frames) - self.limit)
            self.held = []
        self.held.extend(frames[-self.limit:])

    def _give_up(self, reason: str) -> Step:
        released = tuple(frame for _, frame in self.held)
        self.held = []
        self.phase = Phase.LIVE
        return Step(resync=reason, released=released)
