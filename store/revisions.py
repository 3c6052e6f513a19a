"""This release's schema revisions and a database's current one, without importing Alembic.

Every process checks at start that its database is at head, and importing Alembic
costs ~0.2 s of CPU (most of a producer's start-up after SQLAlchemy's own): the
check reads the revision files' own `revision` and `down_revision` and the
database's version table itself. Alembic (store/migrate.py) is imported only to
change a schema; tests/store/test_migrations.py checks that both read the same graph.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from sqlalchemy import Connection, inspect, text

from store.errors import SchemaError

VERSIONS = Path(__file__).with_name("migrations") / "versions"
VERSION_TABLE = "alembic_version"  # Alembic's default name, which store/migrate.py keeps
HEAD = "head"  # Alembic's name for the newest revision, as `--revision` takes it


def _assignments(path: Path) -> dict[str, object]:
    """The module-level `name = literal` assignments of one revision file."""
    found: dict[str, object] = {}
    for node in ast.parse(path.read_text(encoding="utf-8"), str(path)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:  # not a literal (a column type, say): not one of ours
                continue
    return found


@functools.cache
def graph() -> dict[str, str | None]:
    """Every revision shipped with this release → the one it follows (None for the first)."""
    edges: dict[str, str | None] = {}
    for path in sorted(VERSIONS.glob("r*.py")):
        values = _assignments(path)
        revision, down = values.get("revision"), values.get("down_revision")
        if not isinstance(revision, str) or not (down is None or isinstance(down, str)):
            raise SchemaError(f"{path.name}: no literal `revision` and `down_revision`")
        edges[revision] = down
    return edges


def known() -> frozenset[str]:
    """The revisions this release has a file for."""
    return frozenset(graph())


@functools.cache
def head() -> str:
    """This release's head: the one revision no other follows."""
    heads = known() - set(graph().values())
    if len(heads) != 1:
        raise SchemaError(f"{VERSIONS} has {len(heads)} heads ({', '.join(sorted(heads)) or 'none'}): it needs exactly one")
    return next(iter(heads))


def current(connection: Connection) -> str | None:
    """The revision in the database's version table, None when it has none (as Alembic reads it)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    versions = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(versions) > 1:
        raise SchemaError(f"the database records {len(versions)} revisions ({', '.join(sorted(versions))}): migrate it by hand")
    return versions[0] if versions else None
