"""Webhook payload validation (CONTRACT §5), pure: no I/O, no clock.

The webhook checks in the contract's order (body size, JSON, shape, group,
token, strategy active, fields); this module does the three that need no
database: `parse_json` (web/jsonbody.py's strict reading: no duplicate key, bounded
depth and numbers, storable strings), `parse_envelope` (shape) and `parse_orders`
(fields, each number within its BOUNDS).
Each failure is an InvalidSignal naming the field, e.g. `orders[3].price`.
The replay tool runs the same checks on every logged signal.

Numbers become Decimals exactly as written: a JSON number's own digits (the
body is read with Decimal as msgspec's float_hook, web/jsonbody.py), a numeric string's
digits, never a float on the way (`0.1` is Decimal('0.1'), not
0.1000000000000000055...). Prices are then rounded to the symbol's price step
(store/money.py); `qty_per` is kept as given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from bus import decimals
from bus.events import ORDER_TYPES as PLACED_TYPES
from producers.errors import InvalidSignal
from store.money import steps_of
from web.jsonbody import parse_json_body

CANCEL_ALL = "CANCEL_ALL_ORDER"
ORDER_TYPES = PLACED_TYPES | {CANCEL_ALL}
SIDES = {"buy": "BUY", "sell": "SELL"}
MAX_BATCH = 500
MAX_CLIENT_ID = 64
MAX_NAME = 64
MAX_TOKEN = 256
# BASE/QUOTE of ASCII letters and digits; \Z so that a trailing newline is refused too.
_SYMBOL = re.compile(r"[A-Za-z0-9]{1,15}/[A-Za-z0-9]{1,15}\Z")
# What Decimal() accepts minus its surprises: no inf/nan words, no underscores, no spaces.
_NUMERIC = re.compile(r"\+?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_MAX_NUMERIC_TEXT = 64
# CONTRACT section 5: the range of each number of an order (a finite 1e300 is a 400 naming the field).
# qty_per is a percent of each account's capital (over 100 would be leverage, which no account has);
# prices span a meme coin quoted in BTC (1e-10) to BTC quoted in a weak currency (1e9), with room.
BOUNDS = {
    "price": (Decimal("1e-12"), Decimal("1e12")),
    "stop_price": (Decimal("1e-12"), Decimal("1e12")),
    "qty_per": (Decimal("0.000001"), Decimal(100)),
}
PRICES = frozenset({"price", "stop_price"})  # rounded to the symbol's price step


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """One validated order of a signal; side is None only for CANCEL_ALL_ORDER."""

    order_type: str
    symbol: str
    side: str | None = None
    price: Decimal | None = None
    stop_price: Decimal | None = None
    qty_per: Decimal | None = None

    @property
    def sizing_price(self) -> Decimal | None:
        """The price that turns qty_per of capital into a quantity (None: a MARKET without price)."""
        if self.order_type == "STOP_MARKET":
            return self.stop_price
        return self.price

    def to_wire(self) -> dict[str, Any]:
        """The map form (numbers as decimal strings), which `parse_order` accepts back."""
        wire: dict[str, Any] = {"order_type": self.order_type, "symbol": self.symbol}
        if self.side is not None:
            wire["side"] = self.side.lower()
        for name in ("price", "stop_price", "qty_per"):
            value = getattr(self, name)
            if value is not None:
                wire[name] = decimals.text(value)
        return wire


@dataclass(frozen=True, slots=True)
class Envelope:
    """The shape of a webhook body: who sends it and its raw order maps."""

    group_name: str
    token: str
    client_id: str | None
    items: tuple[Mapping[str, Any], ...]
    is_batch: bool


def parse_json(body: bytes) -> Any:
    """Decode a UTF-8 JSON body; ValueError (web.jsonbody.InvalidJson, with the reason) when it is not acceptable JSON."""
    return parse_json_body(body)


def _required_text(body: Mapping[str, Any], name: str, limit: int) -> str:
    value = body.get(name)
    if type(value) is not str or len(value) > limit:
        raise InvalidSignal(name, f"expected a string of at most {limit} characters")
    return value


def _client_id(body: Mapping[str, Any]) -> str | None:
    value = body.get("id")
    if value is not None and (type(value) is not str or not 0 < len(value) <= MAX_CLIENT_ID):
        raise InvalidSignal("id", f"expected a string of 1 to {MAX_CLIENT_ID} characters")
    return value


def parse_envelope(body: Any) -> Envelope:
    """Check the shape: an object with group_name and token, and an `orders` list for a batch."""
    if not isinstance(body, dict):
        raise InvalidSignal("body", "expected a JSON object")
    group_name = _required_text(body, "group_name", MAX_NAME)
    if not group_name:
        raise InvalidSignal("group_name", "expected a non-empty string")
    token = _required_text(body, "token", MAX_TOKEN)
    client_id = _client_id(body)
    is_batch = "orders" in body
    items = _batch_items(body["orders"]) if is_batch else (body,)
    return Envelope(group_name, token, client_id, items, is_batch)


def _batch_items(orders: Any) -> tuple[Mapping[str, Any], ...]:
    if not isinstance(orders, list) or not 1 <= len(orders) <= MAX_BATCH:
        raise InvalidSignal("orders", f"expected a list of 1 to {MAX_BATCH} orders")
    for index, item in enumerate(orders):
        if not isinstance(item, dict):
            raise InvalidSignal(f"orders[{index}]", "expected a JSON object")
    return tuple(orders)


def parse_orders(envelope: Envelope) -> tuple[OrderSpec, ...]:
    """Validate every order of the envelope, in list order."""
    if not envelope.is_batch:
        return (parse_order(envelope.items[0]),)
    return tuple(parse_order(item, f"orders[{i}].") for i, item in enumerate(envelope.items))


def parse_order(item: Mapping[str, Any], prefix: str = "") -> OrderSpec:
    """Validate one order map; field names in errors carry `prefix` (e.g. `orders[2].`)."""
    order_type = item.get("order_type")
    if type(order_type) is not str or order_type not in ORDER_TYPES:
        raise InvalidSignal(prefix + "order_type", "expected one of " + ", ".join(sorted(ORDER_TYPES)))
    symbol = parse_symbol(prefix + "symbol", item.get("symbol"))
    if order_type == CANCEL_ALL:
        return OrderSpec(order_type, symbol)
    side = _side(prefix + "side", item.get("side"))
    price = _number(prefix, "price", item, symbol, required=order_type in ("LIMIT", "STOP_LIMIT"))
    stop_price = _number(prefix, "stop_price", item, symbol, required=order_type.startswith("STOP"))
    qty_per = _number(prefix, "qty_per", item, symbol, required=True)
    if order_type == "LIMIT" or order_type == "MARKET":
        stop_price = None  # meaningless there; ignored like any unknown field
    return OrderSpec(order_type, symbol, side, price, stop_price, qty_per)


def parse_symbol(name: str, value: Any) -> str:
    """`BASE/QUOTE` of ASCII letters and digits, upper-cased."""
    if type(value) is not str or _SYMBOL.match(value) is None:
        raise InvalidSignal(name, "expected BASE/QUOTE of ASCII letters and digits, e.g. BTC/USDT")
    return value.upper()


def _side(name: str, value: Any) -> str:
    side = SIDES.get(value.lower()) if type(value) is str else None
    if side is None:
        raise InvalidSignal(name, "expected buy or sell")
    return side


def _number(prefix: str, name: str, item: Mapping[str, Any], symbol: str, *, required: bool) -> Decimal | None:
    value = item.get(name)
    if value is None:
        if required:
            raise InvalidSignal(prefix + name, "required")
        return None
    number = parse_positive(prefix + name, value)
    low, high = BOUNDS[name]
    if not low <= number <= high:
        raise InvalidSignal(prefix + name, f"expected a number from {low:g} to {high:g}, got {_show(value)}")
    if name not in PRICES:
        if len(decimals.text(number)) > _MAX_NUMERIC_TEXT:  # the inbox row carries it so: it must read back
            raise InvalidSignal(prefix + name, f"expected at most {_MAX_NUMERIC_TEXT} characters written out, got {_show(value)}")
        return number
    rounded = steps_of(symbol).round_price(number)
    if rounded.is_zero():
        raise InvalidSignal(prefix + name, f"{_show(value)} is below {symbol}'s price step {steps_of(symbol).price}")
    return rounded


def parse_positive(name: str, value: Any) -> Decimal:
    """A finite number > 0, given as a JSON number (a Decimal, an int, or an old row's float) or a numeric string."""
    number = _to_decimal(value)
    if number is None or not (number.is_finite() and number > 0):
        raise InvalidSignal(name, f"expected a finite number greater than 0, got {_show(value)}")
    return number


def _to_decimal(value: Any) -> Decimal | None:
    if type(value) is str and not (len(value) <= _MAX_NUMERIC_TEXT and _NUMERIC.match(value)):
        return None
    if type(value) is float:
        value = repr(value)  # a float of an old inbox row: its shortest digits
    if type(value) not in (str, int, Decimal):
        return None
    try:
        return Decimal(value)
    except (InvalidOperation, ValueError):
        return None


def _show(value: Any) -> str:
    if isinstance(value, Decimal):
        text = str(value)  # a JSON number, shown with the digits it was written with
    else:
        text = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."
