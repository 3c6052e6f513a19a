"""KeySync as a table: a script of what arrives for one key, what it decided, where it ends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from bus.keysync import Action, KeySync, ReplayStep, Step, Sync
from bus.replay import BusEvent, Position, Replay
from bus.topics import StreamKey

KEY = StreamKey(7, 3)
E = 1000  # the epoch; E + 1 is the broker after a restart


@dataclass
class Counters:
    duplicates_dropped: int = 0
    gaps_detected: int = 0
    gaps_recovered: int = 0
    resyncs: int = 0


def event(seq: int, epoch: int = E) -> BusEvent:
    return BusEvent(KEY, epoch, seq, 0, 0, {"seq": seq})


def seqs(events: list[BusEvent]) -> list[int]:
    return [e.seq for e in events]


def _said(step: Step, seq: int | None = None) -> list[str]:
    said = [f"resync {step.resync.reason} {step.resync.position}"] if step.resync else []
    if step.action is Action.DELIVER:
        said.append(f"deliver {seq}")
    elif step.action is Action.REPLAY:
        said.append("replay")
    return said


def _said_replay(step: ReplayStep) -> list[str]:
    if step.stale:
        return ["stale"]
    said = [f"replayed {seqs(step.replayed)}"] if step.replayed else []
    said += [f"resync {step.resync.reason} {step.resync.position}"] if step.resync else []
    said += [f"released {seqs(step.released)}"] if step.released else []
    return [*said, "done"] if step.done else said


def run(script: list[tuple[Any, ...]], max_pending: int = 3) -> tuple[KeySync, Counters, list[str]]:
    """Feed `script` to a KeySync; what it said, in order."""
    counters = Counters()
    sync = KeySync(counters, max_pending=max_pending)
    said: list[str] = []
    for op, *args in script:
        if op == "marker":
            said += _said(sync.on_marker(*args))
        elif op == "event":
            said += _said(sync.on_event(event(*args)), args[0])
        elif op == "recreated":
            sync.on_socket_recreated()
        elif op == "ok":  # ("ok", [seqs], head): the answer to the replay KeySync asks for
            replayed, head = args
            said += _said_replay(sync.on_replay(sync.replay_from(), Replay(True, E, head, [event(s) for s in replayed])))
        elif op == "gone":  # ("gone", epoch, head)
            said += _said_replay(sync.on_replay(sync.replay_from(), Replay(False, *args)))
        elif op == "late":  # an answer to a replay asked before the key moved on
            said += _said_replay(sync.on_replay(Position(E, -5), Replay(True, E, 9, [event(9)])))
    return sync, counters, said


M1 = ("marker", E, 1)
TABLE: list[tuple[str, list[tuple[Any, ...]], list[str], Sync, Position | None, list[int]]] = [
    # name, script, what it said, final state, position, pending seqs
    ("before any marker nothing is known", [], [], Sync.SUBSCRIBING, None, []),
    ("the first marker gives the position", [("marker", E, 5)], [], Sync.LIVE, Position(E, 5), []),
    ("events before the first marker are dropped", [("event", 1), M1], [], Sync.LIVE, Position(E, 1), []),
    ("the next event is delivered", [M1, ("event", 2)], ["deliver 2"], Sync.LIVE, Position(E, 2), []),
    ("an old event is a duplicate", [("marker", E, 3), ("event", 3), ("event", 2)], [], Sync.LIVE, Position(E, 3), []),
    ("a seq jump holds the event and starts a replay", [M1, ("event", 4)], ["replay"], Sync.REPLAYING, Position(E, 1), [4]),
    ("events wait while the replay runs", [M1, ("event", 4), ("event", 5)], ["replay"], Sync.REPLAYING, Position(E, 1), [4, 5]),
    ("what waits is bounded", [M1, *[("event", s) for s in (4, 5, 6, 7)]], ["replay"], Sync.REPLAYING, Position(E, 1), [4, 5, 6]),
    ("the replay fills the gap, then what waited follows",
     [M1, ("event", 4), ("event", 5), ("ok", [2, 3, 4], 4)],
     ["replay", "replayed [2, 3, 4]", "released [5]", "done"], Sync.LIVE, Position(E, 5), []),
    ("a replay that leaves a hole asks again",
     [M1, ("event", 5), ("ok", [2, 3], 3)], ["replay", "replayed [2, 3]"], Sync.REPLAYING, Position(E, 3), [5]),
    ("history gone: resync at the head, then what waited after it",
     [M1, ("event", 9), ("event", 10), ("gone", E, 9)],
     ["replay", "resync history_gone 1000-9", "released [10]", "done"], Sync.LIVE, Position(E, 10), []),
    ("a replay answered from another epoch is an epoch change",
     [M1, ("event", 5), ("gone", E + 1, 3)], ["replay", "resync epoch_changed 1001-3", "done"], Sync.LIVE, Position(E + 1, 3), []),
    ("a late answer changes nothing", [M1, ("event", 5), ("late",)], ["replay", "stale"], Sync.REPLAYING, Position(E, 1), [5]),
    ("an event of a new epoch resyncs first, then is delivered",
     [("marker", E, 2), ("event", 1, E + 1)], ["resync epoch_changed 1001-0", "deliver 1"], Sync.LIVE, Position(E + 1, 1), []),
    ("a new epoch during a replay keeps only what waits of it",
     [M1, ("event", 3), ("event", 1, E + 1)], ["replay", "resync epoch_changed 1001-0"], Sync.REPLAYING, Position(E + 1, 0), [1]),
    ("a marker of a new epoch resyncs at its head",
     [("marker", E, 2), ("marker", E + 1, 7)], ["resync epoch_changed 1001-7"], Sync.LIVE, Position(E + 1, 7), []),
    ("a marker ahead starts a replay", [M1, ("marker", E, 3)], ["replay"], Sync.REPLAYING, Position(E, 1), []),
    ("a marker ahead during a replay adds nothing", [M1, ("event", 3), ("marker", E, 5)], ["replay"], Sync.REPLAYING, Position(E, 1), [3]),
    ("a marker behind changes nothing", [("marker", E, 3), ("marker", E, 2)], [], Sync.LIVE, Position(E, 3), []),
    ("a new socket drops events until its marker", [M1, ("recreated",), ("event", 2)], [], Sync.RESUBSCRIBING, Position(E, 1), []),
    ("the new socket's marker tells what was missed", [M1, ("recreated",), ("event", 2), ("marker", E, 2)], ["replay"], Sync.REPLAYING, Position(E, 1), []),
    ("a replay may end before the new socket's marker",
     [M1, ("event", 3), ("recreated",), ("event", 4), ("ok", [2, 3], 3)],
     ["replay", "replayed [2, 3]", "done"], Sync.RESUBSCRIBING, Position(E, 3), []),
    ("the marker during a replay clears the wait", [M1, ("event", 3), ("recreated",), ("marker", E, 3)], ["replay"], Sync.REPLAYING, Position(E, 1), [3]),
    ("a new socket before the first marker changes nothing", [("recreated",), ("marker", E, 5)], [], Sync.LIVE, Position(E, 5), []),
]


@pytest.mark.parametrize(("name", "script", "said", "state", "position", "pending"), TABLE, ids=[row[0] for row in TABLE])
def test_keysync(name: str, script: list[tuple[Any, ...]], said: list[str], state: Sync, position: Position | None, pending: list[int]) -> None:
    sync, _, what = run(script)
    assert what == said
    assert (sync.state, sync.position, seqs(sync.pending)) == (state, position, pending)


def test_counters_count_gaps_recoveries_duplicates_and_resyncs() -> None:
    _, counters, _ = run([M1, ("event", 4), ("event", 5), ("ok", [2, 3, 4], 4), ("event", 5), ("marker", E + 1, 0)])
    assert counters == Counters(duplicates_dropped=2, gaps_detected=1, gaps_recovered=1, resyncs=1)


def test_the_replay_asked_is_after_the_position() -> None:
    sync, _, _ = run([("marker", E, 4), ("event", 7)])
    assert sync.replay_from() == Position(E, 4)
