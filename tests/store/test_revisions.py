"""store/revisions.py and store/schema_status.py: a process at head starts without importing Alembic."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import Engine, text

from store import migrate, revisions
from store.errors import SchemaError


def test_the_graph_read_from_the_files_is_alembics() -> None:
    script = migrate.script_directory()
    assert revisions.graph() == {s.revision: s.down_revision for s in script.walk_revisions()}
    assert revisions.head() == script.get_current_head()


def test_the_current_revision_is_read_as_alembic_reads_it(engine: Engine) -> None:
    with engine.begin() as connection:
        assert revisions.current(connection) == migrate.MigrationContext.configure(connection).get_current_revision()
        connection.execute(text(f"DELETE FROM {revisions.VERSION_TABLE}"))
        assert revisions.current(connection) is None
        connection.execute(text(f"DROP TABLE {revisions.VERSION_TABLE}"))
        assert revisions.current(connection) is None


def test_two_recorded_revisions_are_refused(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text(f"INSERT INTO {revisions.VERSION_TABLE} (version_num) VALUES ('0001')"))
        with pytest.raises(SchemaError, match="records 2 revisions"):
            revisions.current(connection)


# What each process imports and does at start, up to its database opened at head.
STARTS = """
import sys
import bus.broker, producers.orders, producers.positions, producers.replay, producers.webhook, store.admin, streamer.server
from store import db, schema_status
engine = db.open_database(sys.argv[1])
assert schema_status.status(engine).at_head
print(sorted(name for name in sys.modules if name.split(".")[0] == "alembic"))
"""


def test_a_process_whose_database_is_at_head_never_imports_alembic(engine: Engine) -> None:
    # ~0.2 s of CPU at every start of every process (and every restart after a crash).
    url = engine.url.render_as_string(hide_password=False)
    started = subprocess.run([sys.executable, "-c", STARTS, url], capture_output=True, text=True, timeout=60, check=True)
    assert started.stdout.split() == ["[]"], started.stderr
