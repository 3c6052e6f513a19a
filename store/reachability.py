"""Which database errors at start are worth waiting out, and the pause between tries. Pure: no I/O.

    not_there_yet(backend, reason)   the server is not there yet: wait and try again
        PostgreSQL: refused, no socket file, a connect that timed out, no route, a name server
        that cannot answer now, a server starting up, shutting down or recovering, no free
        connection slot, a connection dropped by a restart
        SQLite: the database is locked (another process migrating it)
        anything else is permanent, the process exits 1: authentication failed, no such
        database or role, a host name that does not exist, a bad option, a SQLite file or
        folder that cannot be opened (nothing brings it there by itself)
    Backoff                          0.1 s, doubling, to 5 s: how long to pause before each next try

A failed PostgreSQL connect has no SQLSTATE (libpq reports it as text, psycopg's
`sqlstate` is None), so the driver's words are all there is; they are matched in
the C locale's English, as libpq and a server with the default `lc_messages` say
them. A server that says them in another language fails fast, as every start did
before this module: the supervisor's retries are then what waits.
"""

from __future__ import annotations

from dataclasses import dataclass

FIRST_PAUSE_S = 0.1
LONGEST_PAUSE_S = 5.0
MOST_DOUBLINGS = 64  # past any cap: a float, however many tries (a database down for weeks)

# Lower case; each found anywhere in the driver's first line. libpq's own words first (strerror and
# its messages), then the server's FATAL lines of SQLSTATE 57P03 cannot_connect_now, 53300
# too_many_connections and 57P01 admin_shutdown.
POSTGRESQL_NOT_THERE_YET = (
    "connection refused",
    "no such file or directory",  # its unix socket, not there before the server has started
    "timeout expired",
    "connection timed out",
    "no route to host",
    "network is unreachable",
    "temporary failure in name resolution",
    "server closed the connection unexpectedly",
    "connection reset by peer",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
    "too many clients already",
    "remaining connection slots are reserved",
    "terminating connection due to administrator command",
)
SQLITE_NOT_THERE_YET = ("database is locked",)
NOT_THERE_YET = {"postgresql": POSTGRESQL_NOT_THERE_YET, "sqlite": SQLITE_NOT_THERE_YET}


def not_there_yet(backend: str, reason: str) -> bool:
    """Whether `reason` (the driver's first line) says the database of `backend` may be there if asked again."""
    words = reason.lower()
    return any(phrase in words for phrase in NOT_THERE_YET.get(backend, ()))


@dataclass
class Backoff:
    """The pauses between tries: `first_s`, doubled after each, never above `longest_s`."""

    first_s: float = FIRST_PAUSE_S
    longest_s: float = LONGEST_PAUSE_S
    tries: int = 0

    def next_pause(self) -> float:
        """The pause before the next try (and count this one)."""
        pause = min(self.longest_s, self.first_s * 2.0 ** min(self.tries, MOST_DOUBLINGS))
        self.tries += 1
        return pause
