"""bus/resume_grace.py: when a broker restarted from its journal takes events again (a table of cases)."""

from __future__ import annotations

import pytest

from bus.resume_grace import ResumeGrace

GRACE, QUIET = 1.0, 0.25


def grace(restored_keys: int = 3, grace_s: float = GRACE) -> ResumeGrace:
    return ResumeGrace(10.0, restored_keys=restored_keys, grace_s=grace_s, quiet_s=QUIET)


@pytest.mark.parametrize(("restored_keys", "grace_s"), [(0, GRACE), (3, 0.0), (0, 0.0)])
def test_nothing_restored_or_no_grace_opens_at_once(restored_keys: int, grace_s: float) -> None:
    started = grace(restored_keys, grace_s)
    assert not started.waits and started.is_open(10.0) and started.wait_s(10.0) == 0.0


# (subscriptions heard: (time, control?)..., asked at, open?, wait_s)
CASES = [
    ((), 10.0, False, 1.0),  # restored keys, nobody back yet: the whole grace
    ((), 10.99, False, pytest.approx(0.01)),
    ((), 11.0, True, 0.0),  # the grace ran out: producers are not kept waiting for a streamer that never comes
    (((10.1, False),), 10.5, False, pytest.approx(0.5)),  # a key subscription alone is no streamer back
    (((10.1, True),), 10.3, False, pytest.approx(0.05)),  # a streamer's control subscription: quiet 0.25 s after it
    (((10.1, True),), 10.35, True, 0.0),
    (((10.1, True), (10.2, False)), 10.4, False, pytest.approx(0.05)),  # its keys' subscriptions put the quiet off
    (((10.1, True), (10.2, False)), 10.45, True, 0.0),
    (((10.1, True), (10.3, True)), 10.5, False, pytest.approx(0.05)),  # a second streamer, 0.2 s later
    (((10.1, True), (10.9, False)), 10.95, False, pytest.approx(0.05)),  # subscriptions that go on: the grace bounds it
    (((10.1, True), (10.9, False)), 11.0, True, 0.0),
]


@pytest.mark.parametrize(("heard", "now", "is_open", "wait_s"), CASES)
def test_it_opens_once_a_streamer_is_back_and_quiet_or_the_grace_ran_out(
    heard: tuple[tuple[float, bool], ...], now: float, is_open: bool, wait_s: float
) -> None:
    waiting = grace()
    assert waiting.waits
    for at, control in heard:
        waiting.heard(at, control=control)
    assert (waiting.is_open(now), waiting.wait_s(now)) == (is_open, wait_s)


def test_once_open_it_stays_open_whatever_comes_after() -> None:
    waiting = grace()
    waiting.heard(10.1, control=True)
    assert waiting.is_open(10.4)
    waiting.heard(10.5, control=True)  # a streamer restarted later: events flow, as always
    assert waiting.is_open(10.5) and waiting.wait_s(10.5) == 0.0
