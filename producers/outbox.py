"""The outbox's database side: events written with their change, read and marked by the relay. Blocking.

    handler: session.add(event_row(source, event)) … commit ─▶ relay: unsent_after → send
        ─▶ ack last: mark_sent(last)     reject id: mark_failed(id, reason)     every minute: prune

A source (`orders`, `positions`) is one stream of the acknowledged ingress; its
name `<source>:<uuid hex>` is made once per database (`stream_name`), so a new
database is a new stream to the broker, and so is a restored one once its relay
finds it behind its stream (`renew_stream`). Only one process writes a source's rows
(the one bound to its command endpoint), so their ids are committed in order.

Retention: sent rows are deleted RETAIN_S after they were sent, and beyond the
newest RETAIN_ROWS of a source; rejected rows (kept for operators) beyond the
newest RETAIN_FAILED. The newest row of a source is always kept: its id is the
highest the database gave the stream. Each prune deletes at most PRUNE_BATCH rows per rule.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bus import codec
from bus.events import WireMessage
from bus.publisher import topic_of
from producers.relay_window import Row
from store.columns import utc_now
from store.handoff import ERROR_LENGTH, OutboxEvent, OutboxStream

RETAIN_S = 3600.0
RETAIN_ROWS = 100_000
RETAIN_FAILED = 10_000
PRUNE_BATCH = 5000


def event_row(source: str, event: WireMessage) -> OutboxEvent:
    """The outbox row of one event, stamped with the time it is written (the start of its latency)."""
    wire = event.to_wire()
    wire["published_ns"] = time.time_ns()
    return OutboxEvent(source=source, topic=topic_of(event), payload=codec.pack(wire))


class Written:
    """The outbox rows one transaction adds; after its commit, what the relay is offered."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._rows: list[OutboxEvent] = []

    def add(self, session: Session, event: WireMessage) -> None:
        """Write `event` in the session's transaction (ids follow the order of the calls)."""
        row = event_row(self.source, event)
        session.add(row)
        self._rows.append(row)

    def rows(self) -> list[Row]:
        """The committed rows, as the relay sends them."""
        return [Row(row.id, row.topic, row.payload) for row in self._rows]


def stream_name(sessions: sessionmaker[Session], source: str) -> str:
    """The stream name of `source` in this database, made on first use."""
    with sessions() as session:
        known = session.get(OutboxStream, source)
        if known is not None:
            return known.stream
        session.add(OutboxStream(source=source, stream=new_stream_name(source)))
        try:
            session.commit()
        except IntegrityError:  # another process of this source made it first
            session.rollback()
        stream = session.get(OutboxStream, source)
        assert stream is not None  # just committed, by us or by the winner
        return stream.stream


def new_stream_name(source: str) -> str:
    """A stream name of `source` no database has had: `<source>:<uuid hex>`."""
    return f"{source}:{uuid.uuid4().hex}"


def renew_stream(sessions: sessionmaker[Session], source: str, stream: str) -> None:
    """Give `source` the new stream name `stream` in this database (its old one is ahead of it at the broker)."""
    with sessions() as session:
        session.execute(update(OutboxStream).where(OutboxStream.source == source).values(stream=stream))
        session.commit()


def _max_id(source: str, *conditions: Any) -> Select[Any]:
    return select(func.max(OutboxEvent.id)).where(OutboxEvent.source == source, *conditions)


def last_id(session: Session, source: str) -> int:
    """The highest event id of `source` in this database, sent or not, 0 if none (prune keeps the newest)."""
    return session.scalar(_max_id(source)) or 0


def last_sent(session: Session, source: str) -> int:
    """The highest event id of `source` already confirmed, 0 if none is known."""
    return session.scalar(_max_id(source, OutboxEvent.sent_at.is_not(None))) or 0


def rows_after(session: Session, source: str, after: int, limit: int) -> list[Row]:
    """Rows of `source` after event id `after`, in id order (every row after the last confirmed is unsent)."""
    query = (
        select(OutboxEvent.id, OutboxEvent.topic, OutboxEvent.payload)
        .where(OutboxEvent.source == source, OutboxEvent.id > after)
        .order_by(OutboxEvent.id)
        .limit(limit)
    )
    return [Row(id_, bytes(topic), bytes(payload)) for id_, topic, payload in session.execute(query)]


def mark_sent(session: Session, source: str, after: int, last: int) -> None:
    """Every row of `source` up to `last` is confirmed by the broker; those up to `after` are marked already
    (a range of the index instead of every row kept)."""
    session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.source == source, OutboxEvent.id > after, OutboxEvent.id <= last,
               OutboxEvent.sent_at.is_(None))
        .values(sent_at=utc_now())
    )


def mark_failed(session: Session, source: str, event_id: int, reason: str) -> None:
    """The broker rejected this row for good: it is kept with the reason and counts as sent."""
    session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.source == source, OutboxEvent.id == event_id)
        .values(failed=reason[:ERROR_LENGTH] or "rejected", sent_at=utc_now())
    )


def prune(session: Session, source: str) -> int:
    """Delete what retention no longer keeps; how many rows."""
    mine = OutboxEvent.source == source
    sent = OutboxEvent.sent_at.is_not(None)
    ok, rejected = OutboxEvent.failed.is_(None), OutboxEvent.failed.is_not(None)
    # The newest row of the source always stays: it is the highest id this database gave the stream (Relay).
    newest = _max_id(source).scalar_subquery()
    expired = OutboxEvent.sent_at < utc_now() - timedelta(seconds=RETAIN_S)
    old = select(OutboxEvent.id).where(mine, ok, expired, OutboxEvent.id < newest)
    deleted = _delete_ids(session, old.order_by(OutboxEvent.id).limit(PRUNE_BATCH))
    for condition, keep in ((ok, RETAIN_ROWS), (rejected, RETAIN_FAILED)):
        newest_kept = (
            select(OutboxEvent.id).where(mine, sent, condition).order_by(OutboxEvent.id.desc()).offset(keep).limit(1)
        )
        bound = session.scalar(newest_kept)
        if bound is not None:
            beyond = select(OutboxEvent.id).where(mine, sent, condition, OutboxEvent.id <= bound)
            deleted += _delete_ids(session, beyond.order_by(OutboxEvent.id).limit(PRUNE_BATCH))
    return deleted


def _delete_ids(session: Session, ids: Select[Any]) -> int:
    chosen = list(session.scalars(ids))
    if chosen:
        session.execute(delete(OutboxEvent).where(OutboxEvent.id.in_(chosen)))
    return len(chosen)
