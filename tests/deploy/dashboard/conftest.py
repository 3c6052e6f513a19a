"""Fixtures of the browser tests: one stack and one headless Chromium for the whole folder.

The stack's broker runs without its journal, so that a restart starts a new epoch
(the client library's resync test needs one); nothing else here depends on it.
Sharing one stack saves a start and a stop (~15 s) per module; every test leaves it
running and healthy, and tells its own rows apart by symbol or price.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.deploy.dashboard.browser import CHROMIUM, CHROMIUM_ARGS, Console, new_page, sync_api
from tests.deploy.stack import Stack


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "expect_console(*patterns): browser console errors this test provokes on purpose")


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One running stack (broker without journal) for every browser test."""
    running = Stack.in_new_folder(tmp_path_factory.mktemp("stack"), journal=False).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One headless Chromium (skipped without Chromium or Playwright)."""
    api = sync_api()
    with api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def console(request: pytest.FixtureRequest) -> Iterator[Console]:
    """The console of the test's pages: it must stay clean but for what the test expects."""
    expected = tuple(pattern for mark in request.node.iter_markers("expect_console") for pattern in mark.args)
    recorded = Console(expected)
    yield recorded
    unexpected = recorded.unexpected()
    assert unexpected == [], f"{len(unexpected)} unexpected console errors: {unexpected[:10]}"


@pytest.fixture
def page(browser: Any, console: Console) -> Iterator[Any]:
    """A page of a fresh browser context (no cookies, no storage), 1280x800."""
    opened = new_page(browser, console)
    try:
        yield opened
    finally:
        opened.context.close()
