"""Headless Chromium for the deploy tests: Debian's /usr/bin/chromium driven by Playwright for Python.

Never `playwright install`: it downloads a browser of its own. Without Chromium or
Playwright the browser tests are skipped and say which one is missing.

Every page records its console: a test fails on any JavaScript error, console
error or failed request it did not provoke on purpose (`@pytest.mark.expect_console(...)`,
substrings, like `expect_log` for Python logs): a stopped streamer makes Chromium log
`net::ERR_CONNECTION_REFUSED` for each probe, which such a test expects.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.deploy.stack import Stack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 30_000  # covers the dashboard's reconnect backoff while streamers are down


def sync_api() -> Any:
    """Playwright's sync API, or a skip naming what is missing."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium)")
    return pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)")


@dataclass
class Console:
    """What a page said that a test must see: JavaScript errors, console errors, failed requests."""

    expected: tuple[str, ...] = ()
    problems: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> None:
        page.on("pageerror", lambda error: self.problems.append(f"JavaScript error: {error}"))
        page.on("console", lambda message: message.type == "error" and self.problems.append(f"console: {message.text}"))
        page.on("requestfailed", lambda request: self._failed(request))
        # Chromium's "Failed to load resource: ... 503" names no URL: this names it (a flake under load,
        # 2026-12-03, said only "503").
        page.on("response", lambda response: response.status >= 500 and self.problems.append(
            f"response {response.status} ({response.status_text}): {response.request.method} {response.url}"))

    def _failed(self, request: Any) -> None:
        # A stream or fetch the page aborts itself (a strategy switch, a reconnect) is not a problem.
        if request.failure != "net::ERR_ABORTED":
            self.problems.append(f"request failed: {request.url} {request.failure}")

    def unexpected(self) -> list[str]:
        return [text for text in self.problems if not any(pattern in text for pattern in self.expected)]


def new_page(browser: Any, console: Console, width: int = 1280, height: int = 800) -> Any:
    """A page in a fresh context (no cookies, no storage), in a zone that is not UTC."""
    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-US", timezone_id="America/New_York")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    console.watch(page)
    return page


def log_in(page: Any, stack: Stack, username: str, group_name: str | None = None) -> None:
    """Open the dashboard, sign in and pick a strategy; returns once the stream is connected."""
    strategy_id = None if group_name is None else stack.strategy(group_name)["id"]
    sign_in(page, stack.base_url, username, stack.user(username)["password"], strategy_id)


def sign_in(page: Any, base_url: str, username: str, password: str, strategy_id: int | None = None) -> None:
    """`log_in` on any streamer's URL: sign in, pick the strategy (if given), wait for the stream."""
    page.goto(base_url + "/")
    page.fill("#login-form input[name=username]", username)
    page.fill("#login-form input[name=password]", password)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#dashboard:not([hidden])")
    if strategy_id is not None:
        page.select_option("#strategy", str(strategy_id))
    page.wait_for_selector("#connection[data-state=connected]")
