"""Where a database's schema stands, read without Alembic: what every process checks at start.

    status(engine) ─▶ Status(current, head, legacy, known) ─▶ at_head: start · else migrate (store/migrate.py)

A database made by an older release's `init-db` (create_all, no version table)
is recognised by its tables (LEGACY_RELEASES): the revision it matches is what
store/migrate.py stamps before upgrading it. The streamer, which never migrates,
waits for a producer to do it (wait_for_head).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, inspect

from store import revisions
from store.errors import SchemaError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Release:
    """What an older release's create_all left: the revision it matches, told by the tables it added."""

    revision: str
    tables: frozenset[str]
    columns: tuple[tuple[str, str], ...] = ()


# Oldest first; a database matches the newest release all of whose tables (and columns), and all earlier ones', it has.
LEGACY_RELEASES = (
    Release("0001", frozenset({"users", "accounts", "strategies", "strategy_accounts", "signals", "orders", "positions"})),
    Release("0002", frozenset({"order_inbox", "executions", "outbox", "outbox_streams", "market_prices"})),
    Release("0003", frozenset({"user_sessions"}), (("users", "is_active"),)),
)
KNOWN_TABLES = frozenset().union(*(release.tables for release in LEGACY_RELEASES))


@dataclass(frozen=True)
class Status:
    """Where a database stands: its revision (None: no version table), the head, and a legacy match."""

    current: str | None
    head: str
    legacy: str | None = None  # no version table, but an older release's tables: the revision they match
    known: bool = True  # False: a revision this release has no file for (a newer release migrated it)

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    def describe(self) -> str:
        """One line for people (`tradestream-admin db-status`)."""
        if self.at_head:
            return f"Database at revision {self.head} (head): up to date."
        if not self.known:
            return f"Database at revision {self.current}, unknown to this release (head {self.head}): a newer release migrated it."
        if self.legacy is not None:
            where = f"made by an older release without a revision (its tables match {self.legacy})"
        elif self.current is None:
            where = "empty (no schema yet)"
        else:
            where = f"at revision {self.current}"
        return f"Database {where}, head is {self.head}: run `tradestream-admin migrate`."


def _legacy_revision(connection: Connection) -> str | None:
    """The revision an older release's tables match, None for no tables of ours; SchemaError for a mix."""
    inspector = inspect(connection)
    tables = set(inspector.get_table_names())
    if revisions.VERSION_TABLE in tables or not tables & KNOWN_TABLES:
        return None
    matched = None
    for release in LEGACY_RELEASES:
        has_columns = all(
            column in {c["name"] for c in inspector.get_columns(table)}
            for table, column in release.columns
            if table in tables
        )
        if not (release.tables <= tables and has_columns):
            break
        matched = release.revision
    if matched is None:
        found = ", ".join(sorted(tables & KNOWN_TABLES))
        raise SchemaError(f"cannot tell which release made this database (it has only {found}): migrate it by hand")
    return matched


def read_status(connection: Connection) -> Status:
    """The database's status, read on `connection` (nothing is changed)."""
    current = revisions.current(connection)
    legacy = _legacy_revision(connection) if current is None else None
    return Status(current, revisions.head(), legacy, current is None or current in revisions.known())


def status(engine: Engine) -> Status:
    """The database's status (`tradestream-admin db-status`)."""
    with engine.connect() as connection:
        return read_status(connection)


def wait_for_head(engine: Engine, timeout_s: float, poll_s: float = 0.5) -> Status:
    """What a process that does not migrate does at start (the streamer): wait for another to do it.

    Returns at once when the database is at head or at a revision this release does not know (a
    newer release's: waiting cannot help); else logs once and polls until head or `timeout_s`.
    The caller refuses to start unless the returned status is at head.
    """
    deadline = time.monotonic() + timeout_s
    found = status(engine)
    if not found.at_head and found.known:
        log.warning("%s Waiting up to %.0f s for it.", found.describe(), timeout_s)
    while not found.at_head and found.known and time.monotonic() < deadline:
        time.sleep(poll_s)  # the pace of polling another process's migration
        found = status(engine)
    return found
