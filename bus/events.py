"""What travels on the bus: events of a stream key and control messages.

Every message is a frozen, slotted dataclass with `to_wire()` (a plain map with
its `kind`) and `from_wire()`; `REGISTRY` maps each kind to its class. The same
schema checks a message built in code (in `__post_init__`) and a map that
arrived on the wire (`validate_wire`, cheap enough for the broker's hot path).
Unknown extra keys on the wire are ignored, so producers may add fields first.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, dataclass_transform

from bus.errors import InvalidEvent
from bus.topics import MAX_ID, StreamKey

ORDER_EVENT_TYPES = frozenset(
    {"order_created", "order_updated", "order_filled", "order_cancelled", "trade_executed"}
)
POSITION_EVENT_TYPES = frozenset({"position_created", "position_updated", "position_closed"})
SIDES = frozenset({"BUY", "SELL"})
ORDER_TYPES = frozenset({"MARKET", "LIMIT", "STOP_MARKET", "STOP_LIMIT"})
ORDER_STATUSES = frozenset(
    {"NEW", "OPEN", "PARTIALLY_FILLED", "FILLED", "CANCELLED", "REJECTED", "TRIGGERED"}
)
DISCONNECT_REASONS = frozenset(
    {"permission_revoked", "strategy_deleted", "strategy_inactive", "server_shutdown"}
)
MAX_TEXT = 256
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z")


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 UTC with microseconds and `Z`, the one time format of the contract."""
    # isoformat pads the year to four digits; strftime("%Y") does not on glibc.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def utc_now() -> str:
    """The current time as a contract timestamp."""
    return format_timestamp(datetime.now(UTC))


# Checks take the field name (for the message) and the wire value; they raise InvalidEvent.
Check = Callable[[str, Any], None]


def _fail(name: str, value: Any, expected: str) -> None:
    raise InvalidEvent(f"{name}: expected {expected}, got {type(value).__name__} {value!r:.60}")


def check_id(name: str, value: Any) -> None:
    if type(value) is not int or not 0 < value <= MAX_ID:
        _fail(name, value, "an integer id 1..2^63-1")


def check_text(name: str, value: Any) -> None:
    if type(value) is not str or not value or len(value) > MAX_TEXT:
        _fail(name, value, f"a non-empty string of at most {MAX_TEXT} characters")


def check_number(name: str, value: Any) -> None:
    if type(value) not in (int, float) or not math.isfinite(value):
        _fail(name, value, "a finite number")


def check_optional_number(name: str, value: Any) -> None:
    if value is not None:
        check_number(name, value)


def check_timestamp(name: str, value: Any) -> None:
    if type(value) is not str or _TIMESTAMP.match(value) is None:
        _fail(name, value, "an ISO 8601 UTC timestamp with microseconds and Z")


def check_bool(name: str, value: Any) -> None:
    if type(value) is not bool:
        _fail(name, value, "true or false")


def check_count(name: str, value: Any) -> None:
    if type(value) is not int or not 0 <= value <= MAX_ID:
        _fail(name, value, "a non-negative integer")


def one_of(choices: frozenset[str]) -> Check:
    """A check that the value is one of `choices`."""

    def check(name: str, value: Any) -> None:
        if type(value) is not str or value not in choices:
            _fail(name, value, "one of " + ", ".join(sorted(choices)))

    return check


def nested(cls: type[WireMessage]) -> Check:
    """A check that the value is the wire map of `cls`."""

    def check(name: str, value: Any) -> None:
        if type(value) is not dict:
            _fail(name, value, "a map")
        try:
            cls.validate_fields(value)
        except InvalidEvent as exc:
            raise InvalidEvent(f"{name}.{exc}") from None

    return check


def list_of(cls: type[WireMessage], *, min_len: int, max_len: int) -> Check:
    """A check that the value is a list of `cls` wire maps."""
    item = nested(cls)

    def check(name: str, value: Any) -> None:
        if type(value) is not list or not min_len <= len(value) <= max_len:
            _fail(name, value, f"a list of {min_len}..{max_len} items")
        for i, element in enumerate(value):
            item(f"{name}[{i}]", element)

    return check


def field(check: Check, **kwargs: Any) -> Any:
    """A dataclass field carrying its wire check."""
    return dataclasses.field(metadata={"check": check}, **kwargs)


class WireMessage:
    """Behaviour shared by every message class: the wire form and its checks."""

    __slots__ = ()
    kind: ClassVar[str]
    _checks: ClassVar[tuple[tuple[str, Check], ...]]
    _nested: ClassVar[dict[str, type[WireMessage]]]
    _nested_lists: ClassVar[dict[str, type[WireMessage]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._nested = {}
        cls._nested_lists = {}

    @classmethod
    def _prepare(cls) -> None:
        """Collect the field checks once the dataclass exists."""
        cls._checks = tuple((f.name, f.metadata["check"]) for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    @classmethod
    def validate_fields(cls, wire: Mapping[str, Any]) -> None:
        """Raise InvalidEvent unless `wire` carries every field of this class, well typed."""
        for name, check in cls._checks:
            check(name, wire.get(name))

    def __post_init__(self) -> None:
        self.validate_fields(self._fields_as_wire())

    def _fields_as_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {}
        for name, _ in self._checks:
            value = getattr(self, name)
            if isinstance(value, WireMessage):
                value = value._fields_as_wire()
            elif isinstance(value, tuple):
                value = [v._fields_as_wire() if isinstance(v, WireMessage) else v for v in value]
            wire[name] = value
        return wire

    def to_wire(self) -> dict[str, Any]:
        """The map sent on the bus: `{"kind": ..., **fields}`."""
        return {"kind": self.kind, **self._fields_as_wire()}

    @classmethod
    def from_fields(cls, wire: Mapping[str, Any]) -> Any:
        """Build from a validated wire map, converting nested maps to their classes."""
        values: dict[str, Any] = {}
        for name, _ in cls._checks:
            value = wire.get(name)
            if name in cls._nested:
                value = cls._nested[name].from_fields(value or {})
            elif name in cls._nested_lists:
                value = tuple(cls._nested_lists[name].from_fields(v) for v in value or ())
            values[name] = value
        return cls(**values)


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, field))
def wire_class(cls: type[Any]) -> type[Any]:
    """Make `cls` a frozen slotted dataclass with its wire checks collected."""
    data_cls = dataclasses.dataclass(frozen=True, slots=True)(cls)
    data_cls._prepare()
    return data_cls


@wire_class
class Account(WireMessage):
    """The account an order or position belongs to."""

    account_id: int = field(check_id)
    name: str = field(check_text)
    exchange: str = field(check_text)


@wire_class
class BatchSummary(WireMessage):
    """Counts of one order type in a batch."""

    order_type: str = field(one_of(ORDER_TYPES))
    created: int = field(check_count)
    cancelled: int = field(check_count)


class KeyEvent(WireMessage):
    """An event of one stream key; it travels on that key's topic."""

    __slots__ = ()

    user_id: int
    strategy_id: int

    @property
    def key(self) -> StreamKey:
        return StreamKey(self.user_id, self.strategy_id)


@wire_class
class OrderEvent(KeyEvent):
    """`order_update`: an order was created, updated, filled or cancelled."""

    kind: ClassVar[str] = "order_update"
    event_type: str = field(one_of(ORDER_EVENT_TYPES))
    order_id: str = field(check_text)
    symbol: str = field(check_text)
    strategy_id: int = field(check_id)
    user_id: int = field(check_id)
    side: str = field(one_of(SIDES))
    quantity: float = field(check_number)
    price: float | None = field(check_optional_number)
    status: str = field(one_of(ORDER_STATUSES))
    timestamp: str = field(check_timestamp)
    order_type: str = field(one_of(ORDER_TYPES))
    stop_price: float | None = field(check_optional_number)
    account: Account = field(nested(Account))
    suppress_toast: bool = field(check_bool, default=False)
    filled_quantity: float | None = field(check_optional_number, default=None)
    average_price: float | None = field(check_optional_number, default=None)


@wire_class
class PositionEvent(KeyEvent):
    """`position_update`: a position was opened, changed or closed."""

    kind: ClassVar[str] = "position_update"
    event_type: str = field(one_of(POSITION_EVENT_TYPES))
    position_id: int = field(check_id)
    symbol: str = field(check_text)
    strategy_id: int = field(check_id)
    user_id: int = field(check_id)
    quantity: float = field(check_number)
    entry_price: float | None = field(check_optional_number)
    timestamp: str = field(check_timestamp)
    previous_quantity: float | None = field(check_optional_number)
    account: Account = field(nested(Account))
    account_name: str = field(check_text)
    exchange: str = field(check_text)


@wire_class
class OrderBatchEvent(KeyEvent):
    """`order_batch_update`: what one webhook batch did to one key, per order type."""

    kind: ClassVar[str] = "order_batch_update"
    summaries: tuple[BatchSummary, ...] = field(list_of(BatchSummary, min_len=1, max_len=16))
    strategy_id: int = field(check_id)
    user_id: int = field(check_id)
    timestamp: str = field(check_timestamp)

    def __post_init__(self) -> None:
        WireMessage.__post_init__(self)  # zero-argument super() fails in slotted dataclasses
        if any(s.created == 0 and s.cancelled == 0 for s in self.summaries):
            raise InvalidEvent("summaries: entries with nothing created or cancelled are left out")


class ControlMessage(WireMessage):
    """A message on the control topic, read by every streamer."""

    __slots__ = ()


@wire_class
class DisconnectMessage(ControlMessage):
    """End every stream of one key (for example: access revoked)."""

    kind: ClassVar[str] = "disconnect"
    user_id: int = field(check_id)
    strategy_id: int = field(check_id)
    reason: str = field(one_of(DISCONNECT_REASONS))
    message: str = field(check_text)

    @property
    def key(self) -> StreamKey:
        return StreamKey(self.user_id, self.strategy_id)


@wire_class
class CleanupStrategyMessage(ControlMessage):
    """End every stream of one strategy, whoever watches it."""

    kind: ClassVar[str] = "cleanup_strategy"
    strategy_id: int = field(check_id)
    reason: str = field(one_of(DISCONNECT_REASONS))
    message: str = field(check_text)


OrderEvent._nested["account"] = Account
PositionEvent._nested["account"] = Account
OrderBatchEvent._nested_lists["summaries"] = BatchSummary

REGISTRY: dict[str, type[WireMessage]] = {
    cls.kind: cls
    for cls in (OrderEvent, PositionEvent, OrderBatchEvent, DisconnectMessage, CleanupStrategyMessage)
}
KEY_EVENT_KINDS = frozenset({"order_update", "position_update", "order_batch_update"})
CONTROL_KINDS = frozenset({"disconnect", "cleanup_strategy"})


def validate_wire(wire: Mapping[str, Any]) -> type[WireMessage]:
    """Check a decoded payload against the schema of its kind; return that class."""
    kind = wire.get("kind")
    cls = REGISTRY.get(kind) if type(kind) is str else None
    if cls is None:
        raise InvalidEvent(f"unknown kind {kind!r:.40}")
    cls.validate_fields(wire)
    if cls is OrderBatchEvent and any(
        s["created"] == 0 and s["cancelled"] == 0 for s in wire["summaries"]
    ):
        raise InvalidEvent("summaries: entries with nothing created or cancelled are left out")
    return cls


def from_wire(wire: Mapping[str, Any]) -> WireMessage:
    """The message object of a decoded payload; InvalidEvent when it breaks its schema."""
    return validate_wire(wire).from_fields(wire)  # type: ignore[no-any-return]
