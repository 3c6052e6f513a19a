"""Where a replay of a trade log starts, given the log's stored run (replay_runs.py) and --restart. Pure.

    the log's stored run          --restart   start     from
    none                          either      NEW       the first line
    unfinished, through line N    no          RESUME    line N + 1 (lines 1..N are in the inbox already)
    unfinished, through line N    yes         RESTART   the first line (lines 1..N are stored again)
    finished                      either      ANEW      the first line (a log replayed in full is replayed again)

A log is known by its bytes (replay_runs.LogIdentity): a file changed in any way
is another log, replayed from its first line. When such a NEW log is replayed
from a path where another log's run stopped unfinished, that run is reported
(its lines stay in the inbox: the new log's first lines may well be the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum


class Start(Enum):
    """How a run starts."""

    NEW = "new"
    RESUME = "resume"
    RESTART = "restart"
    ANEW = "anew"


@dataclass(frozen=True, slots=True)
class StoredRun:
    """What the database says of a log's latest run."""

    runs: int  # replays of this log started so far (the latest one's number)
    last_line: int  # the last line whose records are stored
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class Plan:
    """What this run does: how it starts, the lines it passes over, the number it records, what it found."""

    start: Start
    after_line: int  # records of this line and before are stored already: passed over
    runs: int  # this run's number, written with its progress
    found: StoredRun | None = None  # the log's run before this one
    abandoned: StoredRun | None = None  # NEW only: an unfinished run of another log from the same path

    def describe(self, file: str) -> str:
        """The INFO line a replay logs as it starts."""
        found = self.found
        if self.start is Start.RESUME and found is not None:
            return f"resuming {file} after line {found.last_line} of a run started at {_when(found.started_at)}"
        if self.start is Start.RESTART and found is not None:
            return (f"--restart: replaying {file} from the first line; the unfinished run started at"
                    f" {_when(found.started_at)} had stored up to line {found.last_line}, which are stored again")
        if self.start is Start.ANEW and found is not None and found.finished_at is not None:
            return f"replaying {file} anew from the first line (it was replayed in full at {_when(found.finished_at)})"
        return f"replaying {file} from the first line"

    def warning(self, file: str) -> str | None:
        """The WARNING line for a changed log whose former content's run stopped unfinished; None when none."""
        old = self.abandoned
        if old is None:
            return None
        return (f"{file} is not the log whose replay from this path stopped after line {old.last_line}"
                f" (started at {_when(old.started_at)}): its content changed, so it is replayed from the first"
                " line; what that run stored stays in the inbox")


def plan(stored: StoredRun | None, *, restart: bool, abandoned: StoredRun | None = None) -> Plan:
    """The start of a run of a log whose latest run is `stored` (None: never replayed)."""
    if stored is None:
        return Plan(Start.NEW, 0, 1, None, abandoned)
    if stored.finished_at is not None:
        return Plan(Start.ANEW, 0, stored.runs + 1, stored)
    if restart:
        return Plan(Start.RESTART, 0, stored.runs + 1, stored)
    return Plan(Start.RESUME, stored.last_line, stored.runs, stored)


def stopped_note(through: int | None, *, restart: bool) -> str:
    """The end line's note of a run stopped early (Ctrl-C, SIGTERM): what running it again does, true either way.

    `through`: the last line stored (None: --raw, which keeps no progress). Under `make run`, which passes
    --restart, "run it again to resume" would be false: its next start replays the sample from the first line.
    """
    if through is None:
        return "stopped early; --raw keeps no progress: running it again starts from the first line"
    if through == 0:
        return "stopped early before any line was stored; running it again starts from the first line"
    if restart:
        return (f"stopped early after line {through}; the same command without --restart resumes after it,"
                " with --restart (as this run and make run's demo) it starts from the first line again")
    return f"stopped early after line {through}; the same command again resumes after it"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
