"""The streamer's database reads, each a plain function of a Session, run in an executor.

`Database.run(fn, *args)` opens a session in a worker thread, calls `fn` and
closes it: the IOLoop never waits for SQL. A database that went away raises
store.errors.DatabaseUnavailable (answered 503, never 500) and marks the
database down for readiness (`Database.probe`, web/health.py). The access rule
itself stays in store.access; this module only asks it, and shapes the answers
the HTTP layer needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bus import reasons
from bus.topics import StreamKey
from store import auth, health, ledger, rows, sessions
from store.access import can_stream, streamable_among, streamable_strategies
from store.db import make_engine, make_session_factory
from store.models import Account, Order, Position, Strategy, User
from web.health import Probe

T = TypeVar("T")
# A snapshot is for a screen: the newest orders only (open ones are usually among them).
MAX_SNAPSHOT_ORDERS = 1000
FORBIDDEN, INACTIVE = "forbidden", "inactive"


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is asking: a user, detached from any session; `session_id` when by login session (else an API token)."""

    id: int
    username: str
    is_admin: bool
    session_id: int | None = None


class Database:
    """An engine, its sessions, the small thread pool they run in, and whether the database answers."""

    def __init__(self, url: str, threads: int) -> None:
        self.engine: Engine = make_engine(url)
        self.sessions: sessionmaker[Session] = make_session_factory(self.engine)
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="database")
        self.probe = Probe("database", lambda: health.ping(self.engine))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(session, *args)` in a worker thread, with a session of its own; DatabaseUnavailable if it is gone."""
        return await self.run_in(self.executor, fn, *args)

    async def run_in(self, executor: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        """`run` in another pool (the login threads)."""
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(executor, self._in_session, fn, args)
        except SQLAlchemyError as exc:
            if not health.unavailable(exc):
                raise
            self.probe.failed(health.describe(exc))
            raise health.as_unavailable(exc) from None
        self.probe.succeeded()
        return result

    def _in_session(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with self.sessions() as session:
            return fn(session, *args)

    def close(self) -> None:
        """Wait for running queries, then release the connections."""
        self.probe.stop()
        self.executor.shutdown(wait=True)
        self.engine.dispose()


def _viewer(user: User | None, session_id: int | None = None) -> Viewer | None:
    return None if user is None else Viewer(user.id, user.username, user.is_admin, session_id)


def viewer_by_session(session: Session, token: str) -> Viewer | None:
    """The user of a session cookie's token, while the session lives and the user is active."""
    found = sessions.find_session(session, token)
    return None if found is None else _viewer(found[1], found[0].id)


def viewer_by_token(session: Session, token: str) -> Viewer | None:
    """The holder of an API token (an active user)."""
    return _viewer(auth.user_for_api_token(session, token))


def login(session: Session, username: str, password: str) -> tuple[Viewer, str] | None:
    """The user these credentials belong to, with a new session's token for the cookie (slow on purpose: scrypt)."""
    user = auth.authenticate(session, username, password)
    if user is None:
        return None
    new = sessions.open_session(session, user)
    return Viewer(user.id, user.username, user.is_admin, new.row.id), new.token


def ended_credentials(session: Session, session_ids: set[int], user_ids: set[int]) -> tuple[set[int], set[int]]:
    """Of these, the sessions that no longer live and the users no longer active (the re-check)."""
    inactive = set(session.scalars(select(User.id).where(User.id.in_(user_ids), ~User.is_active))) if user_ids else set()
    return session_ids - sessions.live_sessions(session, session_ids), inactive


def stream_refusal(session: Session, user_id: int, strategy_id: int) -> str | None:
    """None if the user may stream the strategy now; FORBIDDEN (also: no such strategy) or INACTIVE."""
    strategy = session.get(Strategy, strategy_id)
    if strategy is None or not can_stream(session, user_id, strategy_id):
        return FORBIDDEN
    return None if strategy.is_active else INACTIVE


def stream_refusals(session: Session, keys: Iterable[StreamKey]) -> dict[StreamKey, str | None]:
    """`stream_refusal` of many keys at once: one query per distinct user."""
    by_user: dict[int, list[int]] = {}
    for key in keys:
        by_user.setdefault(key.user_id, []).append(key.strategy_id)
    answers: dict[StreamKey, str | None] = {}
    for user_id, strategy_ids in by_user.items():
        allowed = streamable_among(session, user_id, strategy_ids)
        for strategy_id in strategy_ids:
            active = allowed.get(strategy_id)
            answers[StreamKey(user_id, strategy_id)] = FORBIDDEN if active is None else None if active else INACTIVE
    return answers


def may_read(session: Session, user_id: int, strategy_id: int) -> bool:
    """Whether the user may read the strategy's snapshots (active or not)."""
    return can_stream(session, user_id, strategy_id)


def revoked_keys(session: Session, keys: Iterable[StreamKey]) -> dict[StreamKey, str]:
    """The keys whose stream must end, with the reason; one query per distinct user (+1 per loss)."""
    by_user: dict[int, list[int]] = {}
    for key in keys:
        by_user.setdefault(key.user_id, []).append(key.strategy_id)
    verdicts: dict[StreamKey, str] = {}
    for user_id, strategy_ids in by_user.items():
        allowed = {s.id: s.is_active for s in streamable_strategies(session, user_id)}
        for strategy_id in strategy_ids:
            if strategy_id not in allowed:
                exists = session.get(Strategy, strategy_id) is not None
                verdicts[StreamKey(user_id, strategy_id)] = reasons.PERMISSION_REVOKED if exists else reasons.STRATEGY_DELETED
            elif not allowed[strategy_id]:
                verdicts[StreamKey(user_id, strategy_id)] = reasons.STRATEGY_INACTIVE
    return verdicts


def strategies_of(session: Session, user_id: int) -> list[dict[str, Any]]:
    """`GET /api/strategies`: what the user may stream."""
    return [rows.strategy_json(s) for s in streamable_strategies(session, user_id)]


@dataclass(frozen=True, slots=True)
class OrderPage:
    """Orders of one key, oldest first, and whether older ones exist."""

    orders: list[dict[str, Any]]
    has_more: bool


def orders_of(session: Session, user_id: int, strategy_id: int) -> list[dict[str, Any]]:
    """`GET /api/orders`: the user's newest orders in the strategy, oldest first."""
    page = order_page(session, user_id, strategy_id, MAX_SNAPSHOT_ORDERS, None)
    assert page is not None  # no cursor, nothing it could fail to find
    return page.orders


def order_page(session: Session, user_id: int, strategy_id: int, limit: int, before: str | None) -> OrderPage | None:
    """The newest `limit` orders of the key created before the order `before` (or the newest of all).

    Creation order is the row id, so a page never skips or repeats an order
    whatever changes meanwhile. None when `before` names no order of this key.
    """
    where = [Order.user_id == user_id, Order.strategy_id == strategy_id]
    if before is not None:
        cursor = session.scalar(select(Order.id).where(Order.order_id == before, *where))
        if cursor is None:
            return None
        where.append(Order.id < cursor)
    query = (
        select(Order, Account)
        .join(Account, Account.id == Order.account_id)
        .where(*where)
        .order_by(Order.id.desc())
        .limit(limit + 1)  # one more than asked: whether older ones exist
    )
    found = session.execute(query).all()
    newest = found[:limit]
    return OrderPage([rows.order_snapshot(order, account) for order, account in reversed(newest)], len(found) > limit)


def positions_of(session: Session, user_id: int, strategy_id: int) -> list[dict[str, Any]]:
    """`GET /api/positions`: the user's positions in the strategy."""
    query = (
        select(Position, Account)
        .join(Account, Account.id == Position.account_id)
        .where(Position.user_id == user_id, Position.strategy_id == strategy_id)
        .order_by(Position.id)
    )
    found = session.execute(query).all()
    accounts = {account.id: account for _, account in found}  # one equity query per account, not per row
    equities = {account_id: ledger.equity(session, account, strategy_id) for account_id, account in accounts.items()}
    return [rows.position_snapshot(position, account, equities[account.id]) for position, account in found]
