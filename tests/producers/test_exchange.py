"""The paper exchange: immediate MARKET fills, resting orders, stops, partial fills, cancel-all."""

from __future__ import annotations

import itertools
from decimal import Decimal

from producers.exchange import Fill, PaperExchange, PaperOrder

D = Decimal
ONE = Decimal(1)

_ids = itertools.count(1)


def order(order_type: str, side: str = "BUY", quantity: Decimal = ONE, price: Decimal | None = None,
          stop_price: Decimal | None = None, strategy_id: int = 1, symbol: str = "BTC/USDT") -> PaperOrder:
    return PaperOrder(f"o-{next(_ids)}", strategy_id, 1, symbol, side, order_type, quantity, price, stop_price)


def test_market_fills_at_once_at_the_signal_price() -> None:
    exchange = PaperExchange()
    change = exchange.place(order("MARKET", quantity=D("2.0")), market_price=D("90000.0"))
    assert (change.order.status, change.order.filled_quantity, change.order.average_price) == ("FILLED", D("2.0"), D("90000.0"))
    assert change.fill == Fill(D("2.0"), D("90000.0")) and change.previous_filled is None
    assert exchange.open_orders() == []


def test_market_without_price_uses_the_last_tick_or_is_rejected() -> None:
    exchange = PaperExchange()
    assert exchange.place(order("MARKET")).order.status == "REJECTED"
    exchange.tick("BTC/USDT", D("91000.0"))
    change = exchange.place(order("MARKET"))
    assert (change.order.status, change.fill) == ("FILLED", Fill(D("1.0"), D("91000.0")))


def test_limit_buy_rests_until_a_tick_at_or_below_its_price_then_fills_at_its_price() -> None:
    exchange = PaperExchange()
    placed = exchange.place(order("LIMIT", price=D("90000.0")))
    assert placed.order.status == "NEW" and placed.fill is None
    assert exchange.tick("BTC/USDT", D("90000.01")) == []
    (change,) = exchange.tick("BTC/USDT", D("89500.0"))
    assert (change.order.status, change.fill, change.previous_filled) == ("FILLED", Fill(D("1.0"), D("90000.0")), D("0.0"))
    assert exchange.open_orders() == []


def test_limit_sell_fills_at_or_above_its_price() -> None:
    exchange = PaperExchange()
    exchange.place(order("LIMIT", side="SELL", price=D("100.0")))
    assert exchange.tick("BTC/USDT", D("99.0")) == []
    (change,) = exchange.tick("BTC/USDT", D("100.0"))
    assert change.order.status == "FILLED"


def test_tick_volume_smaller_than_the_rest_fills_partially_with_a_weighted_average() -> None:
    exchange = PaperExchange()
    exchange.place(order("STOP_MARKET", quantity=D("1.0"), stop_price=D("100.0")))
    (first,) = exchange.tick("BTC/USDT", D("101.0"), volume=D("0.25"))
    assert (first.order.status, first.fill) == ("PARTIALLY_FILLED", Fill(D("0.25"), D("101.0")))
    (second,) = exchange.tick("BTC/USDT", D("105.0"), volume=D("10.0"))
    assert (second.order.status, second.previous_filled, second.fill) == ("FILLED", D("0.25"), Fill(D("0.75"), D("105.0")))
    assert second.order.average_price == D("0.25") * 101 + D("0.75") * 105  # exact


def test_tick_volume_is_shared_oldest_order_first() -> None:
    exchange = PaperExchange()
    older = exchange.place(order("LIMIT", quantity=D("1.0"), price=D("100.0"))).order
    newer = exchange.place(order("LIMIT", quantity=D("1.0"), price=D("100.0"))).order
    changes = exchange.tick("BTC/USDT", D("99.0"), volume=D("1.5"))
    assert [(c.order.order_id, c.fill) for c in changes] == [(older.order_id, Fill(D("1.0"), D("100.0"))), (newer.order_id, Fill(D("0.5"), D("100.0")))]
    assert newer.status == "PARTIALLY_FILLED" and exchange.open_orders() == [newer]


def test_stop_market_triggers_on_its_side_of_the_stop_and_fills_at_the_tick() -> None:
    exchange = PaperExchange()
    buy = exchange.place(order("STOP_MARKET", "BUY", stop_price=D("110.0"))).order
    sell = exchange.place(order("STOP_MARKET", "SELL", stop_price=D("90.0"))).order
    assert exchange.tick("BTC/USDT", D("100.0")) == []
    (up,) = exchange.tick("BTC/USDT", D("111.0"))
    assert (up.order, up.fill) == (buy, Fill(D("1.0"), D("111.0")))
    (down,) = exchange.tick("BTC/USDT", D("89.0"))
    assert (down.order, down.fill) == (sell, Fill(D("1.0"), D("89.0")))


def test_triggered_stop_without_volume_left_waits_as_triggered() -> None:
    exchange = PaperExchange()
    exchange.place(order("LIMIT", price=D("120.0"), quantity=D("1.0")))
    stop = exchange.place(order("STOP_MARKET", stop_price=D("110.0"))).order
    changes = exchange.tick("BTC/USDT", D("115.0"), volume=D("1.0"))
    assert [c.order.status for c in changes] == ["FILLED", "TRIGGERED"]
    assert changes[1].fill is None and stop.status == "TRIGGERED"
    (later,) = exchange.tick("BTC/USDT", D("116.0"), volume=D("5.0"))
    assert (later.order, later.fill) == (stop, Fill(D("1.0"), D("116.0")))


def test_stop_limit_triggers_then_fills_only_when_its_limit_is_crossed() -> None:
    exchange = PaperExchange()
    exchange.place(order("STOP_LIMIT", "SELL", price=D("99.0"), stop_price=D("98.0")))
    assert exchange.tick("BTC/USDT", D("98.5")) == []  # above the stop: nothing
    (triggered,) = exchange.tick("BTC/USDT", D("97.0"))  # at or below the stop, below the limit
    assert (triggered.order.status, triggered.fill) == ("TRIGGERED", None)
    assert exchange.tick("BTC/USDT", D("98.5")) == []  # a SELL limit needs the price at or above 99
    (filled,) = exchange.tick("BTC/USDT", D("99.5"))
    assert (filled.order.status, filled.fill) == ("FILLED", Fill(D("1.0"), D("99.0")))


def test_stop_limit_fills_on_the_triggering_tick_when_it_crosses() -> None:
    exchange = PaperExchange()
    exchange.place(order("STOP_LIMIT", "BUY", price=D("105.0"), stop_price=D("100.0")))
    (change,) = exchange.tick("BTC/USDT", D("101.0"))
    assert (change.order.status, change.fill) == ("FILLED", Fill(D("1.0"), D("105.0")))


def test_cancel_all_cancels_only_that_strategys_resting_orders_in_the_symbol() -> None:
    exchange = PaperExchange()
    mine = [exchange.place(order("LIMIT", price=D("1.0"))).order, exchange.place(order("STOP_MARKET", stop_price=D("9.0"))).order]
    other_strategy = exchange.place(order("LIMIT", price=D("1.0"), strategy_id=2)).order
    other_symbol = exchange.place(order("LIMIT", price=D("1.0"), symbol="ETH/USDT")).order
    changes = exchange.cancel_all(1, "BTC/USDT")
    assert [c.order for c in changes] == mine
    assert all(c.order.status == "CANCELLED" and c.previous_filled == D("0.0") for c in changes)
    assert exchange.open_orders() == [other_strategy, other_symbol]
    assert exchange.cancel_all(1, "BTC/USDT") == []


def test_ticks_of_another_symbol_do_not_touch_an_order() -> None:
    exchange = PaperExchange()
    exchange.place(order("LIMIT", price=D("100.0")))
    assert exchange.tick("ETH/USDT", D("1.0")) == []
    assert exchange.last_prices == {"ETH/USDT": D("1.0")}


def test_restore_puts_back_only_resting_orders() -> None:
    exchange = PaperExchange()
    resting = order("LIMIT", price=D("100.0"))
    resting.status, resting.filled_quantity = "PARTIALLY_FILLED", D("0.5")
    done = order("LIMIT", price=D("100.0"))
    done.status = "FILLED"
    exchange.restore(resting)
    exchange.restore(done)
    (change,) = exchange.tick("BTC/USDT", D("99.0"))
    assert (change.order, change.previous_filled, change.fill) == (resting, D("0.5"), Fill(D("0.5"), D("100.0")))
