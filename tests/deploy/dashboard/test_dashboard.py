"""The dashboard in real headless Chromium, against the whole stack under supervisord.

Each test drives the real stack (webhook signals, replayed ticks, supervisorctl)
and reads what a trader sees. The page's console must stay clean (browser.py).
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from store.db import make_engine, make_session_factory
from store.models import Order
from tests.deploy.dashboard.browser import Console, log_in
from tests.deploy.stack import Stack
from tests.waiting import wait_until

# One worker runs all of them (--dist loadgroup, setup.cfg), so the package's `stack` and `browser` (conftest.py) start once, not once per worker.
pytestmark = pytest.mark.xdist_group("dashboard")

REFUSED = "ERR_CONNECTION_REFUSED"  # Chromium's console line for each request to a stopped streamer


def order_row(page: Any, text: str) -> Any:
    return page.locator("#orders tbody tr", has_text=text)


def wait_for_order_in_database(stack: Stack, price: int) -> None:
    """Wait until the order handler committed the order (it publishes right after)."""
    engine = make_engine(stack.env["TRADESTREAM_DATABASE_URL"])
    try:
        sessions = make_session_factory(engine)

        def committed() -> bool:
            with sessions() as session:  # money columns are compared in Python, not SQL (decimal text on SQLite)
                return any(order_price == price for order_price in session.scalars(select(Order.price)))

        wait_until(committed, timeout=20, what=f"the order at {price} in the database", poll=0.1)
    finally:
        engine.dispose()


@pytest.mark.expect_console(REFUSED)
def test_dashboard_shows_live_orders_and_catches_up_after_the_streamers_restart(
    stack: Stack, page: Any, tmp_path: Path
) -> None:
    log_in(page, stack, "alice", "btc-trend")

    stack.post_signal("btc-trend", price="65001")
    order_row(page, "65,001").first.wait_for()
    page.locator(".toast", has_text="65,001").first.wait_for()

    # Both streamers go away: the page says the server is unreachable and greys what may be stale.
    stack.ctl("stop", "streamer:*")
    page.wait_for_selector("#outage:not([hidden])")
    assert "Server unreachable." in page.inner_text("#outage")
    assert page.evaluate("document.body.classList.contains('stale')")
    stack.post_signal("btc-trend", price="65002")
    wait_for_order_in_database(stack, 65002)

    # Back: it resumes from its last event id and shows what it missed, once.
    stack.ctl("start", "streamer:*")
    order_row(page, "65,002").first.wait_for()
    page.wait_for_selector("#connection[data-state=connected]")
    page.wait_for_selector("#outage", state="hidden")
    assert not page.evaluate("document.body.classList.contains('stale')")
    assert order_row(page, "65,001").count() == 1  # alice's own account's order, not repeated by the resume


def test_dashboard_resyncs_after_the_broker_is_killed(stack: Stack, page: Any) -> None:
    log_in(page, stack, "alice", "btc-trend")
    stack.sigkill("broker")
    stack.wait_healthy()

    # The new broker has a new epoch (or its journal's): the dashboard goes on live either way.
    stack.post_signal("btc-trend", price="65101")
    order_row(page, "65,101").first.wait_for()
    page.wait_for_selector("#connection[data-state=connected]")


@pytest.mark.expect_console("503 (Service Unavailable)")
def test_a_stopped_broker_shows_the_bus_down_banner_until_it_is_back(stack: Stack, page: Any) -> None:
    log_in(page, stack, "alice", "btc-trend")
    stack.ctl("stop", "broker")
    try:
        page.wait_for_selector("#outage:not([hidden])")
        assert "Live data paused: event bus down." in page.inner_text("#outage")
        assert page.evaluate("document.body.classList.contains('stale')")
        page.wait_for_selector("#connection[data-state=paused]")  # no longer a green "connected"
    finally:
        stack.ctl("start", "broker")
    page.wait_for_selector("#outage", state="hidden")
    page.wait_for_selector("#connection[data-state=connected]")
    stack.post_signal("btc-trend", price="65151")
    order_row(page, "65,151").first.wait_for()


def test_dashboard_shows_a_banner_and_stops_when_the_strategy_is_deactivated(stack: Stack, page: Any) -> None:
    strategy_id = str(stack.strategy("eth-swing")["id"])
    log_in(page, stack, "carol", "eth-swing")
    try:
        stack.run_bin("tradestream-admin", "deactivate", "--strategy", strategy_id)
        page.wait_for_selector("#banner:not([hidden])")
        assert "deactivated" in page.inner_text("#banner")
        assert page.get_attribute("#connection", "data-state") == "stopped"
    finally:
        stack.run_bin("tradestream-admin", "activate", "--strategy", strategy_id)


@pytest.mark.expect_console(REFUSED, "409 (Conflict)")
def test_dashboard_that_finds_its_strategy_deactivated_on_reconnect_shows_the_servers_text(stack: Stack, page: Any) -> None:
    strategy_id = str(stack.strategy("eth-swing")["id"])
    log_in(page, stack, "carol", "eth-swing")
    try:
        # No streamer hears the control message: the page finds out when it reconnects (409).
        stack.ctl("stop", "streamer:*")
        page.wait_for_selector("#connection[data-state=reconnecting]")
        stack.run_bin("tradestream-admin", "deactivate", "--strategy", strategy_id)
        stack.ctl("start", "streamer:*")
        page.wait_for_selector("#banner:not([hidden])")
        assert 'Strategy "ETH Swing" was deactivated.' in page.inner_text("#banner")  # bus/reasons.py's text
        assert page.get_attribute("#connection", "data-state") == "stopped"
    finally:
        stack.run_bin("tradestream-admin", "activate", "--strategy", strategy_id)
        stack.ctl("start", "streamer:*")


def test_strategy_picker_switches_tables_and_stream_to_the_chosen_strategy(stack: Stack, page: Any) -> None:
    log_in(page, stack, "alice", "btc-trend")
    stack.post_signal("btc-trend", price="65201")
    order_row(page, "65,201").first.wait_for()

    page.select_option("#strategy", str(stack.strategy("eth-swing")["id"]))
    page.wait_for_selector("#connection[data-state=connected]")
    stack.post_signal("eth-swing", symbol="ETH/USDT", price="3201")
    order_row(page, "3,201").first.wait_for()
    assert order_row(page, "65,201").count() == 0  # btc-trend's rows left with it


# ---- full state: the live row is the snapshot's row ----------------------------------------

ROW_FIELDS = """tr => [...tr.cells].map(td => [td.innerText.trim(), (td.querySelector('[title]') || td).title])"""


def row_fields(page: Any, order_id: str) -> list[list[str]] | None:
    """Every cell of an order's row: its text and its title (the UTC time, the full id)."""
    row = page.locator(f'#orders tbody tr[data-id="{order_id}"]')
    return row.evaluate(ROW_FIELDS) if row.count() else None


def replay_ticks(stack: Stack, tmp_path: Path, *ticks: dict[str, Any]) -> None:
    """Price ticks through the real pipeline: tradestream-replay → orders → broker → streamers."""
    log = tmp_path / "ticks.jsonl"
    log.write_text("".join(json.dumps({"ts": 0, "type": "tick", **tick}) + "\n" for tick in ticks))
    stack.run_bin("tradestream-replay", "--speed", "0", str(log))


def rest_order(stack: Stack, username: str, group_name: str, symbol: str) -> dict[str, Any] | None:
    status, body = stack.request("GET", f"/api/orders?strategy_id={stack.strategy(group_name)['id']}",
                                 token=stack.user(username)["api_token"])
    assert status == 200, body
    return next((o for o in body["orders"] if o["symbol"] == symbol), None)


def test_after_partial_fills_the_live_row_equals_the_snapshot_row_field_by_field(
    stack: Stack, page: Any, console: Console, tmp_path: Path
) -> None:
    log_in(page, stack, "alice", "btc-trend")
    # alice's order is 10 (1 % of 100,000 at 100), bob's 5; a tick's volume goes to the oldest first.
    stack.post_signal("btc-trend", symbol="PFX/USDT", price="100", qty_per=1)
    order = wait_until(lambda: rest_order(stack, "alice", "btc-trend", "PFX/USDT"), timeout=20, what="alice's PFX order")
    order_id = order["order_id"]
    fresh = new_page_in(page, console)  # the same login in a second tab, loaded from REST each time

    for volume, filled, status in ((3, 3, "PARTIALLY_FILLED"), (4.5, 7.5, "PARTIALLY_FILLED"), (5, 10, "FILLED")):
        replay_ticks(stack, tmp_path, {"symbol": "PFX/USDT", "price": 99, "volume": volume})
        snapshot = wait_until(lambda f=filled: (o := rest_order(stack, "alice", "btc-trend", "PFX/USDT")) and Decimal(o["filled_quantity"]) == Decimal(str(f)) and o,
                              timeout=20, what=f"{filled} filled in the database")
        assert (Decimal(snapshot["quantity"]), snapshot["status"]) == (10, status)
        fresh.reload()
        fresh.wait_for_selector(f'#orders tbody tr[data-id="{order_id}"]')
        expected = row_fields(fresh, order_id)
        # Qty and Filled digit for digit, as the server's decimal strings say them (the quantity step's 8 decimals)
        assert expected is not None and expected[6][0] == "10.00000000" and expected[7][0] == f"{Decimal(str(filled)):.8f}"
        wait_until(lambda e=expected: row_fields(page, order_id) == e, timeout=10,
                   what=f"the live row to equal the snapshot's after {filled} filled: {expected}")
    fresh.close()


def new_page_in(page: Any, console: Console) -> Any:
    """Another tab of the same browser context (its cookie and storage), its console watched too."""
    tab = page.context.new_page()
    console.watch(tab)
    tab.goto(page.url)
    tab.wait_for_selector("#connection[data-state=connected]")
    return tab
