"""Schema migrations: which Alembic revision a database is at, upgrading it to this release's head, new revisions.

The revisions live in store/migrations/versions/ (inside the package, so an
installed wheel carries them); Alembic is driven from here with its Config and
command API, no alembic.ini. Every upgrade runs in ONE transaction that holds a
lock, so processes started together (supervisord) migrate one after another and
the later ones find the work done: on SQLite `BEGIN IMMEDIATE` (the write lock),
with foreign keys off while batch mode copies tables (a copy of `users` dropped
with them on would cascade into every row that refers to it) and checked before
the commit; on PostgreSQL a transaction-level advisory lock (its DDL is
transactional too).

A database made by an older release's `init-db` (create_all, no alembic_version
table) is recognised by its tables (LEGACY_RELEASES), stamped at the revision it
matches, then upgraded. An empty database migrates from nothing.

Developers: `python -m store.migrate revision -m "what changed" --autogenerate`
writes the next numbered revision from the models' difference to head (see
docs/operations.md); `downgrade REV` and `history` are there too.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, inspect, text

from store.errors import SchemaError

MIGRATIONS = Path(__file__).with_name("migrations")
HEAD = "head"
VERSION_TABLE = "alembic_version"
# pg_advisory_xact_lock's key for "migrating this database" (any constant shared by every process).
POSTGRES_LOCK_KEY = 0x7472_6164_6573_7472  # b"tradestr"
FILE_TEMPLATE = "r%%(rev)s_%%(slug)s"  # versions/r0004_what_changed.py (%% is the Config's escape)

log = logging.getLogger(__name__)
# Alembic says "Context impl SQLiteImpl." and each step at INFO; a process logs one summary line instead.
logging.getLogger("alembic").setLevel(logging.WARNING)


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


@dataclass(frozen=True)
class Migrated:
    """What an upgrade did: the status before it and the revision after it."""

    before: Status
    after: str

    @property
    def changed(self) -> bool:
        return self.before.current != self.after

    def describe(self) -> str:
        if not self.changed:
            return f"Database already at revision {self.after}: nothing to do."
        if self.before.legacy is not None:
            start = f"an older release's schema ({self.before.legacy}, stamped)"
        else:
            start = self.before.current or "an empty database"
        return f"Database migrated from {start} to revision {self.after}."


@functools.cache
def script_directory() -> ScriptDirectory:
    """The revisions shipped with this package (read once a process)."""
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """This release's head revision."""
    revision = script_directory().get_current_head()
    assert revision is not None, f"no revisions in {MIGRATIONS}"
    return revision


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", FILE_TEMPLATE)
    config.attributes["connection"] = connection
    return config


def _legacy_revision(connection: Connection) -> str | None:
    """The revision an older release's tables match, None for no tables of ours; SchemaError for a mix."""
    inspector = inspect(connection)
    tables = set(inspector.get_table_names())
    if VERSION_TABLE in tables or not tables & KNOWN_TABLES:
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


def current_revision(connection: Connection) -> str | None:
    """The revision in the database's alembic_version table, None when it has none."""
    return MigrationContext.configure(connection).get_current_revision()


def read_status(connection: Connection) -> Status:
    """The database's status, read on `connection` (nothing is changed)."""
    current = current_revision(connection)
    legacy = _legacy_revision(connection) if current is None else None
    return Status(current, head(), legacy, current is None or current in _known_revisions())


def status(engine: Engine) -> Status:
    """The database's status (`tradestream-admin db-status`)."""
    with engine.connect() as connection:
        return read_status(connection)


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the migration lock; committed if the body returns."""
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction: first
            connection.commit()
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": POSTGRES_LOCK_KEY})
        try:
            yield connection
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise SchemaError(f"the migration would break {len(broken)} foreign keys (first: {broken[0]})")
            connection.commit()
        finally:
            if connection.in_transaction():
                connection.rollback()
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def _alembic(action: str, connection: Connection, revision: str) -> None:
    try:
        getattr(command, action)(_config(connection), revision)
    except CommandError as exc:
        raise SchemaError(f"cannot {action} to {revision!r}: {exc}") from None


@functools.cache
def _known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in script_directory().walk_revisions())


def _check_target(current: str | None, target: str) -> None:
    """SchemaError for a revision this release does not know, or an upgrade that would go down."""
    script = script_directory()
    if current is not None and current not in _known_revisions():
        raise SchemaError(f"the database is at revision {current}, unknown to this release (a newer one migrated it)")
    try:
        wanted = script.get_revision(target)
    except CommandError as exc:
        raise SchemaError(f"cannot upgrade to {target!r}: {exc}") from None
    if current is not None and wanted is not None and wanted.revision != current:
        below = {s.revision for s in script.iterate_revisions(current, "base")}
        if wanted.revision in below:
            raise SchemaError(
                f"the database is at revision {current}, newer than {wanted.revision}:"
                f" downgrade with `python -m store.migrate downgrade {wanted.revision}`"
            )


def upgrade(engine: Engine, revision: str = HEAD) -> Migrated:
    """Upgrade to `revision` (head by default), first stamping an older release's schema; one transaction."""
    with _locked(engine) as connection:
        before = read_status(connection)  # read under the lock: a process that waited finds the work done
        _check_target(before.current or before.legacy, revision)
        if before.legacy is not None:
            _alembic("stamp", connection, before.legacy)
        _alembic("upgrade", connection, revision)
        after = current_revision(connection)
    assert after is not None
    return Migrated(before, after)


def downgrade(engine: Engine, revision: str) -> Migrated:
    """Downgrade to `revision` ("-1": one step; "base": nothing left) in one transaction."""
    with _locked(engine) as connection:
        before = read_status(connection)
        _alembic("downgrade", connection, revision)
        after = current_revision(connection)
    return Migrated(before, after or "base")


def ensure_head(engine: Engine) -> Migrated | None:
    """What a process does at start: nothing when at head (one read), else upgrade and log it once."""
    if status(engine).at_head:
        return None
    migrated = upgrade(engine)
    if migrated.changed:
        log.info("%s", migrated.describe())
    return migrated


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


def stamp_head(connection: Connection) -> None:
    """Record head on a schema made from the models at once (store.db.init_db, the tests' fast path)."""
    MigrationContext.configure(connection).stamp(script_directory(), HEAD)


def _next_revision_id() -> str:
    numbers = [int(script.revision) for script in script_directory().walk_revisions() if script.revision.isdigit()]
    return f"{max(numbers, default=0) + 1:04d}"


def new_revision(message: str, *, autogenerate: bool, database_url: str | None) -> None:
    """Write the next revision; autogenerate compares the models with `database_url` or a scratch SQLite at head."""
    from store.db import make_engine  # store.db imports this module

    with tempfile.TemporaryDirectory(prefix="tradestream-revision-") as scratch:
        url = database_url or f"sqlite:///{Path(scratch) / 'head.db'}"
        engine = make_engine(url)
        try:
            if database_url is None:
                upgrade(engine)
            with engine.connect() as connection:
                command.revision(
                    _config(connection), message=message, autogenerate=autogenerate, rev_id=_next_revision_id()
                )
        finally:
            engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m store.migrate revision|downgrade|history`: the developer's side of migrations."""
    from store.db import DEFAULT_DATABASE_URL, open_database

    parser = argparse.ArgumentParser(prog="python -m store.migrate", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    revision = commands.add_parser("revision", help="write the next revision file under store/migrations/versions")
    revision.add_argument("-m", "--message", required=True, help="what the revision changes")
    revision.add_argument("--autogenerate", action="store_true", help="fill it with the models' difference to head")
    revision.add_argument("--database-url", help="compare with this database (default: a scratch SQLite at head)")
    down = commands.add_parser("downgrade", help="downgrade a database (-1: one step; base: empty)")
    down.add_argument("revision")
    down.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    commands.add_parser("history", help="list the revisions, newest first")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("alembic").setLevel(logging.INFO)  # autogenerate says what it found
    try:
        if args.command == "revision":
            new_revision(args.message, autogenerate=args.autogenerate, database_url=args.database_url)
        elif args.command == "downgrade":
            engine = open_database(args.database_url, create_tables=False)
            try:
                print(downgrade(engine, args.revision).describe())
            finally:
                engine.dispose()
        else:
            for script in script_directory().walk_revisions():
                print(f"{script.revision}  {script.doc}")
    except SchemaError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
