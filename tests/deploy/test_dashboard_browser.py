"""The dashboard in real headless Chromium, against the whole stack under supervisord.

Needs Debian's `chromium` package and Playwright for Python in the venv (never
`playwright install`: it downloads a browser of its own). Without either, the
module is skipped and says which one is missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from store.db import make_engine, make_session_factory
from store.models import Order
from tests.deploy.stack import Stack
from tests.waiting import wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)")

TIMEOUT_MS = 30_000  # covers the dashboard's reconnect backoff while streamers are down


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies); fails the test on any uncaught JavaScript error."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US", timezone_id="UTC")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert errors == [], f"JavaScript errors: {errors}"


def log_in(page: Any, stack: Stack, username: str, group_name: str) -> None:
    """Open the dashboard, sign in and pick a strategy; returns once the stream is connected."""
    page.goto(stack.base_url + "/")
    page.fill("#login-form input[name=username]", username)
    page.fill("#login-form input[name=password]", stack.user(username)["password"])
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#dashboard:not([hidden])")
    page.select_option("#strategy", str(stack.strategy(group_name)["id"]))
    page.wait_for_selector("#connection[data-state=connected]")


def order_row(page: Any, price_text: str) -> Any:
    return page.locator("#orders tbody tr", has_text=price_text)


def wait_for_order_in_database(stack: Stack, price: float) -> None:
    """Wait until the order handler committed the order (it publishes right after)."""
    engine = make_engine(stack.env["TRADESTREAM_DATABASE_URL"])
    try:
        sessions = make_session_factory(engine)

        def committed() -> bool:
            with sessions() as session:
                return session.scalars(select(Order).where(Order.price == price)).first() is not None

        wait_until(committed, timeout=20, what=f"the order at {price} in the database", poll=0.1)
    finally:
        engine.dispose()


def test_dashboard_shows_live_orders_and_catches_up_after_the_streamers_restart(
    stack: Stack, page: Any, tmp_path: Path
) -> None:
    log_in(page, stack, "alice", "btc-trend")

    stack.post_signal("btc-trend", price="65001")
    order_row(page, "65,001").first.wait_for()
    page.locator(".toast", has_text="65,001").first.wait_for()
    page.screenshot(path=tmp_path / "dashboard-live.png")

    # Both streamers go away: the dashboard notices and keeps retrying.
    stack.ctl("stop", "streamer:*")
    page.wait_for_selector("#connection[data-state=reconnecting]")
    stack.post_signal("btc-trend", price="65002")
    wait_for_order_in_database(stack, 65002)

    # Back: it resumes from its last event id and shows what it missed, once.
    stack.ctl("start", "streamer:*")
    order_row(page, "65,002").first.wait_for()
    page.wait_for_selector("#connection[data-state=connected]")
    assert order_row(page, "65,001").count() == 1  # alice's own account's order, not repeated by the resume
    page.screenshot(path=tmp_path / "dashboard-after-restart.png")


def test_dashboard_resyncs_after_the_broker_is_killed(stack: Stack, page: Any) -> None:
    log_in(page, stack, "alice", "btc-trend")
    stack.sigkill("broker")
    stack.wait_healthy()

    # The new broker has a new epoch: the dashboard reloads its snapshot and goes on live.
    stack.post_signal("btc-trend", price="65101")
    order_row(page, "65,101").first.wait_for()
    page.wait_for_selector("#connection[data-state=connected]")


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


def test_dashboard_that_finds_its_strategy_deactivated_on_reconnect_shows_the_servers_text(stack: Stack, page: Any) -> None:
    strategy_id = str(stack.strategy("eth-swing")["id"])
    log_in(page, stack, "carol", "eth-swing")
    try:
        # No streamer hears the control message: the page finds out when it reconnects.
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
