"""Login sessions kept in the database, so that they can be ended before their cookie expires.

A login makes a row of `user_sessions`; the cookie carries a random token
(256 bits, like an API token) and only its sha256 is stored, so a copy of the
table opens no session. A session is valid while its row exists, has not
expired and its user is active: logout deletes its row, a password change and
a deactivation delete every row of the user (store/actions.py). Rows are
bounded per user: a login deletes the user's expired rows and keeps only the
newest MAX_PER_USER - 1 others (a session pushed out this way ends like a logout,
without a control message: its streams end at the streamers' next re-check).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from store import auth
from store.columns import utc_now
from store.models import User, UserSession

SESSION_DAYS = 7
MAX_PER_USER = 50


class NewSession(NamedTuple):
    """A created session and its plain token (for the cookie; only its hash is kept)."""

    row: UserSession
    token: str


def open_session(session: Session, user: User, now: datetime | None = None) -> NewSession:
    """A new session of `user`, committed; the user's expired and oldest sessions beyond the bound go."""
    now = now or utc_now()
    expired = (UserSession.user_id == user.id) & (UserSession.expires_at <= now)
    session.execute(delete(UserSession).where(expired))
    newest = select(UserSession.id).where(UserSession.user_id == user.id).order_by(UserSession.id.desc()).limit(MAX_PER_USER - 1)
    session.execute(delete(UserSession).where(UserSession.user_id == user.id, UserSession.id.not_in(newest)))
    token = auth.new_token()
    row = UserSession(user_id=user.id, token_hash=auth.token_hash(token), created_at=now, expires_at=now + timedelta(days=SESSION_DAYS))
    session.add(row)
    session.commit()
    return NewSession(row, token)


def find_session(session: Session, token: str, now: datetime | None = None) -> tuple[UserSession, User] | None:
    """The live session a cookie's token opens and its (active) user, else None."""
    if not token:
        return None
    query = (
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.token_hash == auth.token_hash(token), UserSession.expires_at > (now or utc_now()), User.is_active)
    )
    found = session.execute(query).first()
    return None if found is None else (found[0], found[1])


def end_session(session: Session, token: str) -> UserSession | None:
    """Delete the session of a cookie's token (committed); the row it was, or None."""
    row = session.scalars(select(UserSession).where(UserSession.token_hash == auth.token_hash(token))).one_or_none()
    if row is not None:
        session.delete(row)
        session.commit()
    return row


def end_sessions_of(session: Session, user_id: int) -> int:
    """Delete every session of the user, uncommitted (the caller's change commits them); how many."""
    result = session.execute(delete(UserSession).where(UserSession.user_id == user_id))
    return int(getattr(result, "rowcount", 0) or 0)


def live_sessions(session: Session, session_ids: set[int]) -> set[int]:
    """Which of these sessions still exist, unexpired, with an active user (the streamers' re-check)."""
    if not session_ids:
        return set()
    query = (
        select(UserSession.id)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.id.in_(session_ids), UserSession.expires_at > utc_now(), User.is_active)
    )
    return set(session.scalars(query))
