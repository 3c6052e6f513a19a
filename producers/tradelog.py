"""Trade logs: the file format `tradestream-replay` reads (docs/trade-log.md). Pure parsing.

JSONL, one object per line (blank lines and lines starting with `#` are skipped):

    {"ts": "2025-01-06T09:30:00.000000Z", "type": "tick", "symbol": "BTC/USDT", "price": 90000, "volume": 0.5}
    {"ts": 1736155800.5, "type": "signal", "group_name": "btc-trend", "symbol": "BTC/USDT",
     "side": "buy", "order_type": "LIMIT", "price": "89500", "qty_per": 5}
    {"ts": ..., "type": "signal", "group_name": "eth-swing", "orders": [{...}, {...}]}
    {"ts": ..., "type": "event", "event": {"kind": "order_update", ...}}

- `ts`: ISO 8601 (`Z` or an offset; none means UTC) or Unix seconds; it paces the replay.
- `signal`: the webhook's fields (CONTRACT §5) minus the token, checked by the
  same rules; `group_name` names the strategy, which the order handler looks up.
- `tick`: a market price; `volume` (base units, optional) bounds what it fills.
- `event`: a bus event's wire map, published as is with `--raw` (its numbers as
  decimal strings, CONTRACT §4).

A JSON line is read by the webhook's own strict reading (web/jsonbody.py): its
numbers with a fraction are Decimals of their digits (never floats), and a line
that repeats a key, nests deeper than 32 levels, writes NaN or holds U+0000 is a
bad line, as such a body is a 400 at the webhook. CSV cells are text, so `0.1`
replays as 0.1.

A resumed run passes `after` (the last line stored): the lines up to it are not
parsed again, only counted.

CSV: a header row, then one row per line with the columns
`ts,type,group_name,symbol,side,order_type,price,stop_price,qty_per,volume`
(empty cell = absent). CSV carries single signals and ticks; batches and raw
events need JSONL.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bus import decimals
from bus.errors import DecodeError
from bus.events import WireMessage, from_wire
from producers.commands import SignalCommand, TickCommand
from producers.errors import InvalidCommand, InvalidSignal, TradeLogError
from producers.signals import MAX_BATCH, MAX_NAME, Envelope, parse_orders, parse_positive, parse_symbol
from web.jsonbody import parse_json_body

CSV_COLUMNS = ("ts", "type", "group_name", "symbol", "side", "order_type", "price", "stop_price", "qty_per", "volume")
LINE_TYPES = ("signal", "tick", "event")


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One replayable line: when it happened and what it carries."""

    line: int
    ts: float
    item: SignalCommand | TickCommand | WireMessage


def read_jsonl(lines: Iterable[str], after: int = 0) -> Iterator[LogRecord | TradeLogError]:
    """Records of a JSONL log after line `after`; a bad line yields its TradeLogError instead (the caller decides)."""
    for number, text in enumerate(lines, start=1):
        if number <= after:
            continue
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        try:
            document = parse_json_body(text.encode())
            if not isinstance(document, dict):
                raise TradeLogError(number, "expected a JSON object")
            yield record_of(number, document)
        except TradeLogError as exc:
            yield exc
        except ValueError as exc:
            yield TradeLogError(number, f"not valid JSON: {exc}")


def read_csv(lines: Iterable[str], after: int = 0) -> Iterator[LogRecord | TradeLogError]:
    """Records of a CSV log (header row first) whose row ends after line `after`; a bad row yields its TradeLogError."""
    reader = csv.DictReader(line for line in lines)
    missing = {"ts", "type"} - set(reader.fieldnames or ())
    if missing:
        yield TradeLogError(1, f"CSV header lacks {', '.join(sorted(missing))}; expected {','.join(CSV_COLUMNS)}")
        return
    for row in reader:
        number = reader.line_num  # a quoted cell may span lines: a row is numbered by its last, as the progress is
        if number <= after:
            continue
        document = {key: value for key, value in row.items() if key and value not in (None, "")}
        if document.get("type") not in ("signal", "tick"):
            yield TradeLogError(number, "type: CSV rows are signal or tick")
            continue
        try:
            yield record_of(number, document)
        except TradeLogError as exc:
            yield exc


def record_of(number: int, document: Mapping[str, Any]) -> LogRecord:
    """The record of one parsed line; TradeLogError naming the field when it is bad."""
    ts = parse_ts(number, document.get("ts"))
    kind = document.get("type")
    try:
        if kind == "tick":
            return LogRecord(number, ts, _tick(document))
        if kind == "signal":
            return LogRecord(number, ts, _signal(document))
        if kind == "event":
            return LogRecord(number, ts, _event(document.get("event")))
    except (InvalidSignal, InvalidCommand, DecodeError) as exc:
        raise TradeLogError(number, str(exc)) from None
    raise TradeLogError(number, f"type: expected one of {', '.join(LINE_TYPES)}")


def parse_ts(number: int, value: Any) -> float:
    """Unix seconds of an ISO 8601 time or a number."""
    if type(value) in (int, float, Decimal) and math.isfinite(value):
        return float(value)
    if type(value) is str:
        try:
            return float(value) if _looks_numeric(value) else _iso_seconds(value)
        except ValueError:
            pass
    raise TradeLogError(number, f"ts: expected an ISO 8601 time or Unix seconds, got {value!r:.40}")


def _iso_seconds(text: str) -> float:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # a log without an offset is in UTC
    return moment.timestamp()


def _looks_numeric(text: str) -> bool:
    return text.replace(".", "", 1).isdigit()


def _tick(document: Mapping[str, Any]) -> TickCommand:
    symbol = parse_symbol("symbol", document.get("symbol"))
    price = parse_positive("price", document.get("price"))
    volume = document.get("volume")
    return TickCommand.tick(symbol, price, None if volume is None else parse_positive("volume", volume))


def _signal(document: Mapping[str, Any]) -> SignalCommand:
    group_name = document.get("group_name")
    if type(group_name) is not str or not 0 < len(group_name) <= MAX_NAME:
        raise InvalidSignal("group_name", f"expected a string of 1 to {MAX_NAME} characters")
    orders = document.get("orders")
    is_batch = orders is not None
    if is_batch and not (
        isinstance(orders, list) and 0 < len(orders) <= MAX_BATCH and all(isinstance(o, dict) for o in orders)
    ):
        raise InvalidSignal("orders", f"expected a list of 1 to {MAX_BATCH} objects")
    items = tuple(orders or ()) if is_batch else (document,)
    specs = parse_orders(Envelope(group_name, "", None, items, is_batch))
    return SignalCommand(group_name, specs, is_batch)


def _event(event: Any) -> WireMessage:
    if not isinstance(event, dict):
        raise InvalidCommand("event: expected the wire map of a bus event")
    return from_wire(_decimal_texts(event))


def _decimal_texts(value: Any) -> Any:
    """The map with its Decimals as wire strings (what the schema and the bus carry)."""
    if isinstance(value, Decimal):
        return decimals.text(value) if value.is_finite() else value
    if isinstance(value, dict):
        return {key: _decimal_texts(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decimal_texts(item) for item in value]
    return value
