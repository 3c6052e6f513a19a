"""Engines, sessions and the schema for any SQLAlchemy URL (its migrations: store/migrate.py).

PostgreSQL gets a connect timeout (PG_CONNECT_TIMEOUT_S). SQLite gets the pragmas that make it a fair multi-process store: foreign keys
enforced (so ON DELETE CASCADE works), write-ahead logging (readers never wait
for the writer) and a busy timeout (writers queue instead of failing at once).

A SQLite file's folder must exist, except the default's (`var/`, created): a
typo in a path is an error, not a new empty database. `open_database` is what
a process calls at start: it connects once, so an unreachable database or a
file that cannot be opened is one `DatabaseUnavailable` line, not a traceback;
it also migrates the schema to this release's head (a no-op read when it is there).
A process's start calls it through store/wait.py, which tries again while the
server is not there yet (`DatabaseUnavailable.not_there_yet`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bus.kinds import Kind
from store import reachability, revisions, schema_status
from store.errors import DatabaseUnavailable, SchemaError
from store.schema import METADATA

DEFAULT_DATABASE_URL = "sqlite:///var/tradestream.db"
SQLITE_BUSY_TIMEOUT_MS = 5000
# A database host that drops packets would hold a connect for the kernel's SYN retries (about two
# minutes), and a request with it; libpq gives up after this many seconds. `?connect_timeout=N`
# in the URL wins.
PG_CONNECT_TIMEOUT_S = 5


def _parse_database_url(text: str) -> str:
    try:
        make_url(text).get_dialect()  # loads the dialect, not its driver: "foo://" fails here
    except (ArgumentError, ValueError):  # NoSuchModuleError is an ArgumentError
        raise ValueError(text) from None
    return text


def _masked(text: str) -> str:
    return repr(re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", text))


sqlalchemy_url = Kind(
    "a database URL of a known dialect (sqlite:///FILE, postgresql+psycopg://USER@HOST/DB)", _parse_database_url, shown=_masked
)


def make_engine(url: str | URL, **options: Any) -> Engine:
    """An engine for `url`; for a SQLite file, the pragmas are set (see the module docstring for its folder)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            options["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT_S, **options.get("connect_args", {})}
        return create_engine(parsed, pool_pre_ping=True, **options)
    _check_sqlite_folder(parsed)
    engine = create_engine(parsed, **options)
    event.listen(engine, "connect", _set_sqlite_pragmas)
    return engine


def _check_sqlite_folder(url: URL) -> None:
    database = url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    folder = Path(database).parent
    if database == make_url(DEFAULT_DATABASE_URL).database:
        folder.mkdir(parents=True, exist_ok=True)
    elif not folder.is_dir():
        raise DatabaseUnavailable(f"cannot open database {url}: folder {folder} does not exist")


def open_database(url: str, *, create_tables: bool = True) -> Engine:
    """An engine that has connected once (and migrated the schema to head); else one DatabaseUnavailable line."""
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        engine = make_engine(url)
    except ImportError as exc:
        raise DatabaseUnavailable(f"cannot use database {shown}: its driver is not installed ({exc})") from None
    except (SQLAlchemyError, TypeError, ValueError) as exc:
        raise DatabaseUnavailable(f"cannot use database {shown}: {first_line(exc)}") from None
    try:
        if create_tables:
            ensure_head(engine)  # a stack started before any `tradestream-admin` still comes up
        else:
            engine.connect().close()
    # TypeError: a query parameter the driver does not take (sqlite:///x.db?bogus=1).
    except (SQLAlchemyError, OSError, TypeError) as exc:
        engine.dispose()
        raise DatabaseUnavailable(f"cannot open database {shown}: {first_line(exc)}",
                                  not_there_yet=can_wait_for(engine, exc)) from None
    except SchemaError as exc:
        engine.dispose()
        raise DatabaseUnavailable(f"cannot migrate database {shown}: {exc}") from None
    return engine


def ensure_head(engine: Engine) -> None:
    """Migrate the schema to head unless it is there: one read, and Alembic imported only to migrate.

    Importing Alembic is ~0.2 s of CPU, paid at every process start if imported up front (store/revisions.py).
    """
    if schema_status.status(engine).at_head:
        return
    from store import migrate

    migrate.ensure_head(engine)


def can_wait_for(engine: Engine, exc: BaseException) -> bool:
    """Whether `exc`, met connecting or at start, says the database may be there if asked again (store/reachability.py)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True  # the dialect saw the connection drop: a server restarting
    return isinstance(exc, SQLAlchemyError) and reachability.not_there_yet(engine.url.get_backend_name(), first_line(exc))


def first_line(exc: BaseException) -> str:
    """An error's first line; for a database error, the driver's words without the SQL."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines() or [type(cause).__name__]
    return lines[0]


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
    """The tests' fast path for an EMPTY database: the models' tables at once, stamped at head.

    The same schema as `migrate.upgrade` (tests/store/test_migrations.py proves it
    on SQLite and PostgreSQL); a database that has a revision or an older
    release's tables is migrated instead. What users run migrates (open_database,
    the admin's init-db and migrate). Tests started together may race to create
    the same table; the loser finds it there on its second look.
    """
    with engine.connect() as connection:
        status = schema_status.read_status(connection)
    if status.current is not None or status.legacy is not None:
        ensure_head(engine)
        return
    try:
        METADATA.create_all(engine)
    except DBAPIError:
        METADATA.create_all(engine)
    with engine.begin() as connection:
        if revisions.current(connection) is None:
            from store import migrate  # Alembic writes its version table (the tests' path, not a process start)

            migrate.stamp_head(connection)
