"""Replay progress (a killed replay resumes): the replay_runs table.

Revision 0005 (after 0004). One row per trade log, known by the sha256 of its
bytes and its size (unique); `last_line` is written in the transaction of each
batch of inbox rows the replay stores. Nothing to carry over: a database
upgraded from 0004 has no progress, so a replay killed under the older release
starts from its first line. The downgrade drops the table.
Frozen: plain SQLAlchemy types and literal values, never store.models or store.columns (they move on).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "replay_runs",
        sa.Column("id", ID, nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("file", sa.String(length=1000), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("last_line", sa.BigInteger(), nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.Column("finished_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("digest", "size", name="uq_replay_runs_log"),
    )


def downgrade() -> None:
    op.drop_table("replay_runs")
