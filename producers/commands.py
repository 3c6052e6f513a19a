"""The order handler's commands (rows of its inbox) and the wake-ups between producers.

    webhook, replay ── order_inbox row (kind, JSON body) ─▶ orders    ─ + PUSH [b"wake"] --orders
    orders          ── executions row ────────────────────▶ positions ─ + PUSH [b"fill", {"fill_id"}] --fills

The rows are the hand-off (DESIGN 7); a message is only a wake-up, which the
receiver may miss without losing anything. `from_wire` checks every field's
type, so a malformed body becomes one InvalidCommand (recorded as the row's
failure) instead of an error deep inside the exchange.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from bus import codec, decimals
from bus.errors import DecodeError
from bus.topics import MAX_ID
from producers.errors import InvalidCommand, InvalidSignal
from producers.signals import MAX_BATCH, MAX_NAME, OrderSpec, parse_order, parse_positive, parse_symbol
from store.handoff import INBOX_SIGNAL, INBOX_TICK
from store.money import steps_of

WAKE = (b"wake", b"")  # [topic, payload] like every frame pair of bus.publisher; the payload is unused
FILL = b"fill"


def _get(wire: Mapping[str, Any], name: str, check: Callable[[Any], bool], optional: bool = False) -> Any:
    value = wire.get(name)
    if (value is None and optional) or (value is not None and check(value)):
        return value
    raise InvalidCommand(f"{name}: unexpected {type(value).__name__} {value!r:.40}")


def _is_id(value: Any) -> bool:
    return type(value) is int and 0 < value <= MAX_ID


def _is_text(value: Any) -> bool:
    return type(value) is str and 0 < len(value) <= MAX_NAME


@dataclass(frozen=True, slots=True)
class SignalCommand:
    """A validated signal for one strategy: one order, or a batch applied in list order.

    The webhook resolves the strategy and sends its id; the replay tool sends only
    the group name and lets the order handler resolve it.
    """

    group_name: str
    orders: tuple[OrderSpec, ...]
    is_batch: bool = False
    strategy_id: int | None = None
    signal_id: int | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "group_name": self.group_name,
            "orders": [order.to_wire() for order in self.orders],
            "is_batch": self.is_batch,
            "strategy_id": self.strategy_id,
            "signal_id": self.signal_id,
        }

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> SignalCommand:
        orders = _get(wire, "orders", lambda v: type(v) is list and 0 < len(v) <= MAX_BATCH)
        try:
            specs = tuple(parse_order(item) for item in orders if isinstance(item, dict))
        except InvalidSignal as exc:
            raise InvalidCommand(f"orders: {exc}") from None
        if len(specs) != len(orders):
            raise InvalidCommand("orders: every order must be a map")
        return cls(
            group_name=_get(wire, "group_name", _is_text),
            orders=specs,
            is_batch=_get(wire, "is_batch", lambda v: type(v) is bool),
            strategy_id=_get(wire, "strategy_id", _is_id, optional=True),
            signal_id=_get(wire, "signal_id", _is_id, optional=True),
        )


@dataclass(frozen=True, slots=True)
class TickCommand:
    """A market price for a symbol; `volume` (base units) bounds what it can fill, None: no bound.

    `tick` rounds the price to the symbol's price step and the volume down to its quantity step.
    """

    symbol: str
    price: Decimal
    volume: Decimal | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "price": decimals.text(self.price), "volume": decimals.optional_text(self.volume)}

    @classmethod
    def tick(cls, symbol: str, price: Decimal, volume: Decimal | None = None) -> TickCommand:
        """A tick on the symbol's steps."""
        steps = steps_of(symbol)
        return cls(symbol, steps.round_price(price), None if volume is None else steps.round_quantity(volume))

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> TickCommand:
        """Numbers as decimal strings (or an old row's JSON numbers)."""
        try:
            symbol = parse_symbol("symbol", wire.get("symbol"))
            price = parse_positive("price", wire.get("price"))
            volume = wire.get("volume")
            return cls.tick(symbol, price, None if volume is None else parse_positive("volume", volume))
        except InvalidSignal as exc:
            raise InvalidCommand(str(exc)) from None


Command = SignalCommand | TickCommand
_BY_KIND: dict[str, Callable[[Mapping[str, Any]], Command]] = {
    INBOX_SIGNAL: SignalCommand.from_wire,
    INBOX_TICK: TickCommand.from_wire,
}
_KIND_OF: dict[type[Any], str] = {SignalCommand: INBOX_SIGNAL, TickCommand: INBOX_TICK}


def kind_of(command: Command) -> str:
    """The inbox kind of a command."""
    return _KIND_OF[type(command)]


def encode_body(command: Command) -> str:
    """The inbox body of a command: its wire map as JSON (numbers as decimal strings: exact)."""
    return orjson.dumps(command.to_wire()).decode()


def decode_body(kind: str, body: str) -> Command:
    """The command of an inbox row; InvalidCommand when it is not one we know."""
    parse = _BY_KIND.get(kind)
    if parse is None:
        raise InvalidCommand(f"inbox kind {kind[:20]!r} is not signal or tick")
    try:
        wire = orjson.loads(body)
    except orjson.JSONDecodeError as exc:  # a nesting too deep too
        raise InvalidCommand(f"inbox body is not JSON: {exc}") from None
    if not isinstance(wire, dict):
        raise InvalidCommand("inbox body is not a map")
    return parse(wire)


def fill_wake(fill_id: int) -> tuple[bytes, bytes]:
    """The frames that tell the position handler an execution row was committed."""
    return FILL, codec.pack({"fill_id": fill_id})


def parse_fill_wake(frames: list[bytes]) -> int | None:
    """The execution id a fill wake-up names; None for any other wake-up. InvalidCommand when malformed."""
    if frames[:1] != [FILL]:
        return None
    if len(frames) != 2:
        raise InvalidCommand(f"expected [fill, payload], got {len(frames)} frames")
    try:
        wire = codec.unpack_map(frames[1])
    except DecodeError as exc:
        raise InvalidCommand(str(exc)) from None
    return int(_get(wire, "fill_id", _is_id))
