"""What the order and the position handler do before their loop: the bus's keys, the database, the writer's lock.

    security.start (keys, binds, connects) ─▶ open_database ─▶ WriterLock.take (one writer per database) ─▶ sessions

Each step that fails has said why in one ERROR line by the time `open_store`
returns None, and the handler exits 1; the lock is taken before anything is
read, since another handler may be writing the same rows. A database not there
yet (PostgreSQL refused, starting up) is waited for, the lock's take with it
(store/wait.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bus import security
from producers.errors import AnotherWriter
from producers.writer_lock import WriterLock
from store.db import make_session_factory
from store.errors import DatabaseUnavailable
from store.wait import wait_for_database

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
        writer = wait_for_database(database_url, lambda engine: WriterLock.take(engine, source))
    except DatabaseUnavailable as exc:
        log.error("%s", exc)
        return None
    except (AnotherWriter, OSError, SQLAlchemyError) as exc:
        log.error("cannot start: %s", exc)
        return None
    return Store(make_session_factory(writer.engine), writer)
