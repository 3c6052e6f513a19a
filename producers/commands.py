"""Command frames between producers (not bus events: they never reach the broker).

    webhook, replay ──PUSH [b"signal" | b"tick", map]──▶ orders (PULL --orders)
    orders          ──PUSH [b"fill", map]────────────▶ positions (PULL --fills)

Payloads are bus.codec maps. `from_wire` checks every field's type, so a
malformed frame becomes one InvalidCommand (logged and skipped by the receiver)
instead of an error deep inside the exchange.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from bus import codec
from bus.errors import DecodeError
from bus.events import SIDES
from bus.topics import MAX_ID
from producers.errors import InvalidCommand, InvalidSignal
from producers.signals import MAX_BATCH, MAX_NAME, OrderSpec, parse_order, parse_symbol

SIGNAL = b"signal"
TICK = b"tick"
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


def _is_positive(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value) and value > 0


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
    """A market price for a symbol; `volume` (base units) bounds what it can fill, None: no bound."""

    symbol: str
    price: float
    volume: float | None = None

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> TickCommand:
        try:
            symbol = parse_symbol("symbol", wire.get("symbol"))
        except InvalidSignal as exc:
            raise InvalidCommand(str(exc)) from None
        price = _get(wire, "price", _is_positive)
        volume = _get(wire, "volume", _is_positive, optional=True)
        return cls(symbol, float(price), None if volume is None else float(volume))


@dataclass(frozen=True, slots=True)
class FillCommand:
    """An execution on one account: the position handler folds it into a Position row."""

    order_id: str
    account_id: int
    strategy_id: int
    user_id: int
    symbol: str
    side: str
    quantity: float
    price: float

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> FillCommand:
        return cls(
            order_id=_get(wire, "order_id", _is_text),
            account_id=_get(wire, "account_id", _is_id),
            strategy_id=_get(wire, "strategy_id", _is_id),
            user_id=_get(wire, "user_id", _is_id),
            symbol=_get(wire, "symbol", _is_text),
            side=_get(wire, "side", lambda v: v in SIDES),
            quantity=float(_get(wire, "quantity", _is_positive)),
            price=float(_get(wire, "price", _is_positive)),
        )


Command = SignalCommand | TickCommand | FillCommand
_BY_TOPIC: dict[bytes, Callable[[Mapping[str, Any]], Command]] = {
    SIGNAL: SignalCommand.from_wire,
    TICK: TickCommand.from_wire,
    FILL: FillCommand.from_wire,
}
_TOPIC_OF: dict[type[Any], bytes] = {SignalCommand: SIGNAL, TickCommand: TICK, FillCommand: FILL}


def topic_of(command: Command) -> bytes:
    """The first frame of a command."""
    return _TOPIC_OF[type(command)]


def decode(frames: list[bytes]) -> Command:
    """The command carried by `[topic, payload]`; InvalidCommand for anything else."""
    if len(frames) != 2 or frames[0] not in _BY_TOPIC:
        raise InvalidCommand(f"expected [signal|tick|fill, payload], got {len(frames)} frames")
    try:
        wire = codec.unpack_map(frames[1])
    except DecodeError as exc:
        raise InvalidCommand(str(exc)) from None
    return _BY_TOPIC[frames[0]](wire)
