"""Trade logs: JSONL and CSV records, bad lines with their numbers, pacing."""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path
from typing import Any

import pytest

import producers
from bus.events import OrderEvent
from producers.commands import SignalCommand, TickCommand
from producers.errors import TradeLogError
from producers.replay import Pacer, ReplayConfig, replay, run
from producers.tradelog import LogRecord, read_csv, read_jsonl
from store import demo

EVENT = (
    '{"kind": "order_update", "event_type": "order_created", "order_id": "x-1", "symbol": "BTC/USDT", '
    '"strategy_id": 1, "user_id": 1, "side": "BUY", "quantity": 1.0, "price": 1.0, "status": "NEW", '
    '"timestamp": "2025-01-06T09:30:00.000000Z", "order_type": "LIMIT", "stop_price": null, '
    '"account": {"account_id": 1, "name": "main", "exchange": "paper"}, "suppress_toast": false, "filled_quantity": 0.0, "average_price": null}'
)
JSONL = [
    "# a comment, then a blank line",
    "",
    '{"ts": "2025-01-06T09:30:00Z", "type": "tick", "symbol": "btc/usdt", "price": 90000, "volume": 0.5}',
    '{"ts": 1736155801.5, "type": "signal", "group_name": "btc-trend", "symbol": "BTC/USDT", "side": "buy", "order_type": "LIMIT", "price": "89500", "qty_per": 5}',
    '{"ts": "2025-01-06T09:30:02", "type": "signal", "group_name": "eth-swing", "orders": [{"symbol": "ETH/USDT", "order_type": "CANCEL_ALL_ORDER"}]}',
    '{"ts": 1736155803, "type": "event", "event": ' + EVENT + "}",
]


def test_jsonl_records_carry_their_line_time_and_item() -> None:
    records = list(read_jsonl(JSONL))
    assert all(isinstance(r, LogRecord) for r in records)
    assert [r.line for r in records] == [3, 4, 5, 6]  # type: ignore[union-attr]
    assert [r.ts for r in records] == [1736155800.0, 1736155801.5, 1736155802.0, 1736155803.0]  # type: ignore[union-attr]
    tick, single, batch, event = (r.item for r in records)  # type: ignore[union-attr]
    assert tick == TickCommand("BTC/USDT", 90000.0, 0.5)
    assert isinstance(single, SignalCommand) and not single.is_batch and single.strategy_id is None
    assert isinstance(batch, SignalCommand) and batch.is_batch and batch.orders[0].order_type == "CANCEL_ALL_ORDER"
    assert isinstance(event, OrderEvent)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"ts": 1, "type": "tick", "symbol": "BTC/USDT"', "not valid JSON"),
        ('[1, 2]', "expected a JSON object"),
        ('{"type": "tick", "symbol": "BTC/USDT", "price": 1}', "ts:"),
        ('{"ts": "yesterday", "type": "tick", "symbol": "BTC/USDT", "price": 1}', "ts:"),
        ('{"ts": 1, "type": "trade"}', "type:"),
        ('{"ts": 1, "type": "tick", "symbol": "BTC/USDT", "price": 0}', "price:"),
        ('{"ts": 1, "type": "tick", "symbol": "BTC-USDT", "price": 1}', "symbol:"),
        ('{"ts": 1, "type": "signal", "symbol": "BTC/USDT", "side": "buy", "order_type": "MARKET", "qty_per": 1}', "group_name:"),
        ('{"ts": 1, "type": "signal", "group_name": "g", "symbol": "BTC/USDT", "side": "up", "order_type": "MARKET", "qty_per": 1}', "side:"),
        ('{"ts": 1, "type": "signal", "group_name": "g", "orders": [{"symbol": "A/B", "order_type": "LIMIT", "side": "buy", "qty_per": 1}]}', "orders[0].price:"),
        ('{"ts": 1, "type": "event", "event": {"kind": "order_update"}}', "event_type"),
        # The webhook's strict reading (web/jsonbody.py): what is a 400 there is a bad line here.
        ('{"ts": 1, "type": "tick", "a": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested deeper than 32 levels"),
        ('{"ts": 1, "type": "tick", "symbol": "BTC/USDT", "price": 1, "price": 2}', 'duplicate key "price"'),
        ('{"ts": 1, "type": "tick", "symbol": "BTC/USDT", "price": NaN}', "not valid JSON"),
        ('{"ts": 1, "type": "signal", "group_name": "g\\u0000", "symbol": "A/B", "side": "buy", "order_type": "MARKET", '
         '"qty_per": 1}', "U+0000"),
    ],
)
def test_bad_jsonl_line_is_reported_with_its_number_and_field(line: str, message: str) -> None:
    (error,) = list(read_jsonl(["", line]))
    assert isinstance(error, TradeLogError) and error.line == 2
    assert message in error.message


def test_a_resumed_reading_passes_over_records_and_bad_lines_up_to_the_line_stored_unparsed() -> None:
    lines = [
        '{"ts": 0, "type": "tick", "symbol": "BTC/USDT", "price": 1}\n',
        "# a comment is line 2\n",
        "not json\n",
        '{"ts": 1, "type": "tick", "symbol": "BTC/USDT", "price": 2}\n',
        "\n",
        "also bad\n",
        '{"ts": 2, "type": "tick", "symbol": "BTC/USDT", "price": 3}\n',
    ]
    def numbers(after: int) -> list[tuple[str, int]]:
        return [("bad" if isinstance(r, TradeLogError) else "record", r.line) for r in read_jsonl(lines, after)]

    assert numbers(0) == [("record", 1), ("bad", 3), ("record", 4), ("bad", 6), ("record", 7)]
    assert numbers(3) == [("record", 4), ("bad", 6), ("record", 7)]
    assert numbers(4) == numbers(5) == [("bad", 6), ("record", 7)]
    assert numbers(7) == []
    # Not parsed at all: a line up to `after` is only counted (it may be anything; a resume skips it unread).
    assert [r.line for r in read_jsonl([b"\xff".decode("latin-1"), *lines[:1]], after=1)] == [2]  # type: ignore[union-attr]


def test_a_resumed_csv_reading_numbers_rows_by_their_last_line_and_passes_over_those_stored() -> None:
    lines = [
        "ts,type,group_name,symbol,side,order_type,price,stop_price,qty_per,volume\n",
        "2025-01-06T09:30:00Z,tick,,BTC/USDT,,,90000,,,0.5\n",
        '1736155801,signal,"btc-\n', 'trend",BTC/USDT,sell,MARKET,,,2,\n',  # a quoted cell over lines 3-4
        "1736155802,tick,,BTC/USDT,,,90001,,,\n",
    ]
    assert [r.line for r in read_csv(lines)] == [2, 4, 5]
    assert [r.line for r in read_csv(lines, after=2)] == [4, 5]
    assert [r.line for r in read_csv(lines, after=4)] == [5]


def test_csv_rows_give_signals_and_ticks_and_name_bad_rows() -> None:
    lines = [
        "ts,type,group_name,symbol,side,order_type,price,stop_price,qty_per,volume\n",
        "2025-01-06T09:30:00Z,tick,,BTC/USDT,,,90000,,,0.5\n",
        "1736155801,signal,btc-trend,BTC/USDT,sell,STOP_MARKET,,89000,2,\n",
        "1736155802,signal,btc-trend,BTC/USDT,sell,STOP_MARKET,,,2,\n",
        "1736155803,event,,,,,,,,\n",
    ]
    tick, stop, missing_stop, event = list(read_csv(lines))
    assert isinstance(tick, LogRecord) and tick.item == TickCommand("BTC/USDT", 90000.0, 0.5)
    assert isinstance(stop, LogRecord) and stop.item.orders[0].stop_price == 89000.0  # type: ignore[union-attr]
    assert isinstance(missing_stop, TradeLogError) and missing_stop.line == 4 and "stop_price" in missing_stop.message
    assert isinstance(event, TradeLogError) and event.line == 5


def test_csv_without_ts_and_type_columns_is_refused_at_line_one() -> None:
    (error,) = list(read_csv(["symbol,price\n", "BTC/USDT,1\n"]))
    assert isinstance(error, TradeLogError) and error.line == 1


class FakeClock:
    """Time that passes only when the pacer waits (the stop event's wait is the only sleep)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []


class RecordingStop(threading.Event):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock

    def wait(self, timeout: float | None = None) -> bool:
        self.clock.waits.append(round(timeout or 0.0, 6))
        self.clock.now += timeout or 0.0
        return self.is_set()


def test_pacer_keeps_the_recorded_gaps_divided_by_speed() -> None:
    clock = FakeClock()
    pacer = Pacer(2.0, RecordingStop(clock), clock=lambda: clock.now)
    for ts in (10.0, 11.0, 11.0, 15.0, 14.0):
        assert pacer.wait(ts)
    assert clock.waits == [0.0, 0.5, 0.0, 2.0, 0.0]


class ListSink:
    """Records what replay sends, and when it flushes (as the count sent so far)."""

    def __init__(self) -> None:
        self.sent: list[LogRecord] = []
        self.flushes: list[int] = []

    def send(self, record: LogRecord) -> bool:
        self.sent.append(record)
        return True

    def flush(self) -> None:
        self.flushes.append(len(self.sent))


@pytest.mark.expect_log('line 2 skipped', 'trades.jsonl:2')
def test_replay_stops_at_a_bad_line_or_skips_it() -> None:
    records = list(read_jsonl([JSONL[2], "{", JSONL[3]]))
    sink = ListSink()
    stop = threading.Event()
    with pytest.raises(TradeLogError) as raised:
        replay(records, sink, Pacer(0, stop), skip_bad_lines=False)
    assert raised.value.line == 2 and len(sink.sent) == 1
    report = replay(records, sink, Pacer(0, stop), skip_bad_lines=True)
    assert (report.sent, report.bad_lines) == (2, 1)


def test_replay_flushes_before_waiting_so_records_due_together_go_in_one_transaction() -> None:
    clock = FakeClock()
    records = [LogRecord(n, ts, TickCommand("BTC/USDT", 1.0)) for n, ts in enumerate((0.0, 0.0, 1.0, 1.0, 1.0, 3.0))]
    sink = ListSink()
    replay(records, sink, Pacer(1.0, RecordingStop(clock), clock=lambda: clock.now), skip_bad_lines=False)
    assert sink.flushes == [2, 5]  # the last one is the caller's (run() flushes at the end)


def _make_sample_module() -> Any:
    path = Path(producers.__file__).parent / "samples" / "make_sample.py"
    spec = importlib.util.spec_from_file_location("make_sample", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_sample_is_what_its_script_makes_and_replays_without_a_bad_line() -> None:
    sample = Path(producers.__file__).parent / "samples" / "sample-trades.jsonl"
    shipped = sample.read_text().splitlines()
    made = [json.dumps(line, separators=(", ", ": ")) for line in _make_sample_module().lines(20250106, 1000)]
    assert shipped[1:] == made
    records = list(read_jsonl(shipped))
    assert all(isinstance(r, LogRecord) for r in records) and len(records) > 3000
    signals = [r.item for r in records if isinstance(r.item, SignalCommand)]  # type: ignore[union-attr]
    types = {o.order_type for s in signals for o in s.orders}
    assert types == {"MARKET", "LIMIT", "STOP_MARKET", "STOP_LIMIT", "CANCEL_ALL_ORDER"}
    assert any(s.is_batch for s in signals)
    assert {s.group_name for s in signals} == {group for _, _, group, _ in demo.DEMO_STRATEGIES}


@pytest.mark.expect_log('trades.jsonl:2')
@pytest.mark.parametrize(("line", "message"), [
    ('{"ts": 1, "type": "tick", "symbol": "BTC/USDT", "price": "cheap"}', "price: expected a finite number greater than 0"),
    ('{"ts": 1, "type": "tick", "a": ' + "[" * 100_000 + "]" * 100_000 + "}",
     "not valid JSON: nested deeper than 32 levels"),  # was a RecursionError's traceback
])
def test_bad_line_stops_the_replay_with_file_and_line_number(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, line: str, message: str
) -> None:
    log = tmp_path / "trades.jsonl"
    log.write_text(f"# header\n{line}\n")
    config = ReplayConfig(log, speed=0, database_url=f"sqlite:///{tmp_path / 'replay.db'}", orders="tcp://127.0.0.1:1")
    with log.open() as stream:
        assert run(config, stream, threading.Event()) == 1
    assert f"{log}:2: {message}" in caplog.text


def test_replay_defaults_are_the_contract_endpoints(tmp_path: Path) -> None:
    from producers.replay import parse_config

    config, _ = parse_config([str(tmp_path / "log.jsonl")])
    assert (config.orders, config.ingress) == ("ipc://var/bus/orders", "ipc://var/bus/ingress")
