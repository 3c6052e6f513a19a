"""The domain's tables, as SQLAlchemy 2.0 typed declarative models.

Users and their login sessions, accounts, strategies and the links between them,
webhook signals, orders, positions and the market's last prices. Deleting a
strategy or an account deletes its links, orders and positions in the database
itself (ON DELETE CASCADE). The column types are in store/columns.py; the tables
through which the processes hand work to each other in store/handoff.py.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint, true
from sqlalchemy.orm import Mapped, mapped_column

from bus.events import ORDER_STATUSES, ORDER_TYPES, SIDES
from store import money
from store.columns import (
    MONEY,
    NAME_LENGTH,
    Base,
    Id,
    Money,
    UTCDateTime,
    cascading_fk,
    check_one_of,
    created_time,
    updated_time,
    utc_now,
)

TOKEN_HASH_LENGTH = 64  # sha256 hex


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
    created_at: Mapped[datetime] = created_time()


class UserSession(Base):
    """A login session: the cookie carries a random token, only its sha256 is kept (store/sessions.py)."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = cascading_fk("users.id", index=True)
    token_hash: Mapped[str] = mapped_column(String(TOKEN_HASH_LENGTH), unique=True)
    created_at: Mapped[datetime] = created_time()
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
    created_at: Mapped[datetime] = created_time()


class Strategy(Base):
    """A signal source, addressed by webhooks through its unique group name."""

    __tablename__ = "strategies"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    owner_id: Mapped[int] = mapped_column(Id, ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    group_name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    webhook_token_hash: Mapped[str] = mapped_column(String(TOKEN_HASH_LENGTH))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = created_time()


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
    strategy_id: Mapped[int] = cascading_fk("strategies.id")
    client_id: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now, index=True)


class Order(Base):
    """An order placed on one account for one strategy; `user_id` is the account owner."""

    __tablename__ = "orders"
    __table_args__ = (
        check_one_of("orders", "side", SIDES),
        check_one_of("orders", "order_type", ORDER_TYPES),
        check_one_of("orders", "status", ORDER_STATUSES),
        Index("ix_orders_user_strategy", "user_id", "strategy_id"),
        Index("ix_orders_strategy_symbol_status", "strategy_id", "symbol", "status"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    order_id: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    signal_id: Mapped[int | None] = mapped_column(
        Id, ForeignKey("signals.id", ondelete="SET NULL"), index=True
    )
    # The composite indexes below serve the snapshot and open-order lookups.
    account_id: Mapped[int] = cascading_fk("accounts.id", index=True)
    strategy_id: Mapped[int] = cascading_fk("strategies.id")
    user_id: Mapped[int] = cascading_fk("users.id")
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    order_type: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[Money] = mapped_column(MONEY)
    price: Mapped[Money | None] = mapped_column(MONEY)
    stop_price: Mapped[Money | None] = mapped_column(MONEY)
    status: Mapped[str] = mapped_column(String(16))
    filled_quantity: Mapped[Money] = mapped_column(MONEY, default=money.ZERO)
    average_price: Mapped[Money | None] = mapped_column(MONEY)
    created_at: Mapped[datetime] = created_time()
    updated_at: Mapped[datetime] = updated_time()


class Position(Base):
    """The net holding of one account in one symbol for one strategy (signed quantity), with its P&L."""

    __tablename__ = "positions"
    __table_args__ = (
        UniqueConstraint("account_id", "strategy_id", "symbol"),
        Index("ix_positions_user_strategy", "user_id", "strategy_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int] = cascading_fk("accounts.id")
    strategy_id: Mapped[int] = cascading_fk("strategies.id", index=True)
    user_id: Mapped[int] = cascading_fk("users.id")
    symbol: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[Money] = mapped_column(MONEY, default=money.ZERO)
    entry_price: Mapped[Money | None] = mapped_column(MONEY)
    realized_pnl: Mapped[Money] = mapped_column(MONEY, default=money.ZERO)
    # The symbol's last known price when the position was last marked (producers/positions.py), and
    # quantity x (mark_price - entry_price) at it; server defaults for rows older than these columns.
    mark_price: Mapped[Money | None] = mapped_column(MONEY)
    unrealized_pnl: Mapped[Money] = mapped_column(MONEY, default=money.ZERO, server_default="0")
    created_at: Mapped[datetime] = created_time()
    updated_at: Mapped[datetime] = updated_time()


class MarketPrice(Base):
    """The last tick's price of a symbol, written with the tick, so a restarted order handler knows it."""

    __tablename__ = "market_prices"

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    price: Mapped[Money] = mapped_column(MONEY)
    updated_at: Mapped[datetime] = updated_time()
