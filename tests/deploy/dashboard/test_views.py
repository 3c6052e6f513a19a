"""What a trader reads on the dashboard: full times, order ids, sorting, filters, history pages,
the last batch after a reload, the narrow layout, P&L and exact decimals. Real Chromium, real stack."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from bus import codec
from bus.publisher import Publisher
from bus.topics import StreamKey, key_topic
from store.db import make_engine, make_session_factory
from store.models import Order
from tests.deploy.dashboard.browser import Console, log_in, new_page, sign_in
from tests.deploy.stack import Stack
from tests.waiting import wait_until

# One worker runs all of them (--dist loadgroup, setup.cfg), so the package's `stack` and `browser` (conftest.py) start once, not once per worker.
pytestmark = pytest.mark.xdist_group("dashboard")

LOCAL_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d E[SD]T$")  # the pages run in America/New_York


def rest_orders(stack: Stack, username: str = "alice", group_name: str = "btc-trend") -> list[dict[str, Any]]:
    status, body = stack.request("GET", f"/api/orders?strategy_id={stack.strategy(group_name)['id']}",
                                 token=stack.user(username)["api_token"])
    assert status == 200, body
    return list(body["orders"])


def wait_rest_order(stack: Stack, symbol: str, **fields: Any) -> dict[str, Any]:
    """alice's order in `symbol` once the database has it with `fields`."""
    def found() -> dict[str, Any] | None:
        return next((o for o in rest_orders(stack) if o["symbol"] == symbol and fields.items() <= o.items()), None)
    return wait_until(found, timeout=20, what=f"alice's {symbol} order with {fields}")


def row(page: Any, order_id: str) -> Any:
    return page.locator(f'#orders tbody tr[data-id="{order_id}"]')


def shown_order_ids(page: Any) -> list[str]:
    return list(page.eval_on_selector_all("#orders tbody tr", "rows => rows.map(r => r.dataset.id)"))


def test_orders_show_full_local_times_with_utc_on_hover_and_their_order_id(stack: Stack, page: Any) -> None:
    log_in(page, stack, "alice", "btc-trend")
    stack.post_signal("btc-trend", symbol="TIME/USDT", price="123")
    order = wait_rest_order(stack, "TIME/USDT")
    cells = row(page, order["order_id"]).locator("td")
    cells.first.wait_for()
    assert LOCAL_TIME.match(cells.nth(0).inner_text().strip())
    utc = order["timestamp"].replace("T", " ").replace("Z", " UTC")  # microseconds kept
    assert cells.nth(0).locator("time").get_attribute("title") == utc
    assert (cells.nth(1).inner_text(), cells.nth(1).get_attribute("title")) == (order["order_id"], order["order_id"])
    header = page.locator("#orders th[data-sort=timestamp]")
    assert header.inner_text().startswith("UPDATED") and "last changed" in (header.get_attribute("title") or "")


def test_orders_sort_by_their_last_change_then_by_the_column_clicked(stack: Stack, page: Any, tmp_path: Any) -> None:
    log_in(page, stack, "alice", "btc-trend")
    stack.post_signal("btc-trend", symbol="SRTA/USDT", price="50")
    first = wait_rest_order(stack, "SRTA/USDT")
    stack.post_signal("btc-trend", symbol="SRTB/USDT", price="50")
    second = wait_rest_order(stack, "SRTB/USDT")
    row(page, second["order_id"]).wait_for()
    assert shown_order_ids(page)[:2] == [second["order_id"], first["order_id"]]  # newest change on top
    # A fill changes the older order: it moves to the top, as the Updated column says.
    (tmp_path / "tick.jsonl").write_text('{"ts": 0, "type": "tick", "symbol": "SRTA/USDT", "price": 49}\n')
    stack.run_bin("tradestream-replay", "--speed", "0", str(tmp_path / "tick.jsonl"))
    wait_until(lambda: shown_order_ids(page)[:1] == [first["order_id"]], timeout=20, what="the filled order on top")
    assert page.get_attribute("#orders th[data-sort=timestamp]", "aria-sort") == "descending"

    page.click("#orders th[data-sort=symbol] button")
    assert page.get_attribute("#orders th[data-sort=symbol]", "aria-sort") == "ascending"
    symbols = page.eval_on_selector_all("#orders tbody tr td:nth-child(3)", "cells => cells.map(c => c.innerText)")
    assert symbols == sorted(symbols) and len(symbols) >= 2
    page.click("#orders th[data-sort=symbol] button")
    symbols = page.eval_on_selector_all("#orders tbody tr td:nth-child(3)", "cells => cells.map(c => c.innerText)")
    assert symbols == sorted(symbols, reverse=True)


def test_orders_filter_by_symbol_side_and_status(stack: Stack, page: Any) -> None:
    log_in(page, stack, "alice", "btc-trend")
    stack.post_signal("btc-trend", symbol="FLT/USDT", side="sell", price="70")
    stack.post_signal("btc-trend", symbol="FLT/USDT", side="buy", order_type="MARKET", price="71")
    sell = wait_rest_order(stack, "FLT/USDT", side="SELL")
    wait_rest_order(stack, "FLT/USDT", side="BUY", status="FILLED")
    wait_until(lambda: len(page.locator("#orders tbody tr", has_text="FLT/USDT").all()) == 2, what="both FLT orders shown")

    page.select_option("#filter-symbol", "FLT/USDT")
    texts = page.eval_on_selector_all("#orders tbody tr td:nth-child(3)", "cells => cells.map(c => c.innerText)")
    assert texts == ["FLT/USDT", "FLT/USDT"]
    page.select_option("#filter-side", "SELL")
    assert shown_order_ids(page) == [sell["order_id"]]
    page.select_option("#filter-side", "")
    page.select_option("#filter-status", "FILLED")
    assert [t.split()[0] for t in page.eval_on_selector_all("#orders tbody tr td:nth-child(4)", "c => c.map(x => x.innerText)")] == ["BUY"]
    page.select_option("#filter-status", "resting")
    assert shown_order_ids(page) == [sell["order_id"]]
    assert "match" in page.inner_text("#orders-shown")


def insert_history(stack: Stack, count: int) -> int:
    """`count` old HIST/USDT orders (and one other) of alice's in btc-trend, straight into the database; her total there."""
    alice = stack.user("alice")["id"]
    strategy_id = stack.strategy("btc-trend")["id"]
    account_id = next(a["id"] for a in stack.demo["accounts"] if a["user_id"] == alice)
    engine = make_engine(stack.env["TRADESTREAM_DATABASE_URL"])
    try:
        with make_session_factory(engine)() as session:
            session.add_all(
                Order(order_id=f"hist-{n:04d}", account_id=account_id, strategy_id=strategy_id, user_id=alice,
                      symbol="HIST/USDT", side="BUY", order_type="LIMIT", quantity=Decimal(1), price=Decimal(10 + n),
                      status="CANCELLED", filled_quantity=Decimal(0))
                for n in range(count)
            )
            # One order of another symbol, so that filtering on HIST/USDT has something to leave out
            # even when this test runs alone on its stack.
            session.add(Order(order_id="hist-other", account_id=account_id, strategy_id=strategy_id, user_id=alice,
                              symbol="ELSE/USDT", side="SELL", order_type="LIMIT", quantity=Decimal(1),
                              price=Decimal(5), status="CANCELLED", filled_quantity=Decimal(0)))
            session.commit()
            return int(session.scalar(select(func.count()).select_from(Order).where(
                Order.user_id == alice, Order.strategy_id == strategy_id)) or 0)
    finally:
        engine.dispose()


def test_history_pages_back_beyond_the_newest_orders(stack: Stack, page: Any) -> None:
    total = insert_history(stack, 1100)  # more than one page (500) and more than the old 1,000 snapshot
    log_in(page, stack, "alice", "btc-trend")
    assert int(page.inner_text("#orders-count")) == 500
    while page.locator("#orders-older").is_visible():
        held = page.inner_text("#orders-count")
        page.click("#orders-older")
        # The page arrived and was drawn: the table renders on the next animation frame, and the
        # button's `hidden` is set in that render, so `disabled` alone would let us look too early.
        page.wait_for_function(
            "held => !document.getElementById('orders-older').disabled"
            " && document.getElementById('orders-count').textContent !== held", arg=held)
    assert int(page.inner_text("#orders-count")) == total
    page.select_option("#filter-symbol", "HIST/USDT")
    assert page.inner_text("#orders-shown") == f"1100 of {total} match"
    while page.locator("#orders-more").is_visible():
        page.click("#orders-more")
    assert page.locator("#orders tbody tr").count() == 1100
    assert row(page, "hist-0000").count() == 1  # the oldest of all


def test_last_batch_survives_a_reload_and_is_the_same_in_another_browser(stack: Stack, page: Any, browser: Any, console: Console) -> None:
    log_in(page, stack, "alice", "btc-trend")
    body = {"group_name": "btc-trend", "token": stack.strategy("btc-trend")["webhook_token"], "orders": [
        {"symbol": "BAT/USDT", "side": "buy", "order_type": "LIMIT", "price": "5", "qty_per": 1},
        {"symbol": "BAT/USDT", "side": "buy", "order_type": "STOP_MARKET", "stop_price": "9", "qty_per": 1},
        {"symbol": "BAT/USDT", "side": "buy", "order_type": "LIMIT", "price": "6", "qty_per": 1},
    ]}
    status, answer = stack.request("POST", "/api/webhook", body, base_url=stack.webhook_url)
    assert status == 200, answer
    page.wait_for_selector("#batch table")
    summary = page.inner_text("#batch")
    assert "LIMIT\t2\t0" in summary and "STOP_MARKET\t1\t0" in summary

    page.reload()
    page.wait_for_selector("#connection[data-state=connected]")
    page.wait_for_selector("#batch table")
    assert page.inner_text("#batch") == summary
    elsewhere = new_page(browser, console)
    log_in(elsewhere, stack, "alice", "btc-trend")
    elsewhere.wait_for_selector("#batch table")
    assert elsewhere.inner_text("#batch") == summary
    elsewhere.context.close()


def test_a_phone_keeps_the_order_time_and_status_and_toasts_never_cover_the_table(stack: Stack, browser: Any, console: Console) -> None:
    phone = new_page(browser, console, width=390, height=800)
    log_in(phone, stack, "alice", "btc-trend")
    stack.post_signal("btc-trend", symbol="PHN/USDT", price="77")
    order = wait_rest_order(stack, "PHN/USDT")
    cells = row(phone, order["order_id"]).locator("td")
    cells.first.wait_for()
    clock = cells.nth(0).locator(".clock")
    assert clock.is_visible() and re.fullmatch(r"\d\d:\d\d:\d\d", clock.inner_text())
    status = row(phone, order["order_id"]).locator(".badge").bounding_box()
    assert status is not None and status["x"] + status["width"] <= 390  # on screen, no sideways scrolling
    toast = phone.locator(".toast").first
    toast.wait_for()
    box, table = toast.bounding_box(), phone.locator("#orders").bounding_box()
    assert box is not None and table is not None and box["y"] + box["height"] <= table["y"]  # above it, never over it
    phone.context.close()


def publish_raw_position(stack: Stack, wire: dict[str, Any]) -> None:
    """A position event as an outside publisher would send it: a msgpack map with fields of its own."""
    publisher = Publisher(stack.env["TRADESTREAM_INGRESS"])
    try:
        publisher.send(key_topic(StreamKey(wire["user_id"], wire["strategy_id"])), codec.pack(wire))
    finally:
        publisher.close()


def test_positions_show_mark_price_pnl_and_equity_exactly_when_the_server_sends_them(stack: Stack, page: Any) -> None:
    log_in(page, stack, "alice", "btc-trend")
    alice, strategy_id = stack.user("alice")["id"], stack.strategy("btc-trend")["id"]
    account_id = next(a["id"] for a in stack.demo["accounts"] if a["user_id"] == alice)
    base = {
        "kind": "position_update", "event_type": "position_updated", "strategy_id": strategy_id, "user_id": alice,
        "quantity": 0.05755588, "entry_price": 87833.56795736343, "timestamp": "2026-01-02T03:04:05.678901Z",
        "previous_quantity": None, "account_name": "alice paper", "exchange": "paper",
        "account": {"account_id": account_id, "name": "alice paper", "exchange": "paper", "equity": "100012.50"},
    }
    publish_raw_position(stack, {**base, "position_id": 900_001, "symbol": "PNL/USDT", "mark_price": "90123.456789",
                                 "unrealized_pnl": "-3.25", "realized_pnl": "1234.50"})
    publish_raw_position(stack, {**base, "position_id": 900_002, "symbol": "PNLN/USDT", "mark_price": 0.1,
                                 "unrealized_pnl": 0.30000000000000004, "realized_pnl": 0})
    strings = page.locator('#positions tr[data-id="900001"] td')
    numbers = page.locator('#positions tr[data-id="900002"] td')
    numbers.first.wait_for()
    texts = [strings.nth(i).inner_text() for i in range(6)]
    assert texts == ["PNL/USDT", "0.05755588", "87,833.56795736343", "90,123.456789", "−3.25", "+1,234.50"]
    assert "loss" in (strings.nth(4).get_attribute("class") or "") and "gain" in (strings.nth(5).get_attribute("class") or "")
    assert [numbers.nth(i).inner_text() for i in (3, 4, 5)] == ["0.1", "+0.30000000000000004", "0"]
    assert page.inner_text("#equity") == "Equity · alice paper: 100,012.50"
    assert page.locator("#positions.has-pnl").count() == 1  # the P&L columns are shown



def overflow(page: Any, table: str) -> int:
    """How many pixels of a table its card hides behind a sideways scroll."""
    return int(page.evaluate(f"(() => {{ const w = document.querySelector('#{table}').closest('.table-wrap');"
                             " return w.scrollWidth - w.clientWidth; })()"))


@pytest.mark.parametrize("width", [1280, 1600, 1920])
def test_on_a_laptop_or_a_wide_screen_every_column_of_positions_and_orders_is_in_view(
        stack: Stack, browser: Any, console: Console, width: int) -> None:
    """A side column used to squeeze the positions table: at 1500 px and wider its P&L columns (and the
    orders' price and account) were behind a sideways scroll, at 1280 its account and time. A strategy of
    its own: the shared ones hold other tests' deliberately odd rows."""
    alice = stack.user("alice")
    account_id = next(a["id"] for a in stack.demo["accounts"] if a["user_id"] == alice["id"])
    group = f"wide-{width}"
    made = json.loads(stack.run_bin("tradestream-admin", "create-strategy", "--owner", "alice", "--name", group,
                                    "--group", group, "--json").stdout)
    stack.run_bin("tradestream-admin", "link", "--strategy", str(made["id"]), "--account", str(account_id))
    screen = new_page(browser, console, width=width, height=900)
    sign_in(screen, stack.base_url, "alice", alice["password"], made["id"])
    position_id = 900_100 + width
    # What the ledger sends for a real position: an average entry price with 8 more decimals than the price
    # step, P&L to quantity step x price step, six-figure amounts.
    publish_raw_position(stack, {
        "kind": "position_update", "event_type": "position_marked", "position_id": position_id,
        "symbol": "BTC/USDT", "strategy_id": made["id"], "user_id": alice["id"], "quantity": "0.29651529",
        "entry_price": "86986.1730323714", "timestamp": "2026-01-02T03:04:05.678901Z", "previous_quantity": "0.29651529",
        "account_name": "alice paper", "exchange": "paper", "mark_price": "84722.70",
        "unrealized_pnl": "-671.1543626008", "realized_pnl": "-159.2656832224",
        "account": {"account_id": account_id, "name": "alice paper", "exchange": "paper", "equity": "99169.5799541768"},
    })
    signal = {"group_name": group, "token": made["webhook_token"], "symbol": "BTC/USDT", "side": "sell",
              "order_type": "STOP_MARKET", "stop_price": "84333.70", "qty_per": 1}
    assert stack.request("POST", "/api/webhook", signal, base_url=stack.webhook_url)[0] == 200
    screen.locator(f'#positions tr[data-id="{position_id}"]').wait_for()
    screen.locator("#orders tbody tr").first.wait_for()
    assert screen.locator("#positions.has-pnl").count() == 1
    assert (overflow(screen, "positions"), overflow(screen, "orders")) == (0, 0)
    realized = screen.locator(f'#positions tr[data-id="{position_id}"] td').nth(5)
    box = realized.bounding_box()
    assert box is not None and box["x"] + box["width"] <= width and realized.inner_text() == "−159.2656832224"
    screen.context.close()

FORMAT_CASES = [
    # value, options, shown (en-US)
    ("0.05755588", {}, "0.05755588"),
    (0.019155879999999993, {}, "0.019155879999999993"),  # a float is shown as its JSON wrote it
    ("87833.56795736343", {}, "87,833.56795736343"),
    ("1234567.000", {}, "1,234,567.000"),  # trailing zeros of a decimal string are its precision
    (90000, {}, "90,000"),
    (1e-7, {}, "0.0000001"),
    (1.5e21, {}, "1,500,000,000,000,000,000,000"),
    ("-3.25", {}, "−3.25"),
    ("12.5", {"signed": True}, "+12.5"),
    ("-0.00", {"signed": True}, "0.00"),
    ("0", {"signed": True}, "0"),
    ("+5", {}, "5"),
    (".5", {}, "0.5"),
    ("123456789012345678901234567890.123456789", {}, "123,456,789,012,345,678,901,234,567,890.123456789"),
    (None, {}, "—"),
    ("n/a", {}, "n/a"),  # not a decimal: shown as received
]
COMPARE_CASES = [("0.1", 0.1, 0), ("1.10", "1.1", 0), ("-2", "1", -1), ("10", "9.99999999999999999999", 1),
                 ("-10", "-9", -1), ("0.30000000000000004", "0.3", 1), (None, "0", -1)]


def test_decimals_and_numbers_are_formatted_exactly_in_the_page(stack: Stack, page: Any) -> None:
    page.goto(stack.base_url + "/")
    results = page.evaluate(
        """async ([formats, compares]) => {
            const m = await import('/static/format.js');
            return [formats.map(([v, o]) => m.formatDecimal(v, o)),
                    compares.map(([a, b]) => Math.sign(m.compareDecimal(a, b)))];
        }""",
        [[[v, o] for v, o, _ in FORMAT_CASES], [[a, b] for a, b, _ in COMPARE_CASES]],
    )
    assert results[0] == [shown for _, _, shown in FORMAT_CASES]
    assert results[1] == [sign for _, _, sign in COMPARE_CASES]


@pytest.mark.parametrize("path", ["/favicon.ico", "/static/favicon.svg"])
def test_the_favicon_is_served(stack: Stack, page: Any, path: str) -> None:
    response = page.request.get(stack.base_url + path)
    assert response.status == 200 and response.headers["content-type"].startswith("image/svg+xml")
