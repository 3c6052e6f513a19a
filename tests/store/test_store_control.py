"""Control messages: which actions publish what, only after the commit, over a real socket.

Absence is proven without waiting: after the action a probe goes through the
same PUSH socket, and PUSH keeps order, so the probe must be the next arrival.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bus.events import CleanupStrategyMessage, ControlMessage, DisconnectMessage
from bus.publisher import Publisher
from bus.topics import MAX_ID
from store import actions, demo
from store.access import can_stream
from store.db import make_session_factory
from store.models import Account, Strategy
from tests.store.conftest import ControlInbox

PROBE = CleanupStrategyMessage(strategy_id=MAX_ID, reason="server_shutdown", message="probe")


def assert_nothing_published(publisher: Publisher, inbox: ControlInbox) -> None:
    """Nothing was published before this call on `publisher`."""
    publisher.publish(PROBE)
    assert inbox.receive() == PROBE


class Shared(NamedTuple):
    """btc-trend (owner alice) linked to alice's account and to bob's two accounts."""

    strategy: Strategy
    alice_main: Account
    bob_main: Account
    bob_spare: Account


@pytest.fixture
def shared(session: Session) -> Shared:
    """btc-trend (owner alice) linked to alice's account and to bob's two accounts."""
    for name in ("alice", "bob"):
        actions.create_user(session, None, name, "pw")
    strategy = actions.create_strategy(session, None, "alice", "BTC Trend", "btc-trend").strategy
    alice_main = actions.create_account(session, None, "alice", "Main", "paper", 1000)
    bob_main = actions.create_account(session, None, "bob", "Main", "paper", 1000)
    bob_spare = actions.create_account(session, None, "bob", "Spare", "paper", 1000)
    for account in (alice_main, bob_main, bob_spare):
        actions.link(session, None, strategy.id, account.id)
    return Shared(strategy, alice_main, bob_main, bob_spare)


def test_unlinking_a_users_last_account_disconnects_that_user(
    session: Session,
    shared: Shared,
    publisher: Publisher,
    control_inbox: ControlInbox,
) -> None:
    strategy, _, bob_main, bob_spare = shared
    assert actions.unlink(session, publisher.publish, strategy.id, bob_main.id) is None
    assert_nothing_published(publisher, control_inbox)
    revoked = actions.unlink(session, publisher.publish, strategy.id, bob_spare.id)
    message = control_inbox.receive()
    assert message == revoked
    assert isinstance(message, DisconnectMessage)
    assert (message.user_id, message.strategy_id) == (bob_main.user_id, strategy.id)
    assert message.reason == "permission_revoked" and "BTC Trend" in message.message


def test_unlinking_the_owners_account_disconnects_nobody(
    session: Session,
    shared: Shared,
    publisher: Publisher,
    control_inbox: ControlInbox,
) -> None:
    strategy, alice_main, _, _ = shared
    assert actions.unlink(session, publisher.publish, strategy.id, alice_main.id) is None
    assert_nothing_published(publisher, control_inbox)


@pytest.mark.parametrize(
    ("action", "reason"),
    [(actions.deactivate, "strategy_inactive"), (actions.delete_strategy, "strategy_deleted")],
)
def test_deactivate_and_delete_clean_up_every_stream_of_the_strategy(
    session: Session,
    shared: Shared,
    publisher: Publisher,
    control_inbox: ControlInbox,
    action: Callable[..., object],
    reason: str,
) -> None:
    strategy = shared.strategy
    action(session, publisher.publish, strategy.id)
    message = control_inbox.receive()
    assert isinstance(message, CleanupStrategyMessage)
    assert (message.strategy_id, message.reason) == (strategy.id, reason)
    assert "BTC Trend" in message.message


def test_activate_link_and_creations_publish_nothing(
    session: Session, publisher: Publisher, control_inbox: ControlInbox
) -> None:
    actions.create_user(session, publisher.publish, "alice", "pw")
    account = actions.create_account(session, publisher.publish, "alice", "Main", "paper", 10)
    new = actions.create_strategy(session, publisher.publish, "alice", "BTC", "btc-trend")
    actions.link(session, publisher.publish, new.strategy.id, account.id)
    actions.activate(session, publisher.publish, new.strategy.id)
    demo.demo(session, publisher.publish)
    assert_nothing_published(publisher, control_inbox)


def test_control_messages_are_published_only_after_the_commit(
    engine: Engine, session: Session, shared: Shared
) -> None:
    strategy, _, bob_main, bob_spare = shared
    seen: list[tuple[ControlMessage, bool, bool]] = []

    def publish(message: ControlMessage) -> None:
        # Another connection, as a streamer would use: it sees only committed state.
        with make_session_factory(engine)() as other:
            bob_can_stream = can_stream(other, bob_main.user_id, strategy.id)
            still_active = other.get_one(Strategy, strategy.id).is_active
        seen.append((message, bob_can_stream, still_active))

    actions.unlink(session, publish, strategy.id, bob_main.id)
    actions.unlink(session, publish, strategy.id, bob_spare.id)
    actions.deactivate(session, publish, strategy.id)
    assert [(type(m), can, active) for m, can, active in seen] == [
        (DisconnectMessage, False, True),
        (CleanupStrategyMessage, False, False),
    ]
