"""Fills as rows: what the position handler reads of `executions`, and how it marks them. Blocking.

    orders: Execution row, in the order change's transaction ─▶ PUSH [fill, id] (a wake-up, a fast path)
    positions: claim_batch(ids) · the position changes · their outbox events ─▶ ONE commit
               a fill whose application raises: fail(id, error), skipped, never retried

`claim` is a conditional update, so a fill is applied by one transaction only:
applying the same fill twice (a repeated wake-up, a catch-up racing the fast
path, a restart) changes nothing. A batch is claimed whole or not at all: when
any of its fills is applied already, nothing is taken and the caller goes fill
by fill. Executions are the ledger and are kept.
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
    claimed = claim_batch(session, [fill_id])
    return claimed[0] if claimed else None


def claim_batch(session: Session, fill_ids: list[int]) -> list[Execution] | None:
    """Take these fills for this transaction, in id order; None (nothing taken) when any is applied already
    or does not exist: the caller rolls back (one statement each way, whatever the batch's size)."""
    result = session.execute(
        update(Execution)
        .where(Execution.id.in_(fill_ids), Execution.applied_at.is_(None))
        .values(applied_at=utc_now())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != len(fill_ids):  # type: ignore[attr-defined]  # an UPDATE's result is a CursorResult
        return None
    return list(session.scalars(select(Execution).where(Execution.id.in_(fill_ids)).order_by(Execution.id)))


def fail(sessions: sessionmaker[Session], fill_id: int, error: str) -> None:
    """Record a fill whose application raised: marked applied, with the error; it is never retried."""
    with sessions() as session:
        session.execute(
            update(Execution)
            .where(Execution.id == fill_id, Execution.applied_at.is_(None))
            .values(applied_at=utc_now(), error=error[:ERROR_LENGTH])
        )
        session.commit()
