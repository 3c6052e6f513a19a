"""Is the database there: a ping, and which errors of a running process mean that it is not.

A database that goes away while a process runs (PostgreSQL restarted or out of
reach, a pool with no free connection) raises SQLAlchemy errors from the query
that met it. `unavailable()` tells those from a bug or a constraint: the HTTP
layers answer them 503 (never 500), and readiness reports the database down.
"""

from __future__ import annotations

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from store.db import first_line
from store.errors import DatabaseUnavailable


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be used now (rather than that a query is wrong)."""
    if isinstance(exc, (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def as_unavailable(exc: SQLAlchemyError) -> DatabaseUnavailable:
    """What a client is told of an availability error (the driver's words, which name hosts, go to the log)."""
    return DatabaseUnavailable(f"The database is unavailable ({type(exc).__name__}); try again shortly.")


def describe(exc: BaseException) -> str:
    """An availability error's one line for the log."""
    return first_line(exc)


def ping(engine: Engine) -> None:
    """One round trip to the database; raises what the driver raises."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
