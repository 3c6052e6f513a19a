"""Fixtures for every test folder: a fresh, empty database per test, and tests that run clean.

`database_url` is a new SQLite file, and also, when TRADESTREAM_TEST_DATABASE_URL
names a PostgreSQL database, a fresh schema of it (dropped afterwards), so that
parallel runs never see each other's rows. Those runs carry the `postgres` mark.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from store.db import init_db, make_engine, make_session_factory

POSTGRES_URL = os.environ.get("TRADESTREAM_TEST_DATABASE_URL", "")
DATABASES = [pytest.param("sqlite", id="sqlite")]
if POSTGRES_URL:
    DATABASES.append(pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres))


def _postgres_schema_url(base_url: str) -> Iterator[str]:
    """A URL whose connections see only a new schema, dropped with everything in it at the end."""
    schema = f"ts_{secrets.token_hex(6)}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        # A query parameter (not connect_args) so subprocesses given the URL see the schema too.
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            # A connection left open by a test must fail the drop, not hang it.
            connection.execute(text("SET lock_timeout = '10s'"))
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: SQLite, and PostgreSQL when configured."""
    if request.param == "sqlite":
        (tmp_path / "var").mkdir(exist_ok=True)  # only the default URL's folder is created for us
        yield f"sqlite:///{tmp_path / 'var' / 'tradestream.db'}"
    else:
        yield from _postgres_schema_url(POSTGRES_URL)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on `database_url` with every table created."""
    engine = make_engine(database_url)
    init_db(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session on the test database, closed afterwards."""
    with make_session_factory(engine)() as session:
        yield session


# The files whose tests take longest (seconds each: real stacks, subprocesses, 10,000 fills), from
# `pytest --durations=0`. They run first, so that the workers end on short tests together instead of
# one of them finishing a long one alone; test_exact_sum, the longest (30 s quiet, 110 s loaded), leads.
SLOW_FIRST = (
    "tests/producers/test_exact_sum.py",
    "tests/bench/test_harness_run.py",
    "tests/faults/",
    "tests/deploy/",
    "tests/store/test_store_admin_cli.py",
    "tests/store/test_migrations.py",
    "tests/cli/",
    "tests/streamer/test_across_streamers.py",
    "tests/streamer/test_processes.py",
    "tests/bus/test_freezes.py",
)


def _slowness_rank(item: pytest.Item) -> int:
    path = item.nodeid.split("::")[0]
    return next((rank for rank, prefix in enumerate(SLOW_FIRST) if path.startswith(prefix)), len(SLOW_FIRST))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slowest files first (SLOW_FIRST); a stable sort, so each file's tests stay together and in order."""
    items.sort(key=_slowness_rank)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "expect_log(*patterns): WARNING/ERROR records this test provokes on purpose (substrings of the message)",
    )


@pytest.fixture(autouse=True)
def runs_clean(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail a test that logs an unexpected WARNING or ERROR in this process (Tornado's rule).

    A test that provokes such a record on purpose names it with `@pytest.mark.expect_log("text")`;
    records of subprocesses are their logs, not this process's, and are not seen here.
    """
    yield
    expected = [p for mark in request.node.iter_markers("expect_log") for p in mark.args]
    unexpected = [
        record
        for when in ("setup", "call")
        for record in caplog.get_records(when)
        if record.levelno >= logging.WARNING and not any(p in record.getMessage() for p in expected)
    ]
    if unexpected:
        lines = "\n".join(f"  {r.levelname} {r.name}: {r.getMessage()[:200]}" for r in unexpected[:10])
        pytest.fail(f"{len(unexpected)} unexpected WARNING/ERROR log records:\n{lines}", pytrace=False)
