"""Writes sample-trades.jsonl: a deterministic trade log for the demo strategies.

    .venv/bin/python producers/samples/make_sample.py [--output FILE] [--steps N] [--seed S]

Three markets move as random walks with slow trends (BTC/USDT for btc-trend,
ETH/USDT for eth-swing, SOL/USDT for sol-scalp), one tick per market per
second with a volume often smaller than the demo accounts' orders, so resting
orders fill partially. Each strategy sends, every half minute or so, one of:
a LIMIT inside the range (fills when the price comes back), a STOP_MARKET or
STOP_LIMIT beyond it (fills when a trend breaks out), a MARKET with or without
a price (then the last tick prices it), a batch ladder of LIMITs (sometimes
led by a CANCEL_ALL_ORDER), or a CANCEL_ALL_ORDER alone. Same seed, same file.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

START = datetime(2025, 1, 6, 9, 30, tzinfo=UTC)
# group name → (symbol, first price, volatility per second, tick volume range, price decimals)
MARKETS = {
    "btc-trend": ("BTC/USDT", 90_000.0, 0.0006, (0.005, 0.09), 1),
    "eth-swing": ("ETH/USDT", 3_000.0, 0.0008, (0.1, 2.5), 2),
    "sol-scalp": ("SOL/USDT", 150.0, 0.0010, (1.0, 25.0), 3),
}
Line = dict[str, Any]


def timestamp(second: float) -> str:
    return (START + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Market:
    """A price that wanders with a slowly turning trend."""

    def __init__(self, rng: random.Random, price: float, volatility: float, decimals: int) -> None:
        self.rng, self.price, self.volatility, self.decimals = rng, price, volatility, decimals
        self.phase = rng.uniform(0, 2 * math.pi)

    def step(self, second: int) -> float:
        trend = 0.35 * self.volatility * math.sin(second / 90 + self.phase)
        self.price *= math.exp(self.rng.gauss(trend, self.volatility))
        return round(self.price, self.decimals)

    def at(self, factor: float) -> str:
        """A price `factor` times the current one, as the numeric string TradingView sends."""
        return f"{self.price * factor:.{self.decimals}f}"


def one_order(rng: random.Random, market: Market, symbol: str) -> Line:
    side = rng.choice(["buy", "sell"])
    sign = -1 if side == "buy" else 1
    kind = rng.choices(["LIMIT", "STOP_MARKET", "STOP_LIMIT", "MARKET", "MARKET_LAST"], [5, 2, 2, 2, 1])[0]
    order: Line = {"symbol": symbol, "side": side, "qty_per": rng.choice([1, 2, 2.5, 5])}
    if kind == "LIMIT":
        return {**order, "order_type": "LIMIT", "price": market.at(1 + sign * rng.uniform(0.0005, 0.004))}
    if kind == "MARKET":
        return {**order, "order_type": "MARKET", "price": market.at(1)}
    if kind == "MARKET_LAST":
        return {**order, "order_type": "MARKET"}  # priced by the last tick
    stop = 1 - sign * rng.uniform(0.001, 0.005)  # a buy stop above the market, a sell stop below
    if kind == "STOP_MARKET":
        return {**order, "order_type": "STOP_MARKET", "stop_price": market.at(stop)}
    limit = stop * (1 - sign * 0.001)  # a little worse than the stop, so it fills once triggered
    return {**order, "order_type": "STOP_LIMIT", "stop_price": market.at(stop), "price": market.at(limit)}


def signal(rng: random.Random, group: str, market: Market, symbol: str, number: int) -> Line:
    roll = rng.random()
    line: Line = {"type": "signal", "group_name": group, "id": f"{group}-{number}"}
    if roll < 0.08:
        return {**line, "symbol": symbol, "order_type": "CANCEL_ALL_ORDER"}
    if roll < 0.22:
        side = rng.choice(["buy", "sell"])
        sign = -1 if side == "buy" else 1
        ladder = [
            {"symbol": symbol, "side": side, "order_type": "LIMIT", "qty_per": 1,
             "price": market.at(1 + sign * 0.001 * (rung + 1))}
            for rung in range(rng.randint(2, 5))
        ]
        lead = [{"symbol": symbol, "order_type": "CANCEL_ALL_ORDER"}] if rng.random() < 0.4 else []
        return {**line, "orders": lead + ladder}
    return {**line, **one_order(rng, market, symbol)}


def lines(seed: int, steps: int) -> Iterator[Line]:
    rng = random.Random(seed)
    markets = {group: Market(rng, price, vol, decimals) for group, (_, price, vol, _, decimals) in MARKETS.items()}
    next_signal = {group: rng.randint(3, 20) for group in MARKETS}
    numbers = dict.fromkeys(MARKETS, 0)
    for second in range(steps):
        for group, (symbol, _, _, (low, high), _) in MARKETS.items():
            price = markets[group].step(second)
            yield {"ts": timestamp(second), "type": "tick", "symbol": symbol, "price": price,
                   "volume": round(rng.uniform(low, high), 4)}
        for group, (symbol, *_) in MARKETS.items():
            if second == next_signal[group]:
                numbers[group] += 1
                yield {"ts": timestamp(second + 0.5), **signal(rng, group, markets[group], symbol, numbers[group])}
                next_signal[group] = second + rng.randint(10, 45)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("sample-trades.jsonl"))
    parser.add_argument("--steps", type=int, default=1000, help="seconds of market data")
    parser.add_argument("--seed", type=int, default=20250106)
    args = parser.parse_args()
    with args.output.open("w", encoding="utf-8") as out:
        out.write("# tradestream sample trade log: see docs/trade-log.md; made by make_sample.py\n")
        for line in lines(args.seed, args.steps):
            out.write(json.dumps(line, separators=(", ", ": ")) + "\n")


if __name__ == "__main__":
    main()
