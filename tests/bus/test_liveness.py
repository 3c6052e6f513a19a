"""The subscriber's watchdog decisions, with a scripted clock: a stall of our own is not the broker's silence."""

from __future__ import annotations

import pytest

from bus.liveness import Liveness, Verdict

N, DOWN, RECONNECT = Verdict.NONE, Verdict.DOWN, Verdict.RECONNECT

# Ticks every 1.0 s (down after 3, reconnect after 10); steps are ("heard", t) or ("tick", t) -> verdict.
TABLE: list[tuple[str, list[tuple[str, float]], list[Verdict | None]]] = [
    ("heartbeats keep it live", [("heard", 0.9), ("tick", 1), ("heard", 1.9), ("tick", 2), ("tick", 3), ("tick", 4)], [None, N, None, N, N, N]),
    ("3 s of awake silence: down, once", [("tick", 1), ("tick", 2), ("tick", 3), ("tick", 4)], [N, N, DOWN, N]),
    ("heard again after down: live, and a new silence is judged afresh",
     [("tick", 1), ("tick", 2), ("tick", 3), ("heard", 3.5), ("tick", 4), ("tick", 5), ("tick", 6), ("tick", 7)], [N, N, DOWN, None, N, N, N, DOWN]),
    ("10 s of awake silence: reconnect, and again 10 s later",
     [*(("tick", float(t)) for t in range(1, 11)), *(("tick", float(t)) for t in range(11, 21))],
     [N, N, DOWN, N, N, N, N, N, N, RECONNECT, N, N, N, N, N, N, N, N, N, RECONNECT]),
    ("a 3 s stall of our own right after a heartbeat is not silence", [("heard", 0.5), ("tick", 1), ("tick", 5), ("tick", 6)], [None, N, N, N]),
    ("a 20 s stall of our own neither downs nor reconnects", [("heard", 0.5), ("tick", 1), ("tick", 21), ("tick", 22)], [None, N, N, N]),
    ("the stalled tick counts as one tick awake", [("tick", 1), ("tick", 2), ("tick", 10), ("tick", 11)], [N, N, DOWN, N]),
    ("a starved loop, every tick 2 s late, still counts one tick each", [("tick", 3), ("tick", 6), ("tick", 9), ("tick", 12)], [N, N, DOWN, N]),
]


@pytest.mark.parametrize("steps, expected", [pytest.param(s, e, id=name) for name, s, e in TABLE])
def test_verdicts_count_only_awake_silence(steps: list[tuple[str, float]], expected: list[Verdict | None]) -> None:
    liveness = Liveness(down_after=3.0, reconnect_after=10.0, tick_s=1.0, now=0.0)
    got: list[Verdict | None] = []
    last_heard = 0.0
    for action, now in steps:
        if action == "heard":
            last_heard = now
            got.append(None)
        else:
            got.append(liveness.tick(now, last_heard))
    assert got == expected


def test_stalls_are_counted_and_silent_follows_the_verdicts() -> None:
    liveness = Liveness(down_after=3.0, reconnect_after=10.0, tick_s=1.0, now=0.0)
    liveness.tick(1, 0)
    liveness.tick(6, 0)
    assert liveness.stalls == 1 and not liveness.silent
    for now in (7, 8, 9):
        liveness.tick(now, 0)
    assert liveness.silent
    liveness.tick(10, 9.5)
    assert not liveness.silent


@pytest.mark.parametrize("down, reconnect, tick", [(3, 10, 0), (3, 2, 1), (0.5, 10, 1)])
def test_bounds_must_be_ordered(down: float, reconnect: float, tick: float) -> None:
    with pytest.raises(ValueError):
        Liveness(down, reconnect, tick, now=0.0)
