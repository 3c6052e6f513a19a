"""Fixtures of the fault tests: the demo world in a fresh SQLite file, and the stack running on it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.stack import Stack
from tests.producers.conftest import World, make_demo, world_at


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The demo database, made once (password hashing is slow on purpose) and copied per test."""
    path = tmp_path_factory.mktemp("faults-demo") / "tradestream.db"
    return path, make_demo(path)


@pytest.fixture
def demo(demo_template: tuple[Path, dict[str, Any]]) -> dict[str, Any]:
    return demo_template[1]


@pytest.fixture
def world(tmp_path: Path, demo_template: tuple[Path, dict[str, Any]]) -> Iterator[World]:
    template, demo = demo_template
    path = tmp_path / "var" / "tradestream.db"
    path.parent.mkdir()
    shutil.copyfile(template, path)
    world = world_at(path, demo)
    yield world
    world.engine.dispose()


@pytest.fixture
def stack(world: World, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """Every process started; killed at the end, with their logs printed when the test failed."""
    running = Stack(world, tmp_path)
    try:
        running.start()
        yield running
    finally:
        running.close()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(running.logs())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
