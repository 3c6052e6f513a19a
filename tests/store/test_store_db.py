"""Opening the database at start: one DatabaseUnavailable line per failure, and which SQLite folders are created."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import inspect

from store.db import DEFAULT_DATABASE_URL, make_engine, open_database
from store.errors import DatabaseUnavailable
from tests.ports import refused_port

# (url made from the test's folder, words of the one-line error, whether a process's start waits it out)
UNAVAILABLE: list[tuple[Callable[[Path], str], str, bool]] = [
    (lambda tmp: f"sqlite:///{tmp / 'missing' / 'x.db'}", "does not exist", False),
    (lambda tmp: f"sqlite:///{tmp}", "unable to open database file", False),  # a folder is not a database file
    (lambda tmp: f"postgresql+psycopg://nobody:hunter2@127.0.0.1:{refused_port()}/none", "Connection refused", True),
    (lambda tmp: "postgresql+pg8000://nobody@127.0.0.1/none", "driver is not installed", False),
]


@pytest.mark.parametrize(("make_url", "words", "waits"), UNAVAILABLE)
@pytest.mark.parametrize("create_tables", [True, False])
def test_an_unusable_database_is_one_line_naming_it_without_its_password(
    tmp_path: Path, make_url: Callable[[Path], str], words: str, waits: bool, create_tables: bool
) -> None:
    with pytest.raises(DatabaseUnavailable) as refused:
        open_database(make_url(tmp_path), create_tables=create_tables)
    message = str(refused.value)
    assert words in message and len(message.splitlines()) == 1
    assert refused.value.not_there_yet is waits
    assert message.startswith(("cannot open database ", "cannot use database ")) and "hunter2" not in message
    assert not (tmp_path / "missing").exists()


def test_a_sqlite_path_in_a_missing_folder_is_an_error_not_a_new_database(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailable):
        make_engine(f"sqlite:///{tmp_path / 'typo' / 'tradestream.db'}")
    assert not (tmp_path / "typo").exists()


def test_the_default_database_gets_its_folder_and_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default is relative to the working directory
    engine = open_database(DEFAULT_DATABASE_URL)
    try:
        assert "users" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    assert (tmp_path / "var" / "tradestream.db").is_file()


def test_a_check_without_tables_creates_none(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'empty.db'}", create_tables=False)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_a_postgresql_host_that_never_answers_is_one_line_after_the_connect_timeout() -> None:
    # A listener that never accepts: the kernel completes the handshake, then nothing ever answers
    # libpq's startup packet, as with a host whose database hangs. Without a connect timeout this
    # call would wait for ever.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        with pytest.raises(DatabaseUnavailable) as refused:
            open_database(f"postgresql+psycopg://nobody@127.0.0.1:{port}/none")
    assert "timeout" in str(refused.value) and len(str(refused.value).splitlines()) == 1
