"""Rows → what leaves the process: bus events, snapshot rows and admin JSON maps.

The producers build their events here and the streamer its snapshot rows, so an
order looks the same in `order_update` and in `GET /api/orders` (CONTRACT §4).
The `*_json` functions are the JSON shapes of the admin CLI and the admin REST
endpoints (CONTRACT §6).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from bus import decimals, events
from store.columns import utc_now
from store.models import Account, Order, Position, Strategy, User

SNAPSHOT_OMITS = ("kind", "event_type")
# An order's snapshot row is its state; the fill an order_filled reports is not part of it.
ORDER_SNAPSHOT_OMITS = (*SNAPSHOT_OMITS, "fill_quantity", "fill_price")


_number = decimals.optional_text  # quantities, prices and money leave as decimal strings (CONTRACT §4)


def _timestamp(moment: datetime | None) -> str:
    # A row not flushed yet has no updated_at; it is being written now.
    return events.format_timestamp(moment or utc_now())


def account_ref(account: Account, equity: Decimal | None = None) -> events.Account:
    """The `account` field of order events, and with the account's equity of position events."""
    return events.Account(
        account_id=account.id, name=account.name, exchange=account.exchange, equity=_number(equity)
    )


def order_event(
    order: Order,
    account: Account,
    event_type: str,
    *,
    suppress_toast: bool = False,
    fill_quantity: Decimal | None = None,
    fill_price: Decimal | None = None,
) -> events.OrderEvent:
    """The `order_update` event of an order, in full; an `order_filled` also names its fill's size and price."""
    return events.OrderEvent(
        event_type=event_type,
        order_id=order.order_id,
        symbol=order.symbol,
        strategy_id=order.strategy_id,
        user_id=order.user_id,
        side=order.side,
        quantity=decimals.text(order.quantity),
        price=_number(order.price),
        status=order.status,
        timestamp=_timestamp(order.updated_at),
        order_type=order.order_type,
        stop_price=_number(order.stop_price),
        account=account_ref(account),
        suppress_toast=suppress_toast,
        filled_quantity=_number(order.filled_quantity),
        average_price=_number(order.average_price),
        fill_quantity=_number(fill_quantity),
        fill_price=_number(fill_price),
    )


def position_event(
    position: Position, account: Account, event_type: str, previous_quantity: Decimal | None, equity: Decimal
) -> events.PositionEvent:
    """The `position_update` event of a position that was `previous_quantity` before (store/ledger.py's equity)."""
    return events.PositionEvent(
        event_type=event_type,
        position_id=position.id,
        symbol=position.symbol,
        strategy_id=position.strategy_id,
        user_id=position.user_id,
        quantity=decimals.text(position.quantity),
        entry_price=_number(position.entry_price),
        timestamp=_timestamp(position.updated_at),
        previous_quantity=_number(previous_quantity),
        account=account_ref(account, equity),
        account_name=account.name,
        exchange=account.exchange,
        realized_pnl=decimals.text(position.realized_pnl),
        unrealized_pnl=decimals.text(position.unrealized_pnl),
        mark_price=_number(position.mark_price),
    )


def _snapshot(event: events.WireMessage, omits: tuple[str, ...] = SNAPSHOT_OMITS) -> dict[str, Any]:
    wire = event.to_wire()
    for key in omits:
        del wire[key]
    return wire


def order_snapshot(order: Order, account: Account) -> dict[str, Any]:
    """A row of `GET /api/orders`: the order's event fields without kind, event_type and the fill's."""
    return _snapshot(order_event(order, account, "order_updated"), ORDER_SNAPSHOT_OMITS)


def position_snapshot(position: Position, account: Account, equity: Decimal) -> dict[str, Any]:
    """A row of `GET /api/positions` (its previous_quantity is null)."""
    return _snapshot(position_event(position, account, "position_updated", None, equity))


def user_json(user: User, api_token: str) -> dict[str, Any]:
    """`create-user` output: the API token is only known right after it was made."""
    return {
        "id": user.id,
        "username": user.username,
        "is_admin": user.is_admin,
        "api_token": api_token,
    }


def user_state_json(user: User) -> dict[str, Any]:
    """`set-password`, `deactivate-user`, `activate-user` output: the user, no secret."""
    return {"id": user.id, "username": user.username, "is_admin": user.is_admin, "is_active": user.is_active}


def demo_user_json(user: User, password: str, api_token: str) -> dict[str, Any]:
    """A user of the `demo` output, with the logins to try."""
    return {"id": user.id, "username": user.username, "password": password, "api_token": api_token}


def account_json(account: Account) -> dict[str, Any]:
    """`create-account` output and an account of the `demo` output."""
    return {
        "id": account.id,
        "user_id": account.user_id,
        "name": account.name,
        "exchange": account.exchange,
        "capital": decimals.text(account.capital),
    }


def strategy_json(strategy: Strategy) -> dict[str, Any]:
    """A strategy of `GET /api/strategies` (no secret in it)."""
    return {
        "id": strategy.id,
        "name": strategy.name,
        "group_name": strategy.group_name,
        "is_active": strategy.is_active,
        "owner_id": strategy.owner_id,
    }


def new_strategy_json(strategy: Strategy, webhook_token: str) -> dict[str, Any]:
    """`create-strategy` output and a strategy of the `demo` output, with its webhook token."""
    return {**strategy_json(strategy), "webhook_token": webhook_token}


def link_json(strategy_id: int, account_id: int) -> dict[str, Any]:
    """`link` and `unlink` output."""
    return {"strategy_id": strategy_id, "account_id": account_id}
