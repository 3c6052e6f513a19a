"""The SUB reader's coalescing state core (bus/coalesce.py): every step, as a table."""

from __future__ import annotations

import pytest

from bus.coalesce import STEPS, Fd, Found, Mode, Step, Then, after_read

W, R = Mode.WATCHING, Mode.RESTING

TABLE = [
    # mode, found, coalescing -> the step
    (W, Found.NOTHING, True, Step(W, Fd.KEEP, Then.EDGE)),
    (W, Found.SOME, True, Step(R, Fd.UNWATCH, Then.LATER)),  # a read with messages: rest
    (W, Found.FULL, True, Step(R, Fd.UNWATCH, Then.SOON)),  # more waits: read again at once
    (R, Found.NOTHING, True, Step(W, Fd.WATCH, Then.EDGE)),  # the rest found nothing: back on the FD
    (R, Found.SOME, True, Step(R, Fd.KEEP, Then.LATER)),
    (R, Found.FULL, True, Step(R, Fd.KEEP, Then.SOON)),
    (W, Found.NOTHING, False, Step(W, Fd.KEEP, Then.EDGE)),
    (W, Found.SOME, False, Step(W, Fd.KEEP, Then.EDGE)),  # off: every edge reads, as before coalescing
    (W, Found.FULL, False, Step(W, Fd.KEEP, Then.SOON)),
    # Resting with coalescing off: only after the setting changed under a resting reader; it watches again.
    (R, Found.NOTHING, False, Step(W, Fd.WATCH, Then.EDGE)),
    (R, Found.SOME, False, Step(W, Fd.WATCH, Then.EDGE)),
    (R, Found.FULL, False, Step(W, Fd.WATCH, Then.SOON)),
]


@pytest.mark.parametrize(("mode", "found", "coalescing", "step"), TABLE)
def test_each_read_outcome_gives_its_step(mode: Mode, found: Found, coalescing: bool, step: Step) -> None:
    assert after_read(mode, found, coalescing) == step
    assert STEPS[mode, found, coalescing] == step


def test_the_table_covers_every_case() -> None:
    assert {(mode, found, coalescing) for mode, found, coalescing, _ in TABLE} == set(STEPS)


def test_a_resting_reader_always_has_a_read_due() -> None:
    """Not watching the FD and no read scheduled would be a stalled stream."""
    for step in STEPS.values():
        assert step.mode is Mode.WATCHING or step.then in (Then.LATER, Then.SOON)
