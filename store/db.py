"""Engines, sessions and schema creation for any SQLAlchemy URL.

SQLite gets the pragmas that make it a fair multi-process store: foreign keys
enforced (so ON DELETE CASCADE works), write-ahead logging (readers never wait
for the writer) and a busy timeout (writers queue instead of failing at once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from store.models import Base

DEFAULT_DATABASE_URL = "sqlite:///var/tradestream.db"
SQLITE_BUSY_TIMEOUT_MS = 5000


def make_engine(url: str | URL, **options: Any) -> Engine:
    """An engine for `url`; for a SQLite file, its folder is created and the pragmas set."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True, **options)
    _create_sqlite_folder(parsed)
    engine = create_engine(parsed, **options)
    event.listen(engine, "connect", _set_sqlite_pragmas)
    return engine


def _create_sqlite_folder(url: URL) -> None:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (callers often print what they saved)."""
    return sessionmaker(engine, expire_on_commit=False)


def init_db(engine: Engine) -> None:
    """Create every missing table and index; existing ones are left alone.

    Processes started together (supervisord) may race to create the same table;
    the loser finds it there on its second look.
    """
    try:
        Base.metadata.create_all(engine)
    except DBAPIError:
        Base.metadata.create_all(engine)
