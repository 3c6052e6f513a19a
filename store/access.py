"""THE access rule, in one place: who may stream which strategy.

User U may stream strategy S iff U owns S, or U owns an account linked to S.
Whether S is active is a separate question (the streamer answers 409 for an
inactive strategy, 403 for no access). Each function is a single query.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, exists, or_, select
from sqlalchemy.orm import Session

from bus.topics import MAX_ID, StreamKey
from store.models import Account, Strategy, StrategyAccount


def _is_id(value: int) -> bool:
    # An out-of-range id cannot name a row, and would overflow a 64-bit column.
    return type(value) is int and 0 < value <= MAX_ID


def _streamable_by(user_id: int) -> ColumnElement[bool]:
    """The condition "this Strategy row is streamable by `user_id`"."""
    linked_account = (
        exists()
        .where(StrategyAccount.strategy_id == Strategy.id)
        .where(StrategyAccount.account_id == Account.id)
        .where(Account.user_id == user_id)
    )
    return or_(Strategy.owner_id == user_id, linked_account)


def can_stream(session: Session, user_id: int, strategy_id: int) -> bool:
    """Whether the user owns the strategy or owns an account linked to it; False if none."""
    if not (_is_id(user_id) and _is_id(strategy_id)):
        return False
    query = select(Strategy.id).where(Strategy.id == strategy_id, _streamable_by(user_id))
    return session.execute(query).first() is not None


def streamable_among(session: Session, user_id: int, strategy_ids: Iterable[int]) -> dict[int, bool]:
    """Of `strategy_ids`, those the user may stream, each with whether it is active (one query)."""
    ids = [s for s in strategy_ids if _is_id(s)]
    if not (_is_id(user_id) and ids):
        return {}
    query = select(Strategy.id, Strategy.is_active).where(Strategy.id.in_(ids), _streamable_by(user_id))
    return {strategy_id: bool(active) for strategy_id, active in session.execute(query)}


def streamable_strategies(session: Session, user_id: int) -> list[Strategy]:
    """Every strategy the user may stream (active or not), by id."""
    if not _is_id(user_id):
        return []
    query = select(Strategy).where(_streamable_by(user_id)).order_by(Strategy.id)
    return list(session.scalars(query))


def stream_keys_of_strategy(session: Session, strategy_id: int) -> list[StreamKey]:
    """The keys (account owner, strategy) of every user with an account linked to it."""
    if not _is_id(strategy_id):
        return []
    query = (
        select(Account.user_id)
        .join(StrategyAccount, StrategyAccount.account_id == Account.id)
        .where(StrategyAccount.strategy_id == strategy_id)
        .distinct()
        .order_by(Account.user_id)
    )
    return [StreamKey(user_id, strategy_id) for user_id in session.scalars(query)]


def linked_accounts(session: Session, strategy_id: int) -> list[Account]:
    """The accounts linked to the strategy (where its signals trade), by id."""
    if not _is_id(strategy_id):
        return []
    query = (
        select(Account)
        .join(StrategyAccount, StrategyAccount.account_id == Account.id)
        .where(StrategyAccount.strategy_id == strategy_id)
        .order_by(Account.id)
    )
    return list(session.scalars(query))
