"""A batch of fills SIGKILLed half-way through its transaction, then restarted: every fill applied exactly once.

The fills are written first, as the order handler does (no wake-ups), so the
armed `tradestream-positions` meets them all in its start-up catch-up: one batch,
one transaction. It kills itself (tests/faults/crashpoint.py) once the fifth fill
is folded into its position, before the commit. Nothing of the batch may be
committed then, not even its first four fills; the restarted process applies
every fill once, and its positions and events are those of a run never killed
(the same fills applied in-process on a copy of the database).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from producers.positions import PositionHandler
from store.handoff import Execution, OutboxEvent
from store.models import Position
from tests.faults import invariants
from tests.faults.crashpoint import CrashPoint
from tests.faults.stack import Stack
from tests.producers.conftest import World, world_at
from tests.producers.fill_rounds import position_events, write_fills
from tests.waiting import wait_until

SIGNALS = 6  # two fills each: 12 fills, one batch (FILL_BATCH is 100)
KILL_AT = CrashPoint("positions", "after", "producers.positions:PositionHandler._fold", 5)


def reference_of(world: World, folder: Path, demo: dict[str, Any]) -> World:
    """A copy of the database as it is now (SQLite's online backup: the WAL included)."""
    path = folder / "reference" / "tradestream.db"
    path.parent.mkdir()
    source, target = sqlite3.connect(world.url.removeprefix("sqlite:///")), sqlite3.connect(path)
    with target:
        source.backup(target)
    source.close()
    target.close()
    return world_at(path, demo)


def test_a_batch_killed_half_way_commits_nothing_and_the_restart_applies_every_fill_once(
    world: World, tmp_path: Path, demo: dict[str, Any]
) -> None:
    fill_ids = write_fills(world, SIGNALS)
    assert len(fill_ids) == 2 * SIGNALS
    reference = reference_of(world, tmp_path, demo)
    PositionHandler(reference.sessions, lambda rows: None).catch_up(lambda: False)  # a run never killed
    stack = Stack(world, tmp_path)
    try:
        stack.start("positions", armed=KILL_AT)
        stack.crashed_at(KILL_AT)
        with world.sessions() as session:
            applied = session.scalar(select(func.count()).select_from(Execution).where(Execution.applied_at.is_not(None)))
            assert (applied, session.scalar(select(func.count()).select_from(Position))) == (0, 0)
            assert session.scalar(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.source == "positions")) == 0
        stack.start("positions")  # as supervisord would

        def worked_off() -> bool:
            with world.sessions() as session:
                return not invariants.backlog(session)["fills"]

        wait_until(worked_off, timeout=30, what="every fill applied after the restart")
    finally:
        stack.close()
    with world.sessions() as session:
        assert invariants.ledger(session) == []
        assert session.scalar(select(func.count()).select_from(Execution).where(Execution.error.is_not(None))) == 0
    events = position_events(world)
    assert len([e for e in events if e["event_type"] != "position_marked"]) == len(fill_ids)
    assert events == position_events(reference)
    reference.engine.dispose()
