"""The one table of disconnect reasons: the contract's seven, each with its text (naming the strategy where there is one)."""

from __future__ import annotations

import pytest

from bus import events, reasons
from bus.errors import InvalidEvent


@pytest.mark.parametrize(
    ("reason", "strategy", "text"),
    [
        ("permission_revoked", "BTC Trend", 'Your access to strategy "BTC Trend" was revoked.'),
        ("strategy_inactive", "BTC Trend", 'Strategy "BTC Trend" was deactivated.'),
        ("strategy_deleted", 4, "Strategy 4 was deleted."),
        ("server_shutdown", "", "The server is shutting down; reconnect to resume."),
        ("session_ended", "", "Your session has ended; log in again."),
        ("user_deactivated", "", "Your user account was deactivated."),
        ("too_many_streams", "", "Too many open streams for this user; close another one first."),
    ],
)
def test_each_reason_has_its_text_naming_the_strategy_by_name_or_id(reason: str, strategy: str | int, text: str) -> None:
    assert reasons.message(reason, strategy) == text


def test_the_reasons_are_the_contracts_and_control_messages_accept_exactly_them() -> None:
    assert {
        "permission_revoked", "strategy_deleted", "strategy_inactive", "server_shutdown", "session_ended", "user_deactivated",
        "too_many_streams",
    } == reasons.DISCONNECT_REASONS
    assert events.DISCONNECT_REASONS == reasons.DISCONNECT_REASONS


@pytest.mark.parametrize("reason", sorted(reasons.DISCONNECT_REASONS))
def test_control_messages_take_every_reason_of_the_table(reason: str) -> None:
    wire = {"kind": "cleanup_strategy", "strategy_id": 4, "reason": reason, "message": reasons.message(reason, 4)}
    assert events.from_wire(wire) == events.CleanupStrategyMessage(4, reason, reasons.message(reason, 4))


def test_a_control_message_with_a_reason_outside_the_table_is_refused() -> None:
    with pytest.raises(InvalidEvent):
        events.from_wire({"kind": "disconnect", "user_id": 1, "strategy_id": 4, "reason": "slow_consumer", "message": "x"})
