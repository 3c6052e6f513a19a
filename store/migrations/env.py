"""Alembic's environment: store/migrate.py hands in the connection (in its locked transaction) and the models.

Never run offline or from an alembic.ini: `tradestream-admin migrate` and
`python -m store.migrate` are the ways in. SQLite ALTERs go through batch mode
(a copy of the table), which store/migrate.py runs with foreign keys off.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from store.schema import METADATA

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations with `tradestream-admin migrate` or `python -m store.migrate`")
context.configure(
    connection=connection,
    target_metadata=METADATA,
    render_as_batch=True,
    compare_type=True,
    compare_server_default=True,
)
with context.begin_transaction():
    context.run_migrations()
