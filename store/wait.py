"""A process's start waits for its database: what the webhook, the streamer, orders and positions call.

    wait_for_database(url, then)   open_database(url), then `then(engine)` (take the writer's lock, check
                                   the schema), both tried again after a pause (store/reachability.py's
                                   Backoff, 0.1 s doubling to 5 s) for as long as the database is not
                                   there yet; a permanent error is raised at once, as without waiting

After a machine's reboot PostgreSQL may come up after tradestream; a process that
exited at once was restarted by supervisord ten times in about a minute and then
left FATAL. Logs: one WARNING at the first failed try with the driver's reason, at
most one more per 30 s (how long so far, how many tries it stands for), one INFO
once the database is up. Nothing listens while it waits. A SIGTERM or SIGINT while
it waits ends the process with exit 0: bus/process.exit_on_stop_signals_while_starting
raises SystemExit in the pause or the connect, and nothing here catches it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from bus.quiet_log import QuietLog
from store.db import can_wait_for, first_line, open_database
from store.errors import DatabaseUnavailable
from store.reachability import Backoff

log = logging.getLogger(__name__)

T = TypeVar("T")
REPORT_EVERY_S = 30.0


def wait_for_database(url: str, then: Callable[[Engine], T], *, create_tables: bool = True) -> T:
    """`then(open_database(url))`, tried again while the database is not there yet; else what they raise.

    The engine is the caller's once `then` returns (it is disposed when a try fails).
    """
    backoff = Backoff()
    report = QuietLog(log, logging.WARNING, REPORT_EVERY_S)
    started = 0.0
    while True:
        try:
            done = _try(url, then, create_tables)
        except DatabaseUnavailable as exc:
            if not exc.not_there_yet:
                raise
            if not report.count:
                started = time.monotonic()
                report("%s; waiting for it (trying again after %g s, doubling to %g s)", exc, backoff.first_s, backoff.longest_s)
            else:
                report("still waiting for the database after %.0f s: %s", time.monotonic() - started, exc)
            time.sleep(backoff.next_pause())  # the pause between tries of a server not there yet
            continue
        if report.count:
            log.info("database %s is up, after %.1f s of waiting", make_url(url).render_as_string(hide_password=True),
                     time.monotonic() - started)
        return done


def _try(url: str, then: Callable[[Engine], T], create_tables: bool) -> T:
    engine = open_database(url, create_tables=create_tables)
    try:
        return then(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        if can_wait_for(engine, exc):
            shown = make_url(url).render_as_string(hide_password=True)
            raise DatabaseUnavailable(f"cannot use database {shown}: {first_line(exc)}", not_there_yet=True) from None
        raise
    except BaseException:
        engine.dispose()
        raise
