"""Fixtures of the fault tests: the demo world in a fresh database, and the stack running on it.

The database is a copy of a SQLite template by default; a test marked `ON_BOTH`
(or a rig asked for "postgresql") also runs on a fresh PostgreSQL schema of
TRADESTREAM_TEST_DATABASE_URL, made, filled with the demo and dropped per test
(tests/conftest.py's per-test schema, its URL carrying the search_path, so the
stack's subprocesses see it too). Without the variable those runs are skipped.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from store.db import init_db, make_engine, make_session_factory
from store.demo import demo as demo_world
from tests.conftest import POSTGRES_URL, _postgres_schema_url
from tests.faults.pgcluster import Cluster
from tests.faults.stack import Stack
from tests.producers.conftest import World, make_demo, world_at, world_of
from tests.producers.conftest import zctx as zctx  # the fixture, for tests/faults too

SQLITE, POSTGRESQL = "sqlite", "postgresql"
NO_POSTGRES = "needs PostgreSQL (TRADESTREAM_TEST_DATABASE_URL): the PostgreSQL runs of the fault tests"
ON_POSTGRESQL = [pytest.mark.postgres, pytest.mark.skipif(not POSTGRES_URL, reason=NO_POSTGRES)]
# The fault tests that also run on PostgreSQL: @ON_BOTH (the others run on SQLite only, as the suite's time allows).
ON_BOTH = pytest.mark.parametrize(
    "backend", [pytest.param(SQLITE, id=SQLITE), pytest.param(POSTGRESQL, id=POSTGRESQL, marks=ON_POSTGRESQL)],
    indirect=True,
)


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The demo database, made once (password hashing is slow on purpose) and copied per test."""
    path = tmp_path_factory.mktemp("faults-demo") / "tradestream.db"
    return path, make_demo(path)


@contextmanager
def demo_database(backend: str, folder: Path, template: tuple[Path, dict[str, Any]]) -> Iterator[tuple[World, dict[str, Any]]]:
    """The demo world in a database of its own, and the `demo` output; dropped (PostgreSQL) at the end."""
    if backend == SQLITE:
        path = folder / "var" / "tradestream.db"
        path.parent.mkdir(parents=True)
        shutil.copyfile(template[0], path)
        world = world_at(path, template[1])
        try:
            yield world, template[1]
        finally:
            world.engine.dispose()
        return
    for url in _postgres_schema_url(POSTGRES_URL):
        engine = make_engine(url)
        try:
            init_db(engine)
            with make_session_factory(engine)() as session:
                demo: dict[str, Any] = demo_world(session, None)  # ~0.3 s: a template to copy costs as much
        finally:
            engine.dispose()
        world = world_of(url, demo)
        try:
            yield world, demo
        finally:
            world.engine.dispose()  # before the schema's drop, which waits for every connection to it


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A private PostgreSQL cluster (tests/faults/pgcluster.py), started; stopped and removed at the end."""
    made = Cluster()
    try:
        made.start()
        yield made
    finally:
        made.close()


@pytest.fixture
def cluster_world(cluster: Cluster) -> Iterator[tuple[World, dict[str, Any]]]:
    """The demo world in the cluster's `postgres` database."""
    engine = make_engine(cluster.url)
    try:
        init_db(engine)
        with make_session_factory(engine)() as session:
            demo: dict[str, Any] = demo_world(session, None)
    finally:
        engine.dispose()
    world = world_of(cluster.url, demo)
    try:
        yield world, demo
    finally:
        world.engine.dispose()


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The database the test runs on: SQLite unless the test is parametrized (ON_BOTH)."""
    return str(getattr(request, "param", SQLITE))


@pytest.fixture
def database(
    backend: str, tmp_path: Path, demo_template: tuple[Path, dict[str, Any]]
) -> Iterator[tuple[World, dict[str, Any]]]:
    with demo_database(backend, tmp_path, demo_template) as made:
        yield made


@pytest.fixture
def demo(database: tuple[World, dict[str, Any]]) -> dict[str, Any]:
    return database[1]


@pytest.fixture
def world(database: tuple[World, dict[str, Any]]) -> World:
    return database[0]


@pytest.fixture
def stack_on(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Stack]]:
    """`stack_on(world, also=None)`: a Stack on the world's database, nothing started (the test starts what it
    needs). Each one made is killed at the end; when the test failed its logs are printed, and `also()` after
    them (a log of the test's own, as a private database cluster's)."""
    made: list[tuple[Stack, Callable[[], str] | None]] = []

    def make(world: World, also: Callable[[], str] | None = None) -> Stack:
        made.append((Stack(world, tmp_path), also))
        return made[-1][0]

    yield make
    report = getattr(request.node, "rep_call", None)
    failed = report is not None and report.failed
    for stack, also in made:
        stack.close()
        if failed:
            print(stack.logs())
            if also is not None:
                print(also())


@pytest.fixture
def idle_stack(world: World, stack_on: Callable[..., Stack]) -> Stack:
    """The stack, nothing started; killed at the end, logs printed on failure."""
    return stack_on(world)


@pytest.fixture
def stack(idle_stack: Stack) -> Stack:
    """Every process started."""
    idle_stack.start()
    return idle_stack


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
