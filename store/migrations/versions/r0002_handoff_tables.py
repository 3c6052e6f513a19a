"""The hand-offs become tables (issue 9): order_inbox, executions, outbox, outbox_streams, market_prices.

Revision 0002 (after 0001). Their ids are AUTOINCREMENT on SQLite (never reused:
a reused outbox id would look to the broker like an event it already sequenced);
the pending indexes are partial (only the rows still to do).
Frozen: plain SQLAlchemy types and literal values, never store.models or store.columns (they move on).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def _pending_index(table: str, condition: str) -> None:
    where = sa.text(condition)
    op.create_index(f"ix_{table}_pending", table, ["id"], sqlite_where=where, postgresql_where=where)


def upgrade() -> None:
    op.create_table(
        "market_prices",
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("symbol"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", ID, nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("topic", sa.LargeBinary(length=64), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("sent_at", TIME, nullable=True),
        sa.Column("failed", sa.String(length=1000), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_outbox_source_id", "outbox", ["source", "id"])
    op.create_index("ix_outbox_source_sent", "outbox", ["source", "sent_at"])
    op.create_table(
        "outbox_streams",
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("source"),
        sa.UniqueConstraint("stream"),
    )
    op.create_table(
        "order_inbox",
        sa.Column("id", ID, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("signal_id", ID, nullable=True),
        sa.Column("received_at", TIME, nullable=False),
        sa.Column("handled_at", TIME, nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.CheckConstraint("kind IN ('signal', 'tick')", name="ck_order_inbox_kind"),
        sa.CheckConstraint("outcome IN ('done', 'failed', 'rejected')", name="ck_order_inbox_outcome"),
        sa.ForeignKeyConstraint(["signal_id"], ["signals.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_order_inbox_handled_at", "order_inbox", ["handled_at"])  # retention's order
    _pending_index("order_inbox", "handled_at IS NULL")
    op.create_index("ix_order_inbox_signal_id", "order_inbox", ["signal_id"])
    op.create_table(
        "executions",
        sa.Column("id", ID, nullable=False),
        sa.Column("order_id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("strategy_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("executed_at", TIME, nullable=False),
        sa.Column("applied_at", TIME, nullable=True),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.CheckConstraint("side IN ('BUY', 'SELL')", name="ck_executions_side"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_executions_order_id", "executions", ["order_id"])
    _pending_index("executions", "applied_at IS NULL")


def downgrade() -> None:
    for table in ("executions", "order_inbox", "outbox_streams", "outbox", "market_prices"):
        op.drop_table(table)  # its indexes go with it
