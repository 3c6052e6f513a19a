"""What the order and the position handler do before their loop: the bus's keys, the database, the writer's lock.

    security.start (keys, binds, connects) ─▶ open_database ─▶ take_or_log (one writer per database) ─▶ sessions

Each step that fails has said why in one ERROR line by the time `open_store`
returns None, and the handler exits 1; the lock is taken before anything is
read, since another handler may be writing the same rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from bus import security
from producers.writer_lock import WriterLock, take_or_log
from store.db import make_session_factory, open_database
from store.errors import DatabaseUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Store:
    """A handler's database, its sessions and the lock that makes it the only writer of `source`'s rows."""

    sessions: sessionmaker[Session]
    writer: WriterLock


def open_store(
    bus_keys: str, database_url: str, source: str, *, binds: Sequence[str], connects: Sequence[str]
) -> Store | None:
    """The handler's store, or None after an ERROR line (bad keys, no database, another writer)."""
    if not security.start(bus_keys, binds=tuple(binds), connects=tuple(connects)):
        return None
    try:
        engine = open_database(database_url)
    except DatabaseUnavailable as exc:
        log.error("%s", exc)
        return None
    writer = take_or_log(engine, source)
    if writer is None:
        return None
    return Store(make_session_factory(engine), writer)
