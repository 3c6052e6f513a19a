"""store/models.py of the releases whose schema is revision 0001 (a frozen copy: see __init__.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from bus.events import ORDER_STATUSES, ORDER_TYPES, SIDES

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")
NAME_LENGTH = 64
TOKEN_HASH_LENGTH = 64  # sha256 hex


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


def _one_of(table: str, column: str, choices: frozenset[str]) -> CheckConstraint:
    allowed = ", ".join(f"'{choice}'" for choice in sorted(choices))
    return CheckConstraint(f"{column} IN ({allowed})", name=f"ck_{table}_{column}")


def _created_at() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), default=utc_now)


def _updated_at() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), default=utc_now, onupdate=utc_now)


def _cascading_fk(target: str, *, index: bool = False) -> Mapped[Any]:
    return mapped_column(Id, ForeignKey(target, ondelete="CASCADE"), index=index)


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
    created_at: Mapped[datetime] = _created_at()


class Account(Base):
    """An exchange account of one user; its capital sizes the orders of linked strategies."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = mapped_column(Id, ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    exchange: Mapped[str] = mapped_column(String(NAME_LENGTH))
    capital: Mapped[float] = mapped_column(Float)
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
    quantity: Mapped[float] = mapped_column(Float)
    price: Mapped[float | None] = mapped_column(Float)
    stop_price: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    filled_quantity: Mapped[float] = mapped_column(Float, default=0.0)
    average_price: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()


class Position(Base):
    """The net holding of one account in one symbol for one strategy (signed quantity)."""

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
    quantity: Mapped[float] = mapped_column(Float, default=0.0)
    entry_price: Mapped[float | None] = mapped_column(Float)
    realized_pnl: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()
