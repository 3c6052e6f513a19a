"""Where a resuming stream starts: Last-Event-ID against the head (pure tables)."""

from __future__ import annotations

import pytest

from bus.replay import Position, Replay
from streamer.resume import LIVE, ResumePlan, parse_event_id, plan_resume, refusal_reason

HEAD = Position(500, 40)


@pytest.mark.parametrize(
    ("last_event_id", "plan"),
    [
        (None, LIVE),
        ("", LIVE),
        ("500-40", LIVE),
        ("500-39", ResumePlan(replay_after=Position(500, 39))),
        ("500-0", ResumePlan(replay_after=Position(500, 0))),
        # Ahead of this streamer's subscription, maybe not of the broker (a snapshot's head): it decides.
        ("500-41", ResumePlan(replay_after=Position(500, 41))),
        ("499-12", ResumePlan(resync="epoch_changed")),
        ("garbage", ResumePlan(resync="history_gone")),
        ("500-", ResumePlan(resync="history_gone")),
        ("500-+3", ResumePlan(resync="history_gone")),
        ("500-03", ResumePlan(resync="history_gone")),
        ("500-\u0663", ResumePlan(resync="history_gone")),
        (" 500-39", ResumePlan(resync="history_gone")),
        ("500-39\n", ResumePlan(resync="history_gone")),
        (f"500-{2**63}", ResumePlan(resync="history_gone")),
    ],
)
def test_plan_for_each_kind_of_last_event_id(last_event_id: str | None, plan: ResumePlan) -> None:
    assert plan_resume(last_event_id, HEAD) == plan


def test_event_ids_round_trip() -> None:
    assert parse_event_id(str(Position(1795295526431924, 7))) == Position(1795295526431924, 7)


def test_a_refused_replay_is_epoch_changed_only_when_the_broker_moved_on() -> None:
    asked = Position(500, 3)
    assert refusal_reason(Replay(False, 500, 90), asked) == "history_gone"
    assert refusal_reason(Replay(False, 501, 0), asked) == "epoch_changed"
    assert refusal_reason(None, asked) == "history_gone"
