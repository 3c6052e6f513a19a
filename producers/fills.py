"""Fills as rows: what the position handler reads of `executions`, and how it marks them. Blocking.

    orders: Execution row, in the order change's transaction ─▶ PUSH [fill, id] (a wake-up, a fast path)
    positions: claim(id) · the position change · its outbox event ─▶ ONE commit
               a fill whose application raises: fail(id, error), skipped, never retried

`claim` is a conditional update, so a fill is applied by one transaction only:
applying the same fill twice (a repeated wake-up, a catch-up racing the fast
path, a restart) changes nothing. Executions are the ledger and are kept.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from store.columns import utc_now
from store.handoff import ERROR_LENGTH, Execution


def pending(session: Session, limit: int) -> list[int]:
    """The ids of the oldest fills not applied yet, in id order."""
    query = select(Execution.id).where(Execution.applied_at.is_(None)).order_by(Execution.id).limit(limit)
    return list(session.scalars(query))


def last_applied(session: Session) -> int:
    """The highest id applied so far, 0 if none."""
    return session.scalar(select(func.max(Execution.id)).where(Execution.applied_at.is_not(None))) or 0


def claim(session: Session, fill_id: int) -> Execution | None:
    """Take a fill for this transaction; None when it is applied already (or does not exist)."""
    result = session.execute(
        update(Execution).where(Execution.id == fill_id, Execution.applied_at.is_(None)).values(applied_at=utc_now())
    )
    if not result.rowcount:  # type: ignore[attr-defined]  # an UPDATE's result is a CursorResult
        return None
    return session.get(Execution, fill_id)


def fail(sessions: sessionmaker[Session], fill_id: int, error: str) -> None:
    """Record a fill whose application raised: marked applied, with the error; it is never retried."""
    with sessions() as session:
        session.execute(
            update(Execution)
            .where(Execution.id == fill_id, Execution.applied_at.is_(None))
            .values(applied_at=utc_now(), error=error[:ERROR_LENGTH])
        )
        session.commit()
