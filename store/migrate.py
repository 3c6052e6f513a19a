"""Schema migrations: upgrading a database to this release's head with Alembic, downgrades, new revisions.

The revisions live in store/migrations/versions/ (inside the package, so an
installed wheel carries them); Alembic is driven from here with its Config and
command API, no alembic.ini. Every upgrade runs in ONE transaction that holds a
lock, so processes started together (supervisord) migrate one after another and
the later ones find the work done: on SQLite `BEGIN IMMEDIATE` (the write lock),
with foreign keys off while batch mode copies tables (a copy of `users` dropped
with them on would cascade into every row that refers to it) and checked before
the commit; on PostgreSQL a transaction-level advisory lock (its DDL is
transactional too).

Where a database stands is read without Alembic (store/schema_status.py, store/revisions.py):
a process at head never imports this module. A database made by an older
release's `init-db` is stamped at the revision its tables match, then upgraded;
an empty database migrates from nothing.

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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, text

from store import revisions, schema_status
from store.errors import SchemaError

MIGRATIONS = Path(__file__).with_name("migrations")
HEAD = revisions.HEAD
# pg_advisory_xact_lock's key for "migrating this database" (any constant shared by every process).
POSTGRES_LOCK_KEY = 0x7472_6164_6573_7472  # b"tradestr"
FILE_TEMPLATE = "r%%(rev)s_%%(slug)s"  # versions/r0004_what_changed.py (%% is the Config's escape)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migrated:
    """What an upgrade did: the status before it and the revision after it."""

    before: schema_status.Status
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


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", FILE_TEMPLATE)
    config.attributes["connection"] = connection
    return config


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


def _check_target(current: str | None, target: str) -> None:
    """SchemaError for a revision this release does not know, or an upgrade that would go down."""
    script = script_directory()
    if current is not None and current not in revisions.known():
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
        before = schema_status.read_status(connection)  # read under the lock: a process that waited finds the work done
        _check_target(before.current or before.legacy, revision)
        if before.legacy is not None:
            _alembic("stamp", connection, before.legacy)
        _alembic("upgrade", connection, revision)
        after = revisions.current(connection)
    assert after is not None
    return Migrated(before, after)


def downgrade(engine: Engine, revision: str) -> Migrated:
    """Downgrade to `revision` ("-1": one step; "base": nothing left) in one transaction."""
    with _locked(engine) as connection:
        before = schema_status.read_status(connection)
        _alembic("downgrade", connection, revision)
        after = revisions.current(connection)
    return Migrated(before, after or "base")


def ensure_head(engine: Engine) -> Migrated | None:
    """What a process does at start: nothing when at head (one read), else upgrade and log it once."""
    if schema_status.status(engine).at_head:
        return None
    migrated = upgrade(engine)
    if migrated.changed:
        log.info("%s", migrated.describe())
    return migrated


def stamp_head(connection: Connection) -> None:
    """Record head on a schema made from the models at once (store.db.init_db, the tests' fast path)."""
    MigrationContext.configure(connection).stamp(script_directory(), HEAD)


def _next_revision_id() -> str:
    numbers = [int(revision) for revision in revisions.known() if revision.isdigit()]
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
