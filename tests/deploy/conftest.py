"""Fixtures for deploy tests: the whole stack under the real supervisord, on free ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deploy.stack import Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One running stack shared by a module's tests (each leaves it running and healthy)."""
    running = Stack.in_new_folder(tmp_path_factory.mktemp("stack")).start()
    try:
        yield running
    finally:
        running.stop()
