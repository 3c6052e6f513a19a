"""One order handler and one position handler per database: a second one refuses to start. Blocking.

Each handler is the only writer of its rows: the order handler holds the paper
exchange in memory and numbers its outbox stream, the position handler folds
fills into positions it read; the broker's stream bookkeeping (a re-sent event
is one whose id is not above the stream's last) assumes one relay per stream.
Two order handlers on one database filled a resting order twice and lost
events a relay sent after the other's higher ids (tests/faults/test_second_instance.py).
The bind of the handler's wake-up endpoint stops a second one with the same
endpoints, not one with others: another working directory (whose relative
`ipc://var/bus/...` are other files), other flags, another host. So each
handler holds, for its lifetime, a lock named by its database and its source:

    SQLite       flock on `<database file>-<source>.lock` beside it (the kernel releases it when the process dies)
    PostgreSQL   pg_try_advisory_lock on a connection of its own, held open (released when the session ends)
    other, or a SQLite database in memory      none

A PostgreSQL session can end under a running handler (the server restarted, the
backend terminated): `still_held()`, called every sweep, takes the lock again on
a new connection and says False only when another process holds it by then (the
handler then stops). While the database cannot be reached it says True: nobody
can take the lock then, nor write. Between a session's end and the next sweep
(SWEEP_S, 1 s) a second handler could take the lock and run alongside: this
closes the mistake of a second process, not every race of a database restart.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from producers.errors import AnotherWriter

log = logging.getLogger(__name__)

TRY_LOCK = text("SELECT pg_try_advisory_lock(:key)")
START_WAIT_S = 2.0  # PostgreSQL: how long a starting handler waits for a lock held by a session that is ending
START_RETRY_S = 0.1
LOCK_FILE_MODE = 0o600


def lock_key(database: str, schema: str, source: str) -> int:
    """The advisory lock's key of a source in a database and schema: 64 bits of their digest, signed."""
    digest = hashlib.sha256(f"tradestream-writer\0{database}\0{schema}\0{source}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class WriterLock:
    """The lock of one source's writer in one database, held until `close()` or the process's end."""

    def __init__(self, engine: Engine, source: str) -> None:
        self.engine, self.source = engine, source
        self._fd: int | None = None
        self._connection: Connection | None = None
        self._advisory = False  # a PostgreSQL lock: its session is checked by `still_held`
        self.path: Path | None = None

    @classmethod
    def take(cls, engine: Engine, source: str) -> WriterLock:
        """Take the lock of `source` in the engine's database; AnotherWriter when another process holds it."""
        lock = cls(engine, source)
        backend = engine.url.get_backend_name()
        if backend == "sqlite":
            lock._take_file()
        elif backend == "postgresql":
            lock._advisory = True
            if not lock._take_advisory_waiting(START_WAIT_S):
                raise AnotherWriter(f"another tradestream-{source} runs on this database (it holds its PostgreSQL "
                                    "advisory lock): run one per database")
        return lock

    def _take_file(self) -> None:
        database = self.engine.url.database or ""
        if not database or database == ":memory:" or database.startswith("file:"):
            return
        self.path = Path(os.path.realpath(database) + f"-{self.source}.lock")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, LOCK_FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise AnotherWriter(f"another tradestream-{self.source} runs on this database (process {holder or '?'}"
                                f" holds {self.path}): run one per database") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _take_advisory_waiting(self, wait_s: float) -> bool:
        """`_take_advisory`, tried again for up to `wait_s`: a SIGKILLed holder's session ends only when its
        backend has read the closed socket, a moment after the process is gone (a restart at once met it)."""
        deadline = time.monotonic() + wait_s
        while not self._take_advisory():
            if time.monotonic() >= deadline:
                return False
            time.sleep(START_RETRY_S)
        return True

    def _take_advisory(self) -> bool:
        """Take the advisory lock on a new connection kept open; whether it was free."""
        connection = self.engine.connect()
        try:
            database, schema = connection.execute(text("SELECT current_database(), current_schema()")).one()
            key = lock_key(str(database), str(schema), self.source)
            taken = bool(connection.execute(TRY_LOCK, {"key": key}).scalar())
            connection.commit()  # the lock is the session's: it outlives the transaction
        except BaseException:
            connection.close()
            raise
        if not taken:
            connection.close()
            return False
        self._connection = connection
        return True

    def still_held(self) -> bool:
        """Whether this process still holds the lock (PostgreSQL: taken again if its session ended)."""
        if not self._advisory:
            return True
        try:
            if self._connection is None:
                raise ConnectionError("no session")
            self._connection.execute(text("SELECT 1")).close()
            self._connection.commit()
            return True
        except (SQLAlchemyError, ConnectionError):
            pass
        self._drop_connection()
        try:
            taken = self._take_advisory()
        except SQLAlchemyError:
            return True  # unreachable: nobody else can take it meanwhile; tried again at the next sweep
        if taken:
            log.warning("the writer lock of %s was lost with its database session and taken again", self.source)
        else:
            log.error("the writer lock of %s was lost with its database session and another process holds it now",
                      self.source)
        return taken

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.invalidate()
            except SQLAlchemyError:
                pass

    def close(self) -> None:
        """Release the lock."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._advisory = False
        self._drop_connection()  # its session ends, and the lock with it (a pooled one would keep both)
