"""What travels on the bus: events of a stream key and control messages, as one msgspec schema.

Every message is a frozen msgspec Struct tagged on `kind`; `Message` is their
union. `decode()` turns a payload into its message, type and bounds checked in
one C pass (the broker's stricter fast path is bus/exact_decode.py); `from_wire()` does the same for a map that
is already decoded (a trade log line), `to_wire()` gives the map back. Unknown
extra keys are ignored, so producers may add fields first. Structs do not check
themselves when built in code (msgspec checks on decode): the Publisher decodes
what it is about to send, so a bad event fails in the producer that built it.

`published_ns` is not part of a message but of its transport: the Publisher adds
it to the map, the broker reads it from the map (a non-negative int, else its
own receive time) and the streamer leaves it out of what browsers see.

The field types below are the bounds (CONTRACT sections 2 and 4): ids 1..2^63-1,
quantities, prices and money as decimal strings (`Amount`, bus/decimals.py;
a plain publisher's finite number is let in too), texts of 1..256 characters,
the one timestamp format, the choices of each enumerated field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias, get_args

from msgspec import Meta, Struct

from bus import codec, decimals, reasons
from bus.errors import InvalidEvent
from bus.topics import MAX_ID, StreamKey

MAX_TEXT = 256
# Users per stream_counts message: ~10 KB of msgpack, however many users a streamer serves.
MAX_COUNTS = 1000

Id = Annotated[int, Meta(gt=0, le=MAX_ID)]
Count = Annotated[int, Meta(ge=0, le=MAX_ID)]
Text = Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)]
Timestamp = Annotated[str, Meta(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z")]
# Quantities, prices and money are decimal strings (bus/decimals.py: finite, at most 24 + 24 digits).
# A plain publisher's msgpack number is accepted too, within the same bounds (the streamer turns it
# into a string); msgspec has no "finite" constraint, but the range excludes inf and NaN fails it.
DecimalText = Annotated[str, Meta(pattern=decimals.PATTERN)]
_BoundedInt = int  # msgpack ints are 64-bit: within the bound already
_BoundedFloat = Annotated[float, Meta(gt=-float(decimals.NUMBER_LIMIT), lt=float(decimals.NUMBER_LIMIT))]
if TYPE_CHECKING:
    Amount: TypeAlias = str  # what code builds (decimals.text); decoding also lets the numbers in
else:
    Amount = DecimalText | _BoundedInt | _BoundedFloat
Quantity = Amount
Price = Amount
Money = Amount

if TYPE_CHECKING:
    # Code builds events from database columns typed `str` (CHECK-constrained to these choices,
    # store/models.py, store/handoff.py); the choices are enforced wherever a message is decoded or checked.
    OrderEventType: TypeAlias = str
    PositionEventType: TypeAlias = str
    Side: TypeAlias = str
    OrderType: TypeAlias = str
    OrderStatus: TypeAlias = str
    DisconnectReason: TypeAlias = str
else:
    OrderEventType = Literal["order_created", "order_updated", "order_filled", "order_cancelled", "trade_executed"]
    PositionEventType = Literal["position_created", "position_updated", "position_closed", "position_marked"]
    Side = Literal["BUY", "SELL"]
    OrderType = Literal["MARKET", "LIMIT", "STOP_MARKET", "STOP_LIMIT"]
    OrderStatus = Literal["NEW", "OPEN", "PARTIALLY_FILLED", "FILLED", "CANCELLED", "REJECTED", "TRIGGERED"]
    DisconnectReason = Literal[tuple(reasons.TEXTS)]  # the one table of reasons (bus/reasons.py)

ORDER_EVENT_TYPES: frozenset[str] = frozenset(get_args(OrderEventType))
POSITION_EVENT_TYPES: frozenset[str] = frozenset(get_args(PositionEventType))
SIDES: frozenset[str] = frozenset(get_args(Side))
ORDER_TYPES: frozenset[str] = frozenset(get_args(OrderType))
ORDER_STATUSES: frozenset[str] = frozenset(get_args(OrderStatus))
DISCONNECT_REASONS: frozenset[str] = reasons.DISCONNECT_REASONS


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 UTC with microseconds and `Z`, the one time format of the contract."""
    # isoformat pads the year to four digits; strftime("%Y") does not on glibc.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def utc_now() -> str:
    """The current time as a contract timestamp."""
    return format_timestamp(datetime.now(UTC))


# gc=False: messages hold only scalars, strings and other such structs, so they cannot form cycles.
class Account(Struct, frozen=True, gc=False, omit_defaults=True):
    """The account an order or position belongs to; a position's carries the account's equity."""

    account_id: Id
    name: Text
    exchange: Text
    # Position events only (left out of order events): capital + the P&L of the account's positions
    # in this strategy (CONTRACT §4).
    equity: Money | None = None


class BatchSummary(Struct, frozen=True, gc=False):
    """Counts of one order type in a batch."""

    order_type: OrderType
    created: Count
    cancelled: Count


class WireMessage(Struct, frozen=True, gc=False, tag_field="kind"):
    """Behaviour shared by every message class: the wire map."""

    def to_wire(self) -> dict[str, Any]:
        """The map sent on the bus, `{"kind": ..., **fields}`, exactly as a receiver decodes it."""
        # Through the bytes rather than msgspec.to_builtins, which would keep tuples (`summaries`) as tuples.
        return codec.unpack_map(codec.pack(self))

    @property
    def kind(self) -> str:
        """The `kind` tag of this message class."""
        return self.__struct_config__.tag  # type: ignore[return-value]  # every concrete class has a str tag


class KeyEvent(WireMessage, frozen=True):
    """An event of one stream key; it travels on that key's topic."""

    if TYPE_CHECKING:  # declared by each subclass, where their position in the wire map is
        user_id: int
        strategy_id: int

    @property
    def key(self) -> StreamKey:
        return StreamKey(self.user_id, self.strategy_id)


# Order and position events are kw_only: their optional numbers may be absent on the wire (read as
# null), yet come before required fields.
class OrderEvent(KeyEvent, frozen=True, tag="order_update", kw_only=True):
    """`order_update`: an order was created, updated, filled or cancelled."""

    event_type: OrderEventType
    order_id: Text
    symbol: Text
    strategy_id: Id
    user_id: Id
    side: Side
    quantity: Quantity
    price: Price | None = None
    status: OrderStatus
    timestamp: Timestamp
    order_type: OrderType
    stop_price: Price | None = None
    account: Account
    suppress_toast: bool
    filled_quantity: Quantity | None = None
    average_price: Price | None = None
    # The fill an order_filled (or trade_executed) reports; null on every other event_type.
    fill_quantity: Quantity | None = None
    fill_price: Price | None = None


class PositionEvent(KeyEvent, frozen=True, tag="position_update", kw_only=True):
    """`position_update`: a position was opened, changed or closed."""

    event_type: PositionEventType
    position_id: Id
    symbol: Text
    strategy_id: Id
    user_id: Id
    quantity: Quantity
    entry_price: Price | None = None
    timestamp: Timestamp
    previous_quantity: Quantity | None = None
    account: Account
    account_name: Text
    exchange: Text
    # P&L (CONTRACT §4): realised by the fills that reduced it (average cost), unrealised at mark_price.
    realized_pnl: Money | None = None
    unrealized_pnl: Money | None = None
    mark_price: Price | None = None


class OrderBatchEvent(KeyEvent, frozen=True, tag="order_batch_update"):
    """`order_batch_update`: what one webhook batch did to one key, per order type."""

    summaries: Annotated[tuple[BatchSummary, ...], Meta(min_length=1, max_length=16)]
    strategy_id: Id
    user_id: Id
    timestamp: Timestamp

    def __post_init__(self) -> None:
        # Runs on construction and on decode (msgspec reports a ValueError as a validation error).
        if any(s.created == 0 and s.cancelled == 0 for s in self.summaries):
            raise InvalidEvent("summaries: entries with nothing created or cancelled are left out")


class ControlMessage(WireMessage, frozen=True):
    """A message on the control topic, read by every streamer."""


class DisconnectMessage(ControlMessage, frozen=True, tag="disconnect"):
    """End every stream of one key (for example: access revoked)."""

    user_id: Id
    strategy_id: Id
    reason: DisconnectReason
    message: Text

    @property
    def key(self) -> StreamKey:
        return StreamKey(self.user_id, self.strategy_id)


class CleanupStrategyMessage(ControlMessage, frozen=True, tag="cleanup_strategy"):
    """End every stream of one strategy, whoever watches it."""

    strategy_id: Id
    reason: DisconnectReason
    message: Text


class EndSessionsMessage(ControlMessage, frozen=True, tag="end_sessions", kw_only=True):
    """End login sessions of one user and the streams opened with them (logout, password change, deactivation)."""

    user_id: Id
    session_id: Id | None = None  # the one session a logout ends; None: every session of the user
    api_token: bool = False  # also the streams opened with the user's API token (a deactivated user)
    reason: DisconnectReason
    message: Text


class StreamCountsMessage(ControlMessage, frozen=True, tag="stream_counts"):
    """How many streams users hold on one streamer: the per-user limit across streamers (streamer/admission.py)."""

    streamer: Text
    counts: Annotated[tuple[tuple[Id, Count], ...], Meta(max_length=MAX_COUNTS)]  # (user_id, streams)
    leaving: bool = False  # the streamer stops: forget its counts


Message = (
    OrderEvent | PositionEvent | OrderBatchEvent | DisconnectMessage | CleanupStrategyMessage | EndSessionsMessage
    | StreamCountsMessage
)
KEY_EVENT_KINDS = frozenset({"order_update", "position_update", "order_batch_update"})
# The decimal fields of key events (and of their `account`), which the streamer writes as strings.
DECIMAL_FIELDS = frozenset({
    "quantity", "price", "stop_price", "filled_quantity", "average_price", "fill_quantity", "fill_price",
    "entry_price", "previous_quantity", "realized_pnl", "unrealized_pnl", "mark_price",
})
CONTROL_KINDS = frozenset({"disconnect", "cleanup_strategy", "end_sessions", "stream_counts"})

_SCHEMA: codec.Schema[Message] = codec.Schema(Message)


def decode(payload: bytes) -> Message:
    """The message of a payload; DecodeError when it is not msgpack, InvalidEvent when it breaks its schema."""
    return _SCHEMA.decode(payload)


def from_wire(wire: Any) -> Message:
    """The message of an already decoded map; InvalidEvent when it breaks its schema."""
    return _SCHEMA.convert(wire)
