"""Exact money (issue 12): every money column a decimal, positions.mark_price and positions.unrealized_pnl.

Revision 0004 (after 0003). The money columns become NUMERIC on PostgreSQL and
VARCHAR(64) on SQLite (the decimal text of bus/decimals.py: store.columns.ExactDecimal).
The old values are doubles; each becomes the Decimal of its shortest round-trip
digits (Python's repr: 0.25 -> 0.25, 90000.0 -> 90000.0), the figure the older
release showed, not quantized to its symbol's step (a value is never changed
by the upgrade). They are read before the columns change and written back after
(SQLite's own REAL-to-TEXT keeps 15 significant digits, PostgreSQL's cast too).
`unrealized_pnl` has a server default ('0') for the positions already there;
`mark_price` is NULL until the position is marked. The downgrade turns the
decimals back into doubles and drops the two columns.
Frozen: plain SQLAlchemy types and literal values, never store.models or store.columns (they move on).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DECIMAL_TEXT_LENGTH = 64
EXACT = sa.String(length=DECIMAL_TEXT_LENGTH).with_variant(sa.Numeric(), "postgresql")

# table -> (primary key, money columns: name, nullable)
MONEY_COLUMNS: dict[str, tuple[str, tuple[tuple[str, bool], ...]]] = {
    "accounts": ("id", (("capital", False),)),
    "orders": ("id", (("quantity", False), ("price", True), ("stop_price", True),
                      ("filled_quantity", False), ("average_price", True))),
    "positions": ("id", (("quantity", False), ("entry_price", True), ("realized_pnl", False))),
    "executions": ("id", (("quantity", False), ("price", False))),
    "market_prices": ("symbol", (("price", False),)),
}
AUTOINCREMENT = frozenset({"executions"})


def _shortest(value: Any) -> Decimal | str | None:
    """The Decimal of a double's shortest round-trip digits (None stays None); on SQLite its plain text."""
    if value is None:
        return None
    exact = Decimal(repr(float(value)))
    return format(exact, "f") if op.get_bind().dialect.name == "sqlite" else exact


def _read(table: str) -> list[dict[str, Any]]:
    key, columns = MONEY_COLUMNS[table]
    names = [key, *(name for name, _ in columns)]
    rows = op.get_bind().execute(sa.text(f"SELECT {', '.join(names)} FROM {table}")).mappings()
    return [{name: row[name] for name in names} for row in rows]


def _write(table: str, rows: list[dict[str, Any]], convert: Any) -> None:
    if not rows:
        return
    key, columns = MONEY_COLUMNS[table]
    names = [name for name, _ in columns]
    assignments = ", ".join(f"{name} = :{name}" for name in names)
    statement = sa.text(f"UPDATE {table} SET {assignments} WHERE {key} = :key")
    op.get_bind().execute(statement, [{"key": row[key], **{name: convert(row[name]) for name in names}} for row in rows])


def _retype(table: str, new: sa.types.TypeEngine[Any], old: sa.types.TypeEngine[Any], cast: str) -> None:
    _, columns = MONEY_COLUMNS[table]
    # Batch mode copies the table on SQLite: executions keeps its AUTOINCREMENT (ids never reused, 0002).
    kwargs = {"sqlite_autoincrement": True} if table in AUTOINCREMENT else {}
    with op.batch_alter_table(table, table_kwargs=kwargs) as batch:
        for name, nullable in columns:
            batch.alter_column(
                name, existing_type=old, type_=new, existing_nullable=nullable,
                postgresql_using=f"{name}::{cast}",
            )


def upgrade() -> None:
    for table in MONEY_COLUMNS:
        rows = _read(table)
        _retype(table, EXACT, sa.Float(), "numeric")
        _write(table, rows, _shortest)
    with op.batch_alter_table("positions") as positions:
        positions.add_column(sa.Column("mark_price", EXACT, nullable=True))
        positions.add_column(sa.Column("unrealized_pnl", EXACT, server_default="0", nullable=False))


def _as_float(value: Any) -> float | None:
    return None if value is None else float(Decimal(value))


def downgrade() -> None:
    with op.batch_alter_table("positions") as positions:
        positions.drop_column("unrealized_pnl")
        positions.drop_column("mark_price")
    for table in MONEY_COLUMNS:
        rows = _read(table)
        _retype(table, sa.Float(), EXACT, "double precision")
        _write(table, rows, _as_float)
