"""A stream's catch-up core, without sockets: scripts of inputs, each with the Step and phase it must give."""

from __future__ import annotations

from typing import Any

import pytest

from bus.replay import Position, Replay
from streamer.catchup import NOTHING, CatchUp, Frame, Phase, Step

EPOCH = 500
R, A, L = Phase.REPLAYING, Phase.AWAITING_LIVE, Phase.LIVE


def frames(*seqs: int) -> list[Frame]:
    return [(seq, b"f%d" % seq) for seq in seqs]


def sent(*seqs: int) -> tuple[bytes, ...]:
    return tuple(b"f%d" % seq for seq in seqs)


def live(*seqs: int) -> tuple[str, Any]:
    return ("live", frames(*seqs))


def replay(*seqs: int, head: int, epoch: int = EPOCH) -> tuple[str, Any]:
    return ("replay", (Replay(True, epoch, head), frames(*seqs), head))


def gone(epoch: int = EPOCH, head: int = 0) -> tuple[str, Any]:
    return ("replay", (Replay(False, epoch, head), [], head))


FAILED: tuple[str, Any] = ("replay", (None, [], 0))


def resync(reason: str) -> tuple[str, Any]:
    return ("resync", reason)


def feed(core: CatchUp, event: tuple[str, Any]) -> Step:
    kind, arg = event
    if kind == "live":
        return core.on_live(arg)
    if kind == "resync":
        return core.on_resync(arg)
    return core.on_replay(*arg)


# (what it shows, limit, after seq, [(input, expected step, phase after it), ...])
SCRIPTS = [
    ("a replay that reaches the live head goes live", 5, 2, [
        (replay(3, 4, head=4), Step(replayed=sent(3, 4), counted=False), L),
    ]),
    ("live frames during the replay are held, then those after it are released", 5, 2, [
        (live(4, 5), NOTHING, R),
        (replay(3, 4, head=5), Step(replayed=sent(3, 4), counted=False, released=sent(5)), L),
    ]),
    ("replayed events the client already has are dropped", 5, 3, [
        (replay(2, 3, 4, head=4), Step(replayed=sent(4), counted=False), L),
    ]),
    ("a replay ahead of the live stream waits for it, then only newer live frames pass", 5, 2, [
        (replay(3, 4, 5, head=3), Step(replayed=sent(3, 4, 5), counted=False), A),
        (live(4), NOTHING, A),
        (live(5, 6), Step(released=sent(6)), L),
    ]),
    ("an empty replay ahead of nothing goes live", 5, 2, [
        (replay(head=2), Step(counted=False), L),
    ]),
    ("awaiting live ends at a frame that reaches the floor exactly", 5, 2, [
        (replay(3, 4, head=2), Step(replayed=sent(3, 4), counted=False), A),
        (live(4), NOTHING, L),
        (live(5), Step(released=sent(5)), L),
    ]),
    ("held frames beyond the limit drop them all but the newest; the hole is asked for again, counted", 3, 2, [
        (live(4, 5), NOTHING, R),
        (live(6, 7), NOTHING, R),  # 4 > 3: 4, 5 dropped, 6, 7 kept
        (replay(3, 4, head=7), Step(replayed=sent(3, 4), counted=False, ask_after=Position(EPOCH, 4)), R),
        (replay(5, 6, 7, head=7), Step(replayed=sent(5, 6, 7), counted=True), L),
    ]),
    ("a batch larger than the limit keeps only its newest frames", 2, 2, [
        (live(3, 4, 5, 6), NOTHING, R),
        (replay(3, head=6), Step(replayed=sent(3), counted=False, ask_after=Position(EPOCH, 3)), R),
        (replay(4, 5, head=6), Step(replayed=sent(4, 5), released=sent(6)), L),
    ]),
    ("a refused replay of the same epoch is history_gone; the held frames follow the resync", 5, 2, [
        (live(9), NOTHING, R),
        (gone(), Step(resync="history_gone", released=sent(9)), L),
    ]),
    ("a refused replay of another epoch is epoch_changed", 5, 2, [
        (gone(epoch=EPOCH + 1), Step(resync="epoch_changed"), L),
    ]),
    ("a failed replay is history_gone", 5, 2, [
        (FAILED, Step(resync="history_gone"), L),
    ]),
    ("a resync during the replay drops the held frames and wins over the replay's answer", 5, 2, [
        (live(4), NOTHING, R),
        (resync("epoch_changed"), NOTHING, R),
        (live(1), NOTHING, R),  # the new epoch's first event
        (replay(3, head=4), Step(resync="epoch_changed", released=sent(1)), L),
    ]),
    ("a resync while awaiting live is passed on and the stream goes live", 5, 2, [
        (replay(3, 4, head=3), Step(replayed=sent(3, 4), counted=False), A),
        (resync("history_gone"), Step(resync="history_gone"), L),
    ]),
    ("once live, frames and resyncs pass through and a late replay answer is ignored", 5, 2, [
        (replay(3, head=3), Step(replayed=sent(3), counted=False), L),
        (live(4, 5), Step(released=sent(4, 5)), L),
        (resync("epoch_changed"), Step(resync="epoch_changed"), L),
        (replay(4, head=5), NOTHING, L),
        (live(), NOTHING, L),
    ]),
]


@pytest.mark.parametrize(("limit", "after", "script"), [s[1:] for s in SCRIPTS], ids=[s[0] for s in SCRIPTS])
def test_catch_up_scripts(limit: int, after: int, script: list[tuple[tuple[str, Any], Step, Phase]]) -> None:
    core = CatchUp(Position(EPOCH, after), limit)
    for number, (event, step, phase) in enumerate(script, 1):
        assert feed(core, event) == step, f"step {number}"
        assert core.phase is phase, f"phase after step {number}"


def test_overflows_count_what_they_drop() -> None:
    core = CatchUp(Position(EPOCH, 0), 3)
    core.on_live(frames(1, 2))
    core.on_live(frames(3, 4, 5, 6, 7))  # 2 held + 2 beyond the limit
    assert core.dropped == 4 and [seq for seq, _ in core.held] == [5, 6, 7]
    core.on_resync("epoch_changed")
    assert core.dropped == 7 and core.held == []
