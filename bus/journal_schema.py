"""The journal's tables, and the migrations that bring an older journal to them (bus/journal.py describes the tables).

    schema 1  one row per event: events(topic, slot, seq, header, payload)
    schema 2  one row per key per batch: runs(topic, first, last, events)
    schema 3  schema 2 and the remembered rejections: rejections(stream, event_id, reason)

A journal is migrated in place when a broker opens it; a newer schema than this
broker's is refused (JournalError), never read as if it were this one.
"""

from __future__ import annotations

import sqlite3

from bus import codec
from bus.errors import JournalError

SCHEMA_VERSION = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS heads (topic BLOB PRIMARY KEY, head INTEGER NOT NULL, touched INTEGER NOT NULL) WITHOUT ROWID;
-- A rowid table: a batch's new runs go to the end, so a batch dirties few pages (clustered by
-- topic, WITHOUT ROWID, every key dirtied a page of its own: measured here with schema 1).
CREATE TABLE IF NOT EXISTS runs (
    topic BLOB NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL, events BLOB NOT NULL,
    UNIQUE (topic, last)
);
CREATE TABLE IF NOT EXISTS streams (stream TEXT PRIMARY KEY, last INTEGER NOT NULL, touched INTEGER NOT NULL) WITHOUT ROWID;
-- A rowid table: a new rejection gets a rowid above every other, so rowid order is oldest first.
CREATE TABLE IF NOT EXISTS rejections (
    stream TEXT NOT NULL, event_id INTEGER NOT NULL, reason TEXT NOT NULL, UNIQUE (stream, event_id)
);
"""


def prepare(db: sqlite3.Connection, path: str) -> None:
    """Create what is missing and migrate an older schema; JournalError for a schema this broker does not read."""
    db.executescript(SCHEMA)  # every table IF NOT EXISTS: a new journal's, or a table an older schema lacked
    schema = meta(db, "schema")
    if schema is None:
        db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
    elif schema == 1:
        _migrate_from_1(db)
    elif schema == 2:  # the rejections table is new (created above, empty: they were in memory only)
        db.execute("UPDATE meta SET value = ? WHERE name = 'schema'", (SCHEMA_VERSION,))
    elif schema != SCHEMA_VERSION:
        raise JournalError(f"journal {path} has schema {schema}, this broker reads {SCHEMA_VERSION}")


def meta(db: sqlite3.Connection, name: str) -> int | None:
    """A value of the meta table, None when it is not there."""
    row = db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
    return None if row is None else int(row[0])


def _migrate_from_1(db: sqlite3.Connection) -> None:
    """Schema 1 kept one row per event (events(topic, slot, seq, header, payload)): one run per key now."""
    rows: dict[bytes, list[tuple[int, bytes, bytes]]] = {}
    for topic, seq, header, payload in db.execute("SELECT topic, seq, header, payload FROM events ORDER BY topic, seq"):
        rows.setdefault(topic, []).append((seq, header, payload))
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO runs VALUES (?, ?, ?, ?)",
        [(t, kept[0][0], kept[-1][0], codec.pack([(h, p) for _, h, p in kept])) for t, kept in rows.items()],
    )
    db.execute("DROP TABLE events")
    db.execute("UPDATE meta SET value = ? WHERE name = 'schema'", (SCHEMA_VERSION,))
    db.execute("COMMIT")
