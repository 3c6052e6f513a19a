"""Where a replay starts (producers/replay_progress.py): the table of stored run × --restart."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from producers.replay_progress import Plan, Start, StoredRun, plan, stopped_note

STARTED = datetime(2026, 1, 6, 9, 30, tzinfo=UTC)
FINISHED = datetime(2026, 1, 6, 9, 47, 5, tzinfo=UTC)
UNFINISHED = StoredRun(runs=2, last_line=1001, started_at=STARTED, finished_at=None)
DONE = StoredRun(runs=2, last_line=3100, started_at=STARTED, finished_at=FINISHED)
OTHER = StoredRun(runs=1, last_line=699, started_at=STARTED, finished_at=None)


@pytest.mark.parametrize(("stored", "restart", "expected"), [
    (None, False, Plan(Start.NEW, 0, 1)),
    (None, True, Plan(Start.NEW, 0, 1)),
    (UNFINISHED, False, Plan(Start.RESUME, 1001, 2, UNFINISHED)),  # the same run goes on: its number stays
    (UNFINISHED, True, Plan(Start.RESTART, 0, 3, UNFINISHED)),
    (DONE, False, Plan(Start.ANEW, 0, 3, DONE)),
    (DONE, True, Plan(Start.ANEW, 0, 3, DONE)),
    (StoredRun(1, 0, STARTED, None), False, Plan(Start.RESUME, 0, 1, StoredRun(1, 0, STARTED, None))),  # killed before a batch
])
def test_plan_resumes_only_an_unfinished_run_without_restart(
    stored: StoredRun | None, restart: bool, expected: Plan
) -> None:
    assert plan(stored, restart=restart) == expected


@pytest.mark.parametrize(("decided", "line"), [
    (plan(None, restart=False), "replaying trades.jsonl from the first line"),
    (plan(UNFINISHED, restart=False), "resuming trades.jsonl after line 1001 of a run started at 2026-01-06T09:30:00Z"),
    (plan(UNFINISHED, restart=True), "--restart: replaying trades.jsonl from the first line; the unfinished run started"
                                     " at 2026-01-06T09:30:00Z had stored up to line 1001, which are stored again"),
    (plan(DONE, restart=False), "replaying trades.jsonl anew from the first line (it was replayed in full at 2026-01-06T09:47:05Z)"),
])
def test_each_start_is_described_in_one_line(decided: Plan, line: str) -> None:
    assert decided.describe("trades.jsonl") == line


def test_a_new_log_where_another_run_stopped_unfinished_is_warned_about_and_only_then() -> None:
    warned = plan(None, restart=False, abandoned=OTHER)
    assert warned.start is Start.NEW and warned.after_line == 0
    assert warned.warning("trades.jsonl") == (
        "trades.jsonl is not the log whose replay from this path stopped after line 699 (started at"
        " 2026-01-06T09:30:00Z): its content changed, so it is replayed from the first line; what that run"
        " stored stays in the inbox")
    assert plan(None, restart=False).warning("trades.jsonl") is None
    for stored in (UNFINISHED, DONE):  # a log known by its bytes is not "another log" (begin asks only for NEW)
        assert plan(stored, restart=False, abandoned=OTHER).warning("trades.jsonl") is None


@pytest.mark.parametrize(("through", "restart", "expected"), [
    (500, False, "stopped early after line 500; the same command again resumes after it"),
    # make run passes --restart: "run it again to resume" would be false there.
    (500, True, "stopped early after line 500; the same command without --restart resumes after it,"
                " with --restart (as this run and make run's demo) it starts from the first line again"),
    (0, False, "stopped early before any line was stored; running it again starts from the first line"),
    (0, True, "stopped early before any line was stored; running it again starts from the first line"),
    (None, False, "stopped early; --raw keeps no progress: running it again starts from the first line"),
])
def test_stopped_note_says_what_running_it_again_does_with_and_without_restart(
        through: int | None, restart: bool, expected: str) -> None:
    assert stopped_note(through, restart=restart) == expected
