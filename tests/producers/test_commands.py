"""Command frames between producers: round trips, and poison frames refused cleanly."""

from __future__ import annotations

import pytest

from bus import codec
from producers.commands import FILL, SIGNAL, TICK, FillCommand, SignalCommand, TickCommand, decode, topic_of
from producers.errors import InvalidCommand
from producers.signals import OrderSpec

COMMANDS = [
    SignalCommand("btc-trend", (OrderSpec("LIMIT", "BTC/USDT", "BUY", 90000.0, None, 5.0),), False, 1, 7),
    SignalCommand("eth-swing", (OrderSpec("STOP_LIMIT", "ETH/USDT", "SELL", 3000.0, 2990.0, 1.5), OrderSpec("CANCEL_ALL_ORDER", "ETH/USDT")), True),
    SignalCommand("sol-scalp", (OrderSpec("MARKET", "SOL/USDT", "BUY", None, None, 2.0),)),
    TickCommand("BTC/USDT", 90000.5, 0.25),
    TickCommand("BTC/USDT", 90000.5),
    FillCommand("paper-1", 1, 2, 3, "BTC/USDT", "SELL", 0.5, 90000.0),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_command_round_trips_through_its_frames(command: SignalCommand | TickCommand | FillCommand) -> None:
    frames = [topic_of(command), codec.pack(command.to_wire())]
    assert decode(frames) == command


@pytest.mark.parametrize(
    "frames",
    [
        [SIGNAL],
        [b"order", codec.pack({})],
        [TICK, b"\xc1"],
        [TICK, codec.pack([1, 2])],
        [TICK, codec.pack({"symbol": "BTC/USDT", "price": -1})],
        [TICK, codec.pack({"symbol": "BTCUSDT", "price": 1})],
        [TICK, codec.pack({"symbol": "BTC/USDT", "price": 1, "volume": "a lot"})],
        [SIGNAL, codec.pack({"group_name": "g", "orders": [], "is_batch": False})],
        [SIGNAL, codec.pack({"group_name": "g", "orders": ["x"], "is_batch": False})],
        [SIGNAL, codec.pack({"group_name": "g", "orders": [{"order_type": "LIMIT"}], "is_batch": False})],
        [SIGNAL, codec.pack({"group_name": 5, "orders": [{"order_type": "CANCEL_ALL_ORDER", "symbol": "A/B"}], "is_batch": False})],
        [FILL, codec.pack({**FillCommand("p", 1, 1, 1, "A/B", "BUY", 1.0, 1.0).to_wire(), "side": "HOLD"})],
        [FILL, codec.pack({**FillCommand("p", 1, 1, 1, "A/B", "BUY", 1.0, 1.0).to_wire(), "account_id": True})],
    ],
)
def test_malformed_frames_are_invalid_commands(frames: list[bytes]) -> None:
    with pytest.raises(InvalidCommand):
        decode(frames)
