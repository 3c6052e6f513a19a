"""Login sessions in the database, and the user actions that end them: a real database, a real control socket."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bus.events import EndSessionsMessage
from bus.publisher import Publisher
from store import actions, auth, sessions
from store.columns import utc_now
from store.errors import InvalidInput, NotFound
from store.models import User, UserSession
from tests.store.conftest import ControlInbox
from tests.store.test_store_control import assert_nothing_published


@pytest.fixture
def alice(session: Session) -> User:
    return actions.create_user(session, None, "alice", "old-pw").user


def _rows(session: Session, user: User) -> int:
    return session.scalar(select(func.count()).select_from(UserSession).where(UserSession.user_id == user.id)) or 0


def test_a_session_is_found_by_its_token_and_only_its_hash_is_stored(session: Session, alice: User) -> None:
    new = sessions.open_session(session, alice)
    found = sessions.find_session(session, new.token)
    assert found is not None and found[0].id == new.row.id and found[1].id == alice.id
    stored = session.scalars(select(UserSession.token_hash)).all()
    assert stored == [auth.token_hash(new.token)] and new.token not in stored
    assert sessions.find_session(session, new.token + "x") is None
    assert sessions.find_session(session, "") is None


def test_an_expired_session_or_one_of_a_deactivated_user_opens_nothing(session: Session, alice: User) -> None:
    new = sessions.open_session(session, alice, now=utc_now() - timedelta(days=sessions.SESSION_DAYS, seconds=1))
    assert sessions.find_session(session, new.token) is None
    live = sessions.open_session(session, alice)
    assert _rows(session, alice) == 1  # the expired row went at this login
    assert sessions.live_sessions(session, {live.row.id, new.row.id, 999}) == {live.row.id}
    actions.deactivate_user(session, None, "alice")
    assert sessions.find_session(session, live.token) is None and _rows(session, alice) == 0


def test_a_user_keeps_at_most_the_bound_of_sessions_the_oldest_going_first(session: Session, alice: User) -> None:
    made = [sessions.open_session(session, alice) for _ in range(sessions.MAX_PER_USER + 2)]
    assert _rows(session, alice) == sessions.MAX_PER_USER
    assert sessions.find_session(session, made[0].token) is None and sessions.find_session(session, made[1].token) is None
    assert sessions.find_session(session, made[2].token) is not None and sessions.find_session(session, made[-1].token) is not None


def test_logout_ends_one_session_and_publishes_it_after_the_commit(
    session: Session, alice: User, publisher: Publisher, control_inbox: ControlInbox
) -> None:
    first, second = sessions.open_session(session, alice), sessions.open_session(session, alice)
    ended = actions.end_session(session, publisher.publish, first.token)
    assert control_inbox.receive() == ended
    assert ended == EndSessionsMessage(
        user_id=alice.id, session_id=first.row.id, reason="session_ended", message="Your session has ended; log in again."
    )
    assert sessions.find_session(session, first.token) is None and sessions.find_session(session, second.token) is not None
    assert actions.end_session(session, publisher.publish, first.token) is None  # twice: nothing to end
    assert_nothing_published(publisher, control_inbox)


def test_a_password_change_ends_every_session_but_keeps_the_api_token(
    session: Session, publisher: Publisher, control_inbox: ControlInbox
) -> None:
    user, token = actions.create_user(session, None, "alice", "old-pw")
    tokens = [sessions.open_session(session, user).token for _ in range(2)]
    actions.set_password(session, publisher.publish, "alice", "new-pw")
    message = control_inbox.receive()
    assert message == EndSessionsMessage(user_id=user.id, reason="session_ended", message="Your session has ended; log in again.")
    assert all(sessions.find_session(session, t) is None for t in tokens)
    assert auth.authenticate(session, "alice", "old-pw") is None and auth.authenticate(session, "alice", "new-pw") is not None
    assert auth.user_for_api_token(session, token) is not None


def test_a_deactivated_user_cannot_log_in_or_use_the_api_token_until_activated(
    session: Session, publisher: Publisher, control_inbox: ControlInbox
) -> None:
    user, token = actions.create_user(session, None, "alice", "pw")
    actions.deactivate_user(session, publisher.publish, "alice")
    message = control_inbox.receive()
    assert isinstance(message, EndSessionsMessage)
    assert (message.user_id, message.session_id, message.api_token, message.reason) == (user.id, None, True, "user_deactivated")
    assert auth.authenticate(session, "alice", "pw") is None and auth.user_for_api_token(session, token) is None
    actions.activate_user(session, publisher.publish, "alice")
    assert_nothing_published(publisher, control_inbox)
    assert auth.authenticate(session, "alice", "pw") is not None and auth.user_for_api_token(session, token) is not None


@pytest.mark.parametrize(
    ("action", "error"),
    [
        (lambda s: actions.set_password(s, None, "nobody", "pw"), NotFound),
        (lambda s: actions.set_password(s, None, "alice", ""), InvalidInput),
        (lambda s: actions.deactivate_user(s, None, "nobody"), NotFound),
        (lambda s: actions.activate_user(s, None, "nobody"), NotFound),
    ],
)
def test_user_actions_refuse_unknown_users_and_empty_passwords(
    session: Session, alice: User, action: Callable[[Session], object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        action(session)
