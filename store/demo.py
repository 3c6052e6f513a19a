"""The demo world of `tradestream-admin demo`: users, accounts and strategies to try the stack with.

alice (an admin) owns btc-trend and eth-swing, bob owns sol-scalp; btc-trend
trades on the accounts of two users, and carol streams eth-swing only through
her account. Running it again reuses the rows and gives new passwords and tokens.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from store import auth, rows
from store.actions import Publish, commit_or_conflict
from store.models import Account, Strategy, StrategyAccount, User

DEMO_USERS = (("alice", True), ("bob", False), ("carol", False))
DEMO_ACCOUNTS = {"alice": Decimal(100_000), "bob": Decimal(50_000), "carol": Decimal(25_000)}
DEMO_STRATEGIES = (
    ("alice", "BTC Trend", "btc-trend", ("alice", "bob")),
    ("alice", "ETH Swing", "eth-swing", ("alice", "carol")),
    ("bob", "SOL Scalp", "sol-scalp", ("bob",)),
)
DEMO_EXCHANGE = "paper"


def demo_password(username: str) -> str:
    """The password `demo` gives a demo user."""
    return f"{username}-demo"


def _demo_user(session: Session, username: str, is_admin: bool) -> tuple[User, str]:
    user = session.scalars(select(User).where(User.username == username)).one_or_none()
    if user is None:
        user = User(username=username)
        session.add(user)
    api_token = auth.new_token()
    user.password_hash = auth.hash_password(demo_password(username))
    user.api_token_hash = auth.token_hash(api_token)
    user.is_admin = is_admin
    return user, api_token


def _demo_account(session: Session, user: User) -> Account:
    name = f"{user.username} paper"
    query = select(Account).where(Account.user_id == user.id, Account.name == name)
    account = session.scalars(query).one_or_none()
    if account is None:
        capital = DEMO_ACCOUNTS[user.username]
        account = Account(user_id=user.id, name=name, exchange=DEMO_EXCHANGE, capital=capital)
        session.add(account)
    return account


def _demo_strategy(
    session: Session, owner: User, name: str, group_name: str
) -> tuple[Strategy, str]:
    query = select(Strategy).where(Strategy.group_name == group_name)
    strategy = session.scalars(query).one_or_none()
    if strategy is None:
        strategy = Strategy(owner_id=owner.id, name=name, group_name=group_name, is_active=True)
        session.add(strategy)
    webhook_token = auth.new_token()
    strategy.webhook_token_hash = auth.token_hash(webhook_token)
    return strategy, webhook_token


def _demo_link(session: Session, strategy: Strategy, account: Account) -> None:
    if session.get(StrategyAccount, (strategy.id, account.id)) is None:
        session.add(StrategyAccount(strategy_id=strategy.id, account_id=account.id))


def demo(session: Session, publish: Publish | None) -> dict[str, Any]:
    """Create (or reuse) the demo users, accounts and strategies; new passwords and tokens."""
    users = {name: _demo_user(session, name, is_admin) for name, is_admin in DEMO_USERS}
    session.flush()
    accounts = {name: _demo_account(session, user) for name, (user, _) in users.items()}
    strategies = []
    for owner, name, group_name, linked in DEMO_STRATEGIES:
        strategy, webhook_token = _demo_strategy(session, users[owner][0], name, group_name)
        session.flush()
        for username in linked:
            _demo_link(session, strategy, accounts[username])
        strategies.append(rows.new_strategy_json(strategy, webhook_token))
    commit_or_conflict(session, "the demo data was changed concurrently; run demo again")
    return {
        "users": [
            rows.demo_user_json(user, demo_password(user.username), api_token)
            for user, api_token in users.values()
        ],
        "strategies": strategies,
        "accounts": [rows.account_json(account) for account in accounts.values()],
    }
