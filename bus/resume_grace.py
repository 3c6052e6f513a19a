"""When a broker restarted from its journal starts taking events again: after its streamers are back.

A broker SIGKILLed and restarted comes back with every key's head and last
`--history` events, but the producers' relays send their whole backlog (what
they committed while it was down) within the same ~100 ms in which the
streamers' SUB sockets reconnect. What is sequenced for a key before a streamer
has subscribed again, it only gets by replay from the history; past the history,
the replay is `gone` and its clients resync. So a broker that restored keys
first serves subscriptions (each answered with the key's head), replays and
stats, and drains its ingresses only once the streamers had time to subscribe:

    restored no key (or --resume-grace 0)            open at once
    waiting, no control subscription yet             until --resume-grace has passed
    waiting, a control subscription heard            until QUIET_S with no new subscription,
                                                     or --resume-grace, whichever comes first

A streamer subscribes to the control topic and then to each of its keys; a
second streamer reconnects within its own ~100 ms retry, so QUIET_S without any
subscription after the first control one means they are back. The producers lose
nothing meanwhile: their events wait in their outboxes (or PUSH queues) and are
taken when it opens. A pure state core: bus/broker.py is its wiring.
"""

from __future__ import annotations

QUIET_S = 0.25  # no new subscription for this long after a streamer's control one: they are back


class ResumeGrace:
    """Whether the broker may drain its ingresses yet; told of subscriptions, asked with the time."""

    def __init__(self, now: float, *, restored_keys: int, grace_s: float, quiet_s: float = QUIET_S) -> None:
        self.waits = restored_keys > 0 and grace_s > 0
        self.deadline = now + grace_s
        self.quiet_s = quiet_s
        self._quiet_until: float | None = None  # set by the first control subscription
        self._open = not self.waits

    def heard(self, now: float, *, control: bool) -> None:
        """A subscription arrived (`control`: to the control topic, which every streamer subscribes to first)."""
        if self._open:
            return
        if control or self._quiet_until is not None:
            self._quiet_until = now + self.quiet_s

    def is_open(self, now: float) -> bool:
        """Whether the ingresses may be drained (once open, it stays open)."""
        if not self._open and (now >= self.deadline or (self._quiet_until is not None and now >= self._quiet_until)):
            self._open = True
        return self._open

    def wait_s(self, now: float) -> float:
        """How long until it may open, at most (0 when open)."""
        if self.is_open(now):
            return 0.0
        until = self.deadline if self._quiet_until is None else min(self.deadline, self._quiet_until)
        return max(0.0, until - now)
