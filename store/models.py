"""The tables, as SQLAlchemy 2.0 typed declarative models.

Ids are 64-bit integers (the contract's 1 ≤ id < 2^63); on SQLite they are the
rowid (`INTEGER PRIMARY KEY`). Times are timezone-aware UTC datetimes on both
SQLite and PostgreSQL. Deleting a strategy or an account deletes its links,
orders and positions in the database itself (ON DELETE CASCADE).

The hand-offs between processes are tables too (DESIGN "accepted means durable"):
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

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

from bus import decimals
from bus.events import ORDER_STATUSES, ORDER_TYPES, SIDES
from store import money

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")
NAME_LENGTH = 64
TOKEN_HASH_LENGTH = 64  # sha256 hex
DECIMAL_TEXT_LENGTH = 64  # bus/decimals.py: a sign, 24 + 24 digits and a point fit
ERROR_LENGTH = 1000  # what is kept of an error's text on a failed row
DIGEST_LENGTH = 64  # sha256 hex
PATH_LENGTH = 1000  # what is kept of a replayed file's path
NEVER_REUSED_IDS: dict[str, Any] = {"sqlite_autoincrement": True}


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (the default of every timestamp column)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime; SQLite, which keeps no zone, gets UTC written and read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: timestamps must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class ExactDecimal(TypeDecorator[Decimal]):
    """A Decimal kept exactly: NUMERIC on PostgreSQL, its decimal text on SQLite.

    SQLite's NUMERIC affinity turns `0.20392143` into a REAL (a double, 15
    significant digits) and SQLAlchemy's Numeric reads that float back, so on
    SQLite the column is VARCHAR (TEXT affinity: stored as written) holding the
    plain decimal text of bus/decimals.py. Money columns are never compared or
    summed in SQL (store/money.py does the arithmetic), so text loses nothing.
    """

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(DECIMAL_TEXT_LENGTH))
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal) or not value.is_finite():
            raise ValueError(f"{value!r:.40}: money columns take finite Decimals")
        return decimals.text(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return money.exact(value)


Money = Decimal
MONEY = ExactDecimal


def _one_of(table: str, column: str, choices: frozenset[str]) -> CheckConstraint:
    allowed = ", ".join(f"'{choice}'" for choice in sorted(choices))
    return CheckConstraint(f"{column} IN ({allowed})", name=f"ck_{table}_{column}")


def _created_at() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), default=utc_now)


def _updated_at() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), default=utc_now, onupdate=utc_now)


def _cascading_fk(target: str, *, index: bool = False) -> Mapped[Any]:
    return mapped_column(Id, ForeignKey(target, ondelete="CASCADE"), index=index)


def _pending_index(table: str, condition: str, *columns: str) -> Index:
    """A partial index of the rows still to do: it stays as small as the backlog."""
    where = text(condition)
    return Index(f"ix_{table}_pending", *columns, sqlite_where=where, postgresql_where=where)


class Base(DeclarativeBase):
    """The declarative base of every tradestream table."""


class User(Base):
    """A person who logs in to the dashboard and may stream strategies."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    username: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    api_token_hash: Mapped[str] = mapped_column(String(TOKEN_HASH_LENGTH), unique=True)
    # A deactivated user cannot log in or use the API token (store/auth.py); server_default for existing rows.
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = _created_at()


class UserSession(Base):
    """A login session: the cookie carries a random token, only its sha256 is kept (store/sessions.py)."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = _cascading_fk("users.id", index=True)
    token_hash: Mapped[str] = mapped_column(String(TOKEN_HASH_LENGTH), unique=True)
    created_at: Mapped[datetime] = _created_at()
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Account(Base):
    """An exchange account of one user; its capital sizes the orders of linked strategies."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = mapped_column(Id, ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    exchange: Mapped[str] = mapped_column(String(NAME_LENGTH))
    capital: Mapped[Money] = mapped_column(MONEY)
    created_at: Mapped[datetime] = _created_at()


class Strategy(Base):
    """A signal source, addressed by webhooks through its unique group name."""

    __tablename__ = "strategies"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    owner_id: Mapped[int] = mapped_column(Id, ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    group_name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    webhook_token_hash: Mapped[str] = mapped_column(String(TOKEN_HASH_LENGTH))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = _created_at()


class StrategyAccount(Base):
    """A link: the strategy's signals trade on the account (and its owner may stream it)."""

    __tablename__ = "strategy_accounts"

    strategy_id: Mapped[int] = mapped_column(
        Id, ForeignKey("strategies.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[int] = mapped_column(
        Id, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Signal(Base):
    """A webhook signal as received; `client_id` is its optional idempotency id."""

    __tablename__ = "signals"
    __table_args__ = (UniqueConstraint("strategy_id", "client_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    strategy_id: Mapped[int] = _cascading_fk("strategies.id")
    client_id: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now, index=True)


class Order(Base):
    """An order placed on one account for one strategy; `user_id` is the account owner."""

    __tablename__ = "orders"
    __table_args__ = (
        _one_of("orders", "side", SIDES),
        _one_of("orders", "order_type", ORDER_TYPES),
        _one_of("orders", "status", ORDER_STATUSES),
        Index("ix_orders_user_strategy", "user_id", "strategy_id"),
        Index("ix_orders_strategy_symbol_status", "strategy_id", "symbol", "status"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    order_id: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    signal_id: Mapped[int | None] = mapped_column(
        Id, ForeignKey("signals.id", ondelete="SET NULL"), index=True
    )
    # The composite indexes below serve the snapshot and open-order lookups.
    account_id: Mapped[int] = _cascading_fk("accounts.id", index=True)
    strategy_id: Mapped[int] = _cascading_fk("strategies.id")
    user_id: Mapped[int] = _cascading_fk("users.id")
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    order_type: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[Money] = mapped_column(MONEY)
    price: Mapped[Money | None] = mapped_column(MONEY)
    stop_price: Mapped[Money | None] = mapped_column(MONEY)
    status: Mapped[str] = mapped_column(String(16))
    filled_quantity: Mapped[Money] = mapped_column(MONEY, default=money.ZERO)
    average_price: Mapped[Money | None] = mapped_column(MONEY)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()


class Position(Base):
    """The net holding of one account in one symbol for one strategy (signed quantity), with its P&L."""

    __tablename__ = "positions"
    __table_args__ = (
        UniqueConstraint("account_id", "strategy_id", "symbol"),
        Index("ix_positions_user_strategy", "user_id", "strategy_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int] = _cascading_fk("accounts.id")
    strategy_id: Mapped[int] = _cascading_fk("strategies.id", index=True)
    user_id: Mapped[int] = _cascading_fk("users.id")
    symbol: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[Money] = mapped_column(MONEY, default=money.ZERO)
    entry_price: Mapped[Money | None] = mapped_column(MONEY)
    realized_pnl: Mapped[Money] = mapped_column(MONEY, default=money.ZERO)
    # The symbol's last known price when the position was last marked (producers/positions.py), and
    # quantity x (mark_price - entry_price) at it; server defaults for rows older than these columns.
    mark_price: Mapped[Money | None] = mapped_column(MONEY)
    unrealized_pnl: Mapped[Money] = mapped_column(MONEY, default=money.ZERO, server_default="0")
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()


INBOX_SIGNAL, INBOX_TICK = "signal", "tick"
INBOX_KINDS = frozenset({INBOX_SIGNAL, INBOX_TICK})
# done: applied (its orders, possibly REJECTED ones); rejected: refused with a reason; failed: it raised.
OUTCOME_DONE, OUTCOME_REJECTED, OUTCOME_FAILED = "done", "rejected", "failed"
INBOX_OUTCOMES = frozenset({OUTCOME_DONE, OUTCOME_REJECTED, OUTCOME_FAILED})


class InboxCommand(Base):
    """A command for the order handler, handled once and in id (arrival) order.

    `body` is the command's wire map as JSON; `signal_id` links a webhook signal
    to its Signal row. Until handled, `handled_at` is null; then `outcome` (and
    for rejected or failed ones `error`) says what became of it.
    """

    __tablename__ = "order_inbox"
    __table_args__ = (
        _one_of("order_inbox", "kind", INBOX_KINDS),
        _one_of("order_inbox", "outcome", INBOX_OUTCOMES),
        _pending_index("order_inbox", "handled_at IS NULL", "id"),
        NEVER_REUSED_IDS,
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    body: Mapped[str] = mapped_column(Text)
    signal_id: Mapped[int | None] = mapped_column(Id, ForeignKey("signals.id", ondelete="CASCADE"), index=True)
    received_at: Mapped[datetime] = _created_at()
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
        _one_of("executions", "side", SIDES),
        _pending_index("executions", "applied_at IS NULL", "id"),
        NEVER_REUSED_IDS,
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    order_id: Mapped[int] = _cascading_fk("orders.id", index=True)
    account_id: Mapped[int] = mapped_column(Id)
    strategy_id: Mapped[int] = mapped_column(Id)
    user_id: Mapped[int] = mapped_column(Id)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[Money] = mapped_column(MONEY)
    price: Mapped[Money] = mapped_column(MONEY)
    executed_at: Mapped[datetime] = _created_at()
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
    created_at: Mapped[datetime] = _created_at()
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failed: Mapped[str | None] = mapped_column(String(ERROR_LENGTH))


class OutboxStream(Base):
    """The stream name of one producer's outbox in this database, made once (CONTRACT §2)."""

    __tablename__ = "outbox_streams"

    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    stream: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    created_at: Mapped[datetime] = _created_at()


class MarketPrice(Base):
    """The last tick's price of a symbol, written with the tick, so a restarted order handler knows it."""

    __tablename__ = "market_prices"

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    price: Mapped[Money] = mapped_column(MONEY)
    updated_at: Mapped[datetime] = _updated_at()
