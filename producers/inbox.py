"""The order handler's inbox: commands stored by the webhook and replay, handled once, in arrival order. Blocking.

    webhook (intake.py), replay: put(session, command) … commit ─▶ a best-effort wake-up
    orders: pending() ─▶ claim(id) · the command's orders, fills, events · finish(id, outcome) ─▶ ONE commit
            a command that raises: fail(id, error) in a transaction of its own; the next one goes on

`claim` is a conditional update, so a row is handled by one transaction only,
whoever else tries. Retention: handled rows whose outcome is `done` are
deleted RETAIN_S after they were handled and beyond the newest RETAIN_ROWS
(a webhook signal's outcome is then its orders); rejected and failed rows stay
until their Signal or strategy goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from producers.commands import Command, encode_body, kind_of
from store.columns import utc_now
from store.handoff import ERROR_LENGTH, OUTCOME_DONE, OUTCOME_FAILED, InboxCommand

RETAIN_S = 3600.0
RETAIN_ROWS = 100_000
PRUNE_BATCH = 5000


@dataclass(frozen=True, slots=True)
class Item:
    """A pending inbox row."""

    id: int
    kind: str
    body: str
    received_at: datetime


def put(session: Session, command: Command, signal_id: int | None = None) -> InboxCommand:
    """Add a command to the inbox (the caller commits, with whatever else records its acceptance)."""
    row = InboxCommand(kind=kind_of(command), body=encode_body(command), signal_id=signal_id)
    session.add(row)
    return row


def pending(session: Session, limit: int) -> list[Item]:
    """The oldest rows not handled yet, in arrival order."""
    query = (
        select(InboxCommand.id, InboxCommand.kind, InboxCommand.body, InboxCommand.received_at)
        .where(InboxCommand.handled_at.is_(None))
        .order_by(InboxCommand.id)
        .limit(limit)
    )
    return [Item(*row) for row in session.execute(query)]


def claim(session: Session, item_id: int) -> bool:
    """Take the row for this transaction, as `done` unless `finish` says otherwise; False when handled already."""
    result = session.execute(
        update(InboxCommand)
        .where(InboxCommand.id == item_id, InboxCommand.handled_at.is_(None))
        .values(handled_at=utc_now(), outcome=OUTCOME_DONE)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]  # an UPDATE's result is a CursorResult


def finish(session: Session, item_id: int, outcome: str, error: str | None = None) -> None:
    """Record another outcome than `done` for a claimed row, in the transaction of its work."""
    values = {"outcome": outcome, "error": None if error is None else error[:ERROR_LENGTH]}
    session.execute(update(InboxCommand).where(InboxCommand.id == item_id).values(**values))


def fail(sessions: sessionmaker[Session], item_id: int, error: str) -> None:
    """Record a row whose handling raised: handled, failed, with the error; it is never retried."""
    with sessions() as session:
        session.execute(
            update(InboxCommand)
            .where(InboxCommand.id == item_id, InboxCommand.handled_at.is_(None))
            .values(handled_at=utc_now(), outcome=OUTCOME_FAILED, error=error[:ERROR_LENGTH])
        )
        session.commit()


def prune(session: Session) -> int:
    """Delete at most PRUNE_BATCH handled `done` rows that retention no longer keeps; how many."""
    handled = InboxCommand.handled_at
    newest_kept = session.scalar(
        select(handled).where(handled.is_not(None)).order_by(handled.desc()).offset(RETAIN_ROWS).limit(1)
    )
    cutoff = utc_now() - timedelta(seconds=RETAIN_S)
    if newest_kept is not None and newest_kept > cutoff:
        cutoff = newest_kept  # more than RETAIN_ROWS handled within the hour: the count bounds them
    chosen = list(session.scalars(
        select(InboxCommand.id)
        .where(handled < cutoff, InboxCommand.outcome == OUTCOME_DONE)
        .order_by(handled)
        .limit(PRUNE_BATCH)
    ))
    if chosen:
        session.execute(delete(InboxCommand).where(InboxCommand.id.in_(chosen)))
    return len(chosen)
