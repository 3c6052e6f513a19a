"""Which database errors at start are waited out, and the pauses between tries (store/reachability.py)."""

from __future__ import annotations

import pytest

from store.reachability import Backoff, not_there_yet

REFUSED = ('connection failed: connection to server at "127.0.0.1", port 5432 failed: Connection refused')


@pytest.mark.parametrize(("backend", "reason", "waits"), [
    # The driver's words as measured (psycopg 3.3, PostgreSQL 15): the server not there yet.
    ("postgresql", REFUSED, True),
    ("postgresql", 'connection failed: connection to server on socket "/run/postgresql/.s.PGSQL.5432" failed: '
                   "No such file or directory", True),
    ("postgresql", "connection timeout expired", True),
    ("postgresql", 'connection failed: connection to server at "10.0.0.9", port 5432 failed: No route to host', True),
    ("postgresql", "failed to resolve host 'db': [Errno -3] Temporary failure in name resolution", True),
    ("postgresql", 'connection failed: connection to server at "127.0.0.1", port 5432 failed: FATAL:  '
                   "the database system is starting up", True),
    ("postgresql", "connection failed: ... FATAL:  the database system is in recovery mode", True),
    ("postgresql", "connection failed: ... FATAL:  the database system is shutting down", True),
    ("postgresql", "connection failed: ... FATAL:  sorry, too many clients already", True),
    ("postgresql", "consuming input failed: server closed the connection unexpectedly", True),
    # What waiting cannot mend.
    ("postgresql", 'connection failed: connection to server at "127.0.0.1", port 5432 failed: FATAL:  '
                   'database "nosuchdb" does not exist', False),
    ("postgresql", 'connection failed: ... FATAL:  role "nosuchrole" does not exist', False),
    ("postgresql", 'connection failed: ... FATAL:  password authentication failed for user "app"', False),
    ("postgresql", "failed to resolve host 'nosuch.invalid': [Errno -2] Name or service not known", False),
    ("postgresql", 'invalid connection option "bogus"', False),
    ("sqlite", "unable to open database file", False),
    ("sqlite", "file is not a database", False),
    ("sqlite", "database is locked", True),
    ("mysql", REFUSED, False),  # a backend these words were not measured on: as before, exit 1
])
def test_only_a_server_not_there_yet_is_waited_for(backend: str, reason: str, waits: bool) -> None:
    assert not_there_yet(backend, reason) is waits


def test_the_pauses_double_from_a_tenth_of_a_second_to_five_seconds_and_stay_there() -> None:
    backoff = Backoff()
    assert [backoff.next_pause() for _ in range(9)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]


def test_the_pause_stays_bounded_however_many_tries() -> None:
    backoff = Backoff(tries=10**6)  # a database down for weeks
    assert backoff.next_pause() == 5.0
