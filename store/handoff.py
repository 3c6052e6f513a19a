"""The hand-offs between processes, as tables (DESIGN "accepted means durable").

`order_inbox` holds what the order handler must do (webhook signals, replayed
signals and ticks) in arrival order, `executions` the fills the position handler
folds into positions, `outbox` the events each producer's relay sends to the
broker; `replay_runs` how far the replay tool got through each trade log. Each
row's progress (handled, applied, sent, replayed) is written in the same
transaction as the work it records. Their ids are AUTOINCREMENT on SQLite: a
plain rowid is reused once the newest rows are deleted, and a reused outbox id
would look to the broker like an event it already sequenced.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from bus.events import SIDES
from store.columns import MONEY, NAME_LENGTH, Base, Id, Money, UTCDateTime, cascading_fk, check_one_of, created_time

ERROR_LENGTH = 1000  # what is kept of an error's text on a failed row
DIGEST_LENGTH = 64  # sha256 hex
PATH_LENGTH = 1000  # what is kept of a replayed file's path
NEVER_REUSED_IDS: dict[str, Any] = {"sqlite_autoincrement": True}  # the module docstring says why

INBOX_SIGNAL, INBOX_TICK = "signal", "tick"
INBOX_KINDS = frozenset({INBOX_SIGNAL, INBOX_TICK})
# done: applied (its orders, possibly REJECTED ones); rejected: refused with a reason; failed: it raised.
OUTCOME_DONE, OUTCOME_REJECTED, OUTCOME_FAILED = "done", "rejected", "failed"
INBOX_OUTCOMES = frozenset({OUTCOME_DONE, OUTCOME_REJECTED, OUTCOME_FAILED})


def _pending_index(table: str, condition: str, *columns: str) -> Index:
    """A partial index of the rows still to do: it stays as small as the backlog."""
    where = text(condition)
    return Index(f"ix_{table}_pending", *columns, sqlite_where=where, postgresql_where=where)


class InboxCommand(Base):
    """A command for the order handler, handled once and in id (arrival) order.

    `body` is the command's wire map as JSON; `signal_id` links a webhook signal
    to its Signal row. Until handled, `handled_at` is null; then `outcome` (and
    for rejected or failed ones `error`) says what became of it.
    """

    __tablename__ = "order_inbox"
    __table_args__ = (
        check_one_of("order_inbox", "kind", INBOX_KINDS),
        check_one_of("order_inbox", "outcome", INBOX_OUTCOMES),
        _pending_index("order_inbox", "handled_at IS NULL", "id"),
        NEVER_REUSED_IDS,
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    body: Mapped[str] = mapped_column(Text)
    signal_id: Mapped[int | None] = mapped_column(Id, ForeignKey("signals.id", ondelete="CASCADE"), index=True)
    received_at: Mapped[datetime] = created_time()
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)  # retention's order
    outcome: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(String(ERROR_LENGTH))


class ReplayRun(Base):
    """The progress of `tradestream-replay` through one trade log, written with each batch of its inbox rows.

    A log is known by the sha256 of its bytes and its size (one row each).
    `last_line` is the number of the last line whose records are in the inbox;
    `finished_at` is set with the last batch of a run that read the whole log,
    and cleared when it is replayed anew. `runs` counts the replays started
    (1 for the first): a batch's update names it and `last_line`, so two replays
    of one log at once cannot both store a line (producers/replay_runs.py).
    """

    __tablename__ = "replay_runs"
    __table_args__ = (UniqueConstraint("digest", "size", name="uq_replay_runs_log"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH))
    size: Mapped[int] = mapped_column(BigInteger)
    file: Mapped[str] = mapped_column(String(PATH_LENGTH))  # where it was last replayed from, for people
    runs: Mapped[int] = mapped_column(Integer)
    last_line: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Execution(Base):
    """One fill of an order, written in the order change's transaction; applied to its position once.

    The account, strategy, user, symbol and side are the order's, copied so the
    ledger reads one row (deleting the order deletes its executions).
    `applied_at` is set in the position change's transaction; `error` when
    applying it raised (then it is skipped, not retried).
    """

    __tablename__ = "executions"
    __table_args__ = (
        check_one_of("executions", "side", SIDES),
        _pending_index("executions", "applied_at IS NULL", "id"),
        NEVER_REUSED_IDS,
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    order_id: Mapped[int] = cascading_fk("orders.id", index=True)
    account_id: Mapped[int] = mapped_column(Id)
    strategy_id: Mapped[int] = mapped_column(Id)
    user_id: Mapped[int] = mapped_column(Id)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[Money] = mapped_column(MONEY)
    price: Mapped[Money] = mapped_column(MONEY)
    executed_at: Mapped[datetime] = created_time()
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(String(ERROR_LENGTH))


class OutboxEvent(Base):
    """A bus event written with the change it describes; its relay sends it until the broker confirms.

    `source` names the producer (one outbox stream each), `topic` and `payload`
    are the frames as sent; `sent_at` is set once the broker confirmed it,
    `failed` (with `sent_at`) when the broker rejected it for good.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_source_id", "source", "id"),
        Index("ix_outbox_source_sent", "source", "sent_at"),
        NEVER_REUSED_IDS,
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    topic: Mapped[bytes] = mapped_column(LargeBinary(NAME_LENGTH))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = created_time()
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failed: Mapped[str | None] = mapped_column(String(ERROR_LENGTH))


class OutboxStream(Base):
    """The stream name of one producer's outbox in this database, made once (CONTRACT §2)."""

    __tablename__ = "outbox_streams"

    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    stream: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    created_at: Mapped[datetime] = created_time()
