"""A replay's progress through its log in the replay_runs table (store/handoff.py ReplayRun). Blocking.

    scan(path) ─▶ the log's identity (sha256 of its bytes, size) and line count, in one read
    begin(sessions, identity, path, restart) ─▶ the Plan (replay_progress.py), the run's row written: ONE commit
    each batch: advance(session, run, through_line) · inbox.put(...) … ─▶ the batch's ONE commit
    the last batch of a run that read the whole log: advance(..., finished=True)

So a replay killed at any moment has stored whole batches, each with the line
it reached, and the next run of the same log passes over those lines. The
update of `advance` names the run's number and the line it last recorded: a
batch of a second replay of the same log at once (or of one that --restart
superseded, or a batch retried after a commit whose answer was lost) matches no
row, raises ReplayConflict and stores nothing.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from producers.errors import ReplayConflict
from producers.replay_progress import Plan, Start, StoredRun, plan
from store.columns import utc_now
from store.handoff import PATH_LENGTH, ReplayRun

log = logging.getLogger(__name__)

CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class LogIdentity:
    """A log as its bytes say: the same digest and size are the same log, wherever it lies."""

    digest: str  # sha256, hex
    size: int


@dataclass(frozen=True, slots=True)
class LogScan:
    """What one read of the file tells: its identity and how many lines it has (the progress bar's total)."""

    identity: LogIdentity
    lines: int


@dataclass(frozen=True, slots=True)
class RunProgress:
    """This run's row as this process last wrote it."""

    id: int
    runs: int
    last_line: int

    def at(self, line: int) -> RunProgress:
        """The progress once a batch through `line` is committed."""
        return replace(self, last_line=line)


def scan(path: Path) -> LogScan:
    """Digest and count the lines of the file, streaming it."""
    digest, size, newlines, last = hashlib.sha256(), 0, 0, b"\n"
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            newlines += chunk.count(b"\n")
            last = chunk[-1:]
    return LogScan(LogIdentity(digest.hexdigest(), size), newlines + (last != b"\n"))


def _stored(row: ReplayRun) -> StoredRun:
    return StoredRun(row.runs, row.last_line, row.started_at, row.finished_at)


def begin(sessions: sessionmaker[Session], identity: LogIdentity, path: str, *, restart: bool) -> tuple[Plan, RunProgress]:
    """Decide where this run starts and record it: a new or reset row, the path (nothing else for a resume)."""
    path = path[:PATH_LENGTH]
    with sessions() as session:
        row = session.scalars(
            select(ReplayRun).where(ReplayRun.digest == identity.digest, ReplayRun.size == identity.size).with_for_update()
        ).one_or_none()
        abandoned = None if row is not None else _unfinished_from(session, path)
        decided = plan(None if row is None else _stored(row), restart=restart, abandoned=abandoned)
        now = utc_now()
        if row is None:
            row = ReplayRun(digest=identity.digest, size=identity.size, runs=decided.runs, last_line=0,
                            started_at=now, updated_at=now, finished_at=None, file=path)
            session.add(row)
        elif decided.start is not Start.RESUME:
            row.runs, row.last_line, row.started_at, row.updated_at, row.finished_at = decided.runs, 0, now, now, None
        row.file = path
        try:
            session.commit()
        except IntegrityError:
            raise ReplayConflict(f"another replay of {path} started at the same moment") from None
        return decided, RunProgress(row.id, row.runs, row.last_line)


def _unfinished_from(session: Session, path: str) -> StoredRun | None:
    """The latest unfinished run of any log replayed from `path`."""
    row = session.scalars(
        select(ReplayRun).where(ReplayRun.file == path, ReplayRun.finished_at.is_(None))
        .order_by(ReplayRun.updated_at.desc()).limit(1)
    ).one_or_none()
    return None if row is None else _stored(row)


def advance(session: Session, run: RunProgress, through_line: int, *, finished: bool = False) -> None:
    """Record, in the caller's transaction, that the lines through `through_line` are stored (and the log done)."""
    now = utc_now()
    result = session.execute(
        update(ReplayRun)
        .where(ReplayRun.id == run.id, ReplayRun.runs == run.runs, ReplayRun.last_line == run.last_line,
               ReplayRun.finished_at.is_(None))
        .values(last_line=through_line, updated_at=now, finished_at=now if finished else None)
    )
    if not result.rowcount:  # type: ignore[attr-defined]  # an UPDATE's result is a CursorResult
        raise ReplayConflict(
            f"the log's progress moved past line {run.last_line} (another replay of it, or a commit whose answer"
            " was lost): this batch is not stored; run it again to resume"
        )
