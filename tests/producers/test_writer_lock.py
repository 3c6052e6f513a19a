"""The writer lock of a handler (producers/writer_lock.py): one holder per database and source, on SQLite and PostgreSQL.

A lock file's flock belongs to its open file, and an advisory lock to its
PostgreSQL session, so two takes in this one process meet as two processes
would. The PostgreSQL cases end the lock's session with pg_terminate_backend,
as a database restart or an operator would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from producers.errors import AnotherWriter
from producers.writer_lock import WriterLock, lock_key


@pytest.fixture
def lock_of() -> Iterator[list[WriterLock]]:
    held: list[WriterLock] = []
    yield held
    for lock in held:
        lock.close()


def take(engine: Engine, source: str, held: list[WriterLock]) -> WriterLock:
    lock = WriterLock.take(engine, source)
    held.append(lock)
    return lock


def test_a_second_take_of_a_source_is_refused_until_the_first_is_released(engine: Engine, lock_of: list[WriterLock]) -> None:
    first = take(engine, "orders", lock_of)
    with pytest.raises(AnotherWriter, match="another tradestream-orders runs on this database"):
        take(engine, "orders", lock_of)
    first.close()
    take(engine, "orders", lock_of)


def test_the_two_sources_of_one_database_do_not_exclude_each_other(engine: Engine, lock_of: list[WriterLock]) -> None:
    take(engine, "orders", lock_of)
    take(engine, "positions", lock_of)


def test_a_refused_take_says_who_holds_it_in_one_line(engine: Engine, lock_of: list[WriterLock]) -> None:
    take(engine, "positions", lock_of)
    with pytest.raises(AnotherWriter) as refused:
        WriterLock.take(engine, "positions")
    (line,) = str(refused.value).splitlines()
    assert line.startswith("another tradestream-positions runs on this database")
    if engine.url.get_backend_name() == "sqlite":
        assert f"process {os.getpid()} holds" in line


def test_a_sqlite_lock_is_the_file_s_whatever_path_names_it(tmp_path: os.PathLike[str], lock_of: list[WriterLock]) -> None:
    from store.db import make_engine

    folder = os.fspath(tmp_path)
    os.mkdir(os.path.join(folder, "var"))
    direct = make_engine(f"sqlite:///{folder}/var/tradestream.db")
    roundabout = make_engine(f"sqlite:///{folder}/var/../var/./tradestream.db")
    take(direct, "orders", lock_of)
    with pytest.raises(AnotherWriter):
        take(roundabout, "orders", lock_of)


def test_a_database_in_memory_takes_no_lock(lock_of: list[WriterLock]) -> None:
    from store.db import make_engine

    memory = make_engine("sqlite://")
    take(memory, "orders", lock_of)
    take(memory, "orders", lock_of)
    assert all(lock.still_held() for lock in lock_of)


def test_the_advisory_key_names_database_schema_and_source() -> None:
    keys = {lock_key("test", "ts_a", "orders"), lock_key("test", "ts_b", "orders"), lock_key("test", "ts_a", "positions"),
            lock_key("other", "ts_a", "orders")}
    assert len(keys) == 4
    assert all(-(2**63) <= key < 2**63 for key in keys)


def _terminate(engine: Engine, lock: WriterLock) -> None:
    """End the lock's PostgreSQL session from another one."""
    connection = lock._connection
    assert connection is not None
    pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
    connection.commit()
    with engine.connect() as admin:
        assert admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        admin.commit()


@pytest.mark.expect_log("lost with its database session and taken again")
def test_a_postgresql_lock_lost_with_its_session_is_taken_again(engine: Engine, lock_of: list[WriterLock]) -> None:
    if engine.url.get_backend_name() != "postgresql":
        pytest.skip("a session of PostgreSQL's")
    lock = take(engine, "orders", lock_of)
    assert lock.still_held()
    _terminate(engine, lock)
    assert lock.still_held()  # taken again on a new session
    with pytest.raises(AnotherWriter):
        take(engine, "orders", lock_of)


@pytest.mark.expect_log("another process holds it now")
def test_a_postgresql_lock_lost_with_its_session_and_taken_by_another_process_is_not_held(
    engine: Engine, lock_of: list[WriterLock]
) -> None:
    if engine.url.get_backend_name() != "postgresql":
        pytest.skip("a session of PostgreSQL's")
    lock = take(engine, "orders", lock_of)
    _terminate(engine, lock)
    take(engine, "orders", lock_of)  # the second handler, started meanwhile
    assert not lock.still_held()
