"""Is the broker still talking? The subscriber's watchdog, with no sockets and no clock of its own.

The broker heartbeats on the control topic every second. Silence is counted
only over time this process was awake to listen: a watchdog tick that comes
late means the process itself stalled (SIGSTOP, a long pause, a starved host),
and whatever the broker sent meanwhile may still sit unread in the kernel or in
libzmq's I/O thread, which wakes up at the same moment. The stall is not the
broker's silence, so it is not counted (Cassandra's failure detector skips a
local pause the same way).

    LIVE ──awake silence ≥ down_after──▶ SILENT    verdict DOWN (once): report the broker down;
      ▲                                   │        keep the socket: a frozen broker resumes on the
      └──────────── heard ◀───────────────┘        same connection with nothing lost
                                          │ awake silence ≥ reconnect_after
                                          ▼
                                       verdict RECONNECT (each time): recreate the socket, for a
                                       half-open connection to a peer that vanished; the silence
                                       counts again from zero

A reconnect throws away nothing: after that much awake silence there is nothing
queued on the old socket (each tick drains it first).
"""

from __future__ import annotations

import enum


class Verdict(enum.Enum):
    """What the watchdog does after a tick."""

    NONE = "none"
    DOWN = "down"
    RECONNECT = "reconnect"


class Liveness:
    """Awake silence since the broker was last heard; `tick()` every `tick_s` seconds."""

    def __init__(self, down_after: float, reconnect_after: float, tick_s: float, now: float) -> None:
        if not 0 < tick_s <= down_after <= reconnect_after:
            raise ValueError("expected 0 < tick_s <= down_after <= reconnect_after")
        self.down_after = down_after
        self.reconnect_after = reconnect_after
        self.tick_s = tick_s
        self.silent = False
        self.stalls = 0  # ticks that came more than a tick late: the process was not running
        self._quiet_since = now
        self._last_tick = now

    def tick(self, now: float, last_heard: float) -> Verdict:
        """Judge the silence so far: call after draining the socket, with when it last gave anything."""
        if last_heard > self._quiet_since:
            self._quiet_since = last_heard
            self.silent = False
        late = now - self._last_tick - self.tick_s
        self._last_tick = now
        if late > 0:
            # Time the timer was late is time this process did not run: not the broker's silence.
            self._quiet_since = min(now, self._quiet_since + late)
            if late > self.tick_s:
                self.stalls += 1
        silence = now - self._quiet_since
        if silence >= self.reconnect_after:
            self._quiet_since = now
            self.silent = True
            return Verdict.RECONNECT
        if silence >= self.down_after and not self.silent:
            self.silent = True
            return Verdict.DOWN
        return Verdict.NONE
