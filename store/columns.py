"""The declarative base and the column types and helpers that every table module builds on.

Ids are 64-bit integers (the contract's 1 ≤ id < 2^63); on SQLite they are the
rowid (`INTEGER PRIMARY KEY`). Times are timezone-aware UTC datetimes on both
SQLite and PostgreSQL. Money is exact Decimal on both (ExactDecimal). The tables
are in store/models.py (the domain) and store/handoff.py (the hand-offs between
processes); store/schema.py is the metadata with all of them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Dialect, ForeignKey, Integer, Numeric, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

from bus import decimals
from store import money

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")
NAME_LENGTH = 64
DECIMAL_TEXT_LENGTH = 64  # bus/decimals.py: a sign, 24 + 24 digits and a point fit


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (the default of every timestamp column)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime; SQLite, which keeps no zone, gets UTC written and read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: timestamps must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class ExactDecimal(TypeDecorator[Decimal]):
    """A Decimal kept exactly: NUMERIC on PostgreSQL, its decimal text on SQLite.

    SQLite's NUMERIC affinity turns `0.20392143` into a REAL (a double, 15
    significant digits) and SQLAlchemy's Numeric reads that float back, so on
    SQLite the column is VARCHAR (TEXT affinity: stored as written) holding the
    plain decimal text of bus/decimals.py. Money columns are never compared or
    summed in SQL (store/money.py does the arithmetic), so text loses nothing.
    """

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(DECIMAL_TEXT_LENGTH))
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal) or not value.is_finite():
            raise ValueError(f"{value!r:.40}: money columns take finite Decimals")
        return decimals.text(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return money.exact(value)

    def compare_values(self, x: Any, y: Any) -> bool:
        """Whether a new value is no change: equal and written alike (the wire keeps trailing zeros, CONTRACT §4).

        With ==, a position opened at unrealized_pnl 0 then marked at 0E-10 was never updated: its
        event said '0.0000000000' and its snapshot row '0'.
        """
        if isinstance(x, Decimal) and isinstance(y, Decimal):
            return x.as_tuple() == y.as_tuple()
        return bool(x == y)


Money = Decimal
MONEY = ExactDecimal


def check_one_of(table: str, column: str, choices: frozenset[str]) -> CheckConstraint:
    """The check constraint `ck_<table>_<column>`: the column holds one of `choices`."""
    allowed = ", ".join(f"'{choice}'" for choice in sorted(choices))
    return CheckConstraint(f"{column} IN ({allowed})", name=f"ck_{table}_{column}")


def created_time() -> Mapped[datetime]:
    """A row's creation time, set on insert."""
    return mapped_column(UTCDateTime(), default=utc_now)


def updated_time() -> Mapped[datetime]:
    """A row's last change time, set on insert and on each update."""
    return mapped_column(UTCDateTime(), default=utc_now, onupdate=utc_now)


def cascading_fk(target: str, *, index: bool = False) -> Mapped[Any]:
    """A reference to `target` ("table.id"): deleting that row deletes this one, in the database itself."""
    return mapped_column(Id, ForeignKey(target, ondelete="CASCADE"), index=index)


class Base(DeclarativeBase):
    """The declarative base of every tradestream table."""
