"""Rows for tests, inserted directly: no scrypt, ids chosen by the test, known tokens."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.orm import Session

from store import auth
from store.models import Account, Order, Position, Strategy, StrategyAccount, User


def add_user(session: Session, username: str, user_id: int | None = None) -> User:
    """A user whose API token is `token-<username>` and who cannot log in."""
    user = User(
        id=user_id,
        username=username,
        password_hash="!",
        api_token_hash=auth.token_hash(f"token-{username}"),
    )
    session.add(user)
    session.flush()
    return user


def add_account(
    session: Session, user: User, name: str, account_id: int | None = None
) -> Account:
    """A paper account of `user` with 10,000 capital."""
    account = Account(id=account_id, user_id=user.id, name=name, exchange="paper", capital=Decimal(10_000))
    session.add(account)
    session.flush()
    return account


def add_strategy(
    session: Session, owner: User, group_name: str, strategy_id: int | None = None
) -> Strategy:
    """An active strategy whose webhook token is `hook-<group_name>`."""
    strategy = Strategy(
        id=strategy_id,
        owner_id=owner.id,
        name=group_name.title(),
        group_name=group_name,
        webhook_token_hash=auth.token_hash(f"hook-{group_name}"),
    )
    session.add(strategy)
    session.flush()
    return strategy


def add_link(session: Session, strategy: Strategy, account: Account) -> None:
    """Link the account to the strategy."""
    session.add(StrategyAccount(strategy_id=strategy.id, account_id=account.id))
    session.flush()


def add_order(session: Session, strategy: Strategy, account: Account, order_id: str) -> Order:
    """A NEW limit buy of 0.5 BTC/USDT at 90,000 on the account."""
    order = Order(
        order_id=order_id,
        account_id=account.id,
        strategy_id=strategy.id,
        user_id=account.user_id,
        symbol="BTC/USDT",
        side="BUY",
        order_type="LIMIT",
        quantity=Decimal("0.5"),
        price=Decimal("90000.00"),
        status="NEW",
    )
    session.add(order)
    session.flush()
    return order


def add_position(session: Session, strategy: Strategy, account: Account) -> Position:
    """A short position of 2 ETH/USDT entered at 3,000."""
    position = Position(
        account_id=account.id,
        strategy_id=strategy.id,
        user_id=account.user_id,
        symbol="ETH/USDT",
        quantity=Decimal("-2.0"),
        entry_price=Decimal("3000.00"),
    )
    session.add(position)
    session.flush()
    return position
