"""Admin actions, shared by `tradestream-admin` and the streamer's admin REST endpoints.

Each action checks its input, changes the database, commits, and only THEN
publishes its control message, so a streamer that re-checks access on receipt
already sees the new state (and a message lost on the way is caught by the
streamers' periodic re-check). Every action takes `publish` so that callers
wire them all alike; `None` publishes nothing. Errors are store.errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bus import decimals, reasons
from bus.events import CleanupStrategyMessage, ControlMessage, DisconnectMessage, EndSessionsMessage
from bus.topics import MAX_ID
from store import auth, money, sessions
from store.access import can_stream
from store.columns import NAME_LENGTH, Base
from store.errors import Conflict, InvalidInput, NotFound
from store.models import Account, Strategy, StrategyAccount, User

Publish = Callable[[ControlMessage], None]
Row = TypeVar("Row", bound=Base)
MAX_PASSWORD_LENGTH = 1024
_WIRE_STEP = Decimal(1).scaleb(-decimals.MAX_FRACTION_DIGITS)
# Usernames and group names appear in URLs, webhooks and logs: keep them plain.
_HANDLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*\Z")


class NewUser(NamedTuple):
    """A created user and its plain API token (shown once, only its hash is kept)."""

    user: User
    api_token: str


class NewStrategy(NamedTuple):
    """A created strategy and its plain webhook token (shown once, only its hash is kept)."""

    strategy: Strategy
    webhook_token: str


def _handle(what: str, value: str) -> str:
    if not (0 < len(value) <= NAME_LENGTH and _HANDLE.match(value)):
        raise InvalidInput(
            f"{what} {value!r:.80}: use 1 to {NAME_LENGTH} letters, digits, '.', '_', '@' or '-'"
        )
    return value


def _label(what: str, value: str) -> str:
    if not (0 < len(value) <= NAME_LENGTH and value.isprintable() and value == value.strip()):
        raise InvalidInput(
            f"{what} {value!r:.80}: expected 1 to {NAME_LENGTH} printable characters,"
            " without surrounding spaces"
        )
    return value


def checked_capital(value: Decimal | int | float | str) -> Decimal:
    """An exact amount (a JSON number's or a flag's digits, a decimal string), > 0, < 10^21, at most 24 decimals."""
    try:
        capital = money.exact(value) if type(value) in (Decimal, int, float, str) else None
    except InvalidOperation:
        capital = None
    # The value as its sender wrote it ('-5', not Decimal('-5')): this line reaches users of the CLI and the API.
    shown = repr(value) if isinstance(value, str) else str(value)
    if capital is None or not capital.is_finite() or capital <= 0:
        raise InvalidInput(f"capital: expected a finite number greater than 0, got {shown:.40}")
    if capital.adjusted() > 20:
        raise InvalidInput(f"capital: expected less than 10^21, got {shown:.40}")
    if capital.as_tuple().exponent < -decimals.MAX_FRACTION_DIGITS:  # type: ignore[operator]  # finite: an int
        # The account's equity (capital + P&L) goes on the wire, which carries at most that many decimals,
        # and keeps the capital's. Zeros beyond them go; any other digit is refused. Exactly: normalize()
        # in an 80-digit context rounded 1.(100 zeros)1 to 1 and kept 5.(30 zeros) as written.
        on_wire = capital.quantize(_WIRE_STEP, context=money.CONTEXT)  # |capital| < 10^21: at most 45 digits
        if on_wire != capital:
            raise InvalidInput(f"capital: expected at most {decimals.MAX_FRACTION_DIGITS} decimals, got {shown:.40}")
        capital = on_wire
    return capital


def _password(value: str) -> str:
    if not 0 < len(value) <= MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"password: expected 1 to {MAX_PASSWORD_LENGTH} characters")
    return value


def _get(session: Session, model: type[Row], row_id: int, what: str) -> Row:
    row = session.get(model, row_id) if type(row_id) is int and 0 < row_id <= MAX_ID else None
    if row is None:
        raise NotFound(f"no {what} with id {row_id}")
    return row


def user_named(session: Session, username: str) -> User:
    """The user called `username`; NotFound otherwise."""
    user = session.scalars(select(User).where(User.username == username)).one_or_none()
    if user is None:
        raise NotFound(f"no user named {username!r:.80}")
    return user


def _refuse_duplicate(session: Session, query: Select[Any], conflict: str) -> str:
    """Raise Conflict when `query` finds a row; return the message for the commit's check."""
    if session.execute(query).first() is not None:
        raise Conflict(conflict)
    return conflict


def commit_or_conflict(session: Session, conflict: str) -> None:
    """Commit; a unique constraint hit by a concurrent writer becomes Conflict."""
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(conflict) from None


def _announce(publish: Publish | None, message: ControlMessage) -> None:
    if publish is not None:
        publish(message)


def create_user(
    session: Session, publish: Publish | None, username: str, password: str, is_admin: bool = False
) -> NewUser:
    """Create a user with a fresh API token; Conflict if the name is taken."""
    _handle("username", username)
    _password(password)
    query = select(User.id).where(User.username == username)
    taken = _refuse_duplicate(session, query, f"user {username!r} already exists")
    api_token = auth.new_token()
    user = User(
        username=username,
        password_hash=auth.hash_password(password),
        is_admin=is_admin,
        api_token_hash=auth.token_hash(api_token),
    )
    session.add(user)
    commit_or_conflict(session, taken)
    return NewUser(user, api_token)


def end_session(session: Session, publish: Publish | None, token: str) -> EndSessionsMessage | None:
    """Log out: delete the session of a cookie's token and end its streams; None if there was none."""
    row = sessions.end_session(session, token)
    if row is None:
        return None
    text = reasons.message(reasons.SESSION_ENDED)
    message = EndSessionsMessage(user_id=row.user_id, session_id=row.id, reason=reasons.SESSION_ENDED, message=text)
    _announce(publish, message)
    return message


def set_password(session: Session, publish: Publish | None, username: str, password: str) -> User:
    """Give the user a new password; every session of theirs ends, and the streams opened with them."""
    _password(password)
    user = user_named(session, username)
    user.password_hash = auth.hash_password(password)
    sessions.end_sessions_of(session, user.id)
    session.commit()
    text = reasons.message(reasons.SESSION_ENDED)
    _announce(publish, EndSessionsMessage(user_id=user.id, reason=reasons.SESSION_ENDED, message=text))
    return user


def deactivate_user(session: Session, publish: Publish | None, username: str) -> User:
    """Refuse the user's logins and API token; every session and stream of theirs ends."""
    user = user_named(session, username)
    user.is_active = False
    sessions.end_sessions_of(session, user.id)
    session.commit()
    text = reasons.message(reasons.USER_DEACTIVATED)
    _announce(publish, EndSessionsMessage(user_id=user.id, api_token=True, reason=reasons.USER_DEACTIVATED, message=text))
    return user


def activate_user(session: Session, publish: Publish | None, username: str) -> User:
    """Let the user log in and use the API token again."""
    user = user_named(session, username)
    user.is_active = True
    session.commit()
    return user


def create_account(
    session: Session,
    publish: Publish | None,
    username: str,
    name: str,
    exchange: str,
    capital: Decimal | int | float | str,
) -> Account:
    """Create an account of the named user; Conflict if that user has one of that name."""
    _label("account name", name)
    _label("exchange", exchange)
    capital = checked_capital(capital)
    user = user_named(session, username)
    query = select(Account.id).where(Account.user_id == user.id, Account.name == name)
    taken = _refuse_duplicate(session, query, f"{username!r} already has an account named {name!r}")
    account = Account(user_id=user.id, name=name, exchange=exchange, capital=capital)
    session.add(account)
    commit_or_conflict(session, taken)
    return account


def create_strategy(
    session: Session, publish: Publish | None, owner_username: str, name: str, group_name: str
) -> NewStrategy:
    """Create an active strategy with a fresh webhook token; Conflict if the group is taken."""
    _label("strategy name", name)
    _handle("group name", group_name)
    owner = user_named(session, owner_username)
    query = select(Strategy.id).where(Strategy.group_name == group_name)
    taken = _refuse_duplicate(session, query, f"group name {group_name!r} is already taken")
    webhook_token = auth.new_token()
    strategy = Strategy(
        owner_id=owner.id,
        name=name,
        group_name=group_name,
        webhook_token_hash=auth.token_hash(webhook_token),
        is_active=True,
    )
    session.add(strategy)
    commit_or_conflict(session, taken)
    return NewStrategy(strategy, webhook_token)


def link(
    session: Session, publish: Publish | None, strategy_id: int, account_id: int
) -> StrategyAccount:
    """Trade the strategy's signals on the account (its owner may then stream the strategy)."""
    _get(session, Strategy, strategy_id, "strategy")
    _get(session, Account, account_id, "account")
    taken = f"account {account_id} is already linked to strategy {strategy_id}"
    if session.get(StrategyAccount, (strategy_id, account_id)) is not None:
        raise Conflict(taken)
    strategy_account = StrategyAccount(strategy_id=strategy_id, account_id=account_id)
    session.add(strategy_account)
    commit_or_conflict(session, taken)
    return strategy_account


def unlink(
    session: Session, publish: Publish | None, strategy_id: int, account_id: int
) -> DisconnectMessage | None:
    """Remove a link; if the account owner lost access, disconnect their streams of it."""
    strategy = _get(session, Strategy, strategy_id, "strategy")
    account = _get(session, Account, account_id, "account")
    strategy_account = session.get(StrategyAccount, (strategy_id, account_id))
    if strategy_account is None:
        raise NotFound(f"account {account_id} is not linked to strategy {strategy_id}")
    owner_id, text = account.user_id, reasons.message(reasons.PERMISSION_REVOKED, strategy.name)
    session.delete(strategy_account)
    session.commit()
    if can_stream(session, owner_id, strategy_id):
        return None
    message = DisconnectMessage(owner_id, strategy_id, reasons.PERMISSION_REVOKED, text)
    _announce(publish, message)
    return message


def deactivate(session: Session, publish: Publish | None, strategy_id: int) -> Strategy:
    """Stop the strategy: webhooks are refused and every stream of it is closed."""
    strategy = _get(session, Strategy, strategy_id, "strategy")
    strategy.is_active = False
    session.commit()
    message = reasons.message(reasons.STRATEGY_INACTIVE, strategy.name)
    _announce(publish, CleanupStrategyMessage(strategy_id, reasons.STRATEGY_INACTIVE, message))
    return strategy


def activate(session: Session, publish: Publish | None, strategy_id: int) -> Strategy:
    """Make the strategy accept webhooks and streams again."""
    strategy = _get(session, Strategy, strategy_id, "strategy")
    strategy.is_active = True
    session.commit()
    return strategy


def delete_strategy(session: Session, publish: Publish | None, strategy_id: int) -> None:
    """Delete the strategy with its links, signals, orders and positions; close its streams."""
    strategy = _get(session, Strategy, strategy_id, "strategy")
    message = reasons.message(reasons.STRATEGY_DELETED, strategy.name)
    session.delete(strategy)
    session.commit()
    _announce(publish, CleanupStrategyMessage(strategy_id, reasons.STRATEGY_DELETED, message))
