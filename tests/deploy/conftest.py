"""Fixtures for deploy tests: the whole stack under the real supervisord, on free ports; headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.deploy.browser import CHROMIUM, CHROMIUM_ARGS, Console, new_page, sync_api
from tests.deploy.stack import Stack


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "expect_console(*patterns): browser console errors this test provokes on purpose")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One running stack shared by a module's tests (each leaves it running and healthy)."""
    running = Stack.in_new_folder(tmp_path_factory.mktemp("stack")).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per module (skipped without Chromium or Playwright)."""
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
