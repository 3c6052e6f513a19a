"""Where tradestream-replay's records go (producers/replay.py): the order inbox, or the broker with --raw.

`InboxSink` holds signals and ticks and stores them in the order handler's
inbox, with the line the run reached (replay_runs.py), in one transaction per
flush of at most INBOX_BATCH records, then wakes the order handler (best
effort: its sweep finds the rows anyway). `RawSink` hands logged bus events to
the broker's plain ingress as they come, and keeps no progress.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from bus.errors import BusUnavailable
from bus.events import WireMessage
from bus.publisher import Publisher
from producers import inbox, replay_runs
from producers.commands import WAKE, Command, SignalCommand, TickCommand
from producers.replay_runs import RunProgress
from producers.tradelog import LogRecord

INBOX_BATCH = 500


class Sink(Protocol):
    """Where records go: `send` takes one (False: a record of the other mode), `flush` delivers what it holds.

    `finished`: the log was read to its end (the inbox records its run as finished).
    """

    target: str

    @property
    def stored_through(self) -> int | None:
        """The last line whose records are stored (None: no progress is kept)."""

    def send(self, record: LogRecord) -> bool: ...

    def flush(self, *, finished: bool = False) -> None: ...


class InboxSink:
    """Signals and ticks into the order inbox with the run's progress, one transaction per flush, then a wake-up."""

    def __init__(self, sessions: sessionmaker[Session], wakes: Publisher, run: RunProgress) -> None:
        self._sessions, self._wakes, self._run = sessions, wakes, run
        self._held: list[Command] = []
        self._through = run.last_line  # the last line sent, whatever its mode
        self.target = "the order inbox"

    def send(self, record: LogRecord) -> bool:
        self._through = record.line
        if not isinstance(record.item, (SignalCommand, TickCommand)):
            return False
        self._held.append(record.item)
        if len(self._held) >= INBOX_BATCH:
            self.flush()
        return True

    def flush(self, *, finished: bool = False) -> None:
        if self._held or finished:
            self.store(finished=finished)

    @property
    def stored_through(self) -> int:
        """The last line whose records are stored: where a run without --restart resumes."""
        return self._run.last_line

    def store(self, *, finished: bool) -> None:
        """The held commands and the line reached, in ONE transaction; then the wake-up."""
        with self._sessions() as session:
            replay_runs.advance(session, self._run, self._through, finished=finished)
            for command in self._held:
                inbox.put(session, command)
            session.commit()
        self._run = self._run.at(self._through)
        if not self._held:
            return
        self._held.clear()
        try:
            self._wakes.send(*WAKE)
        except BusUnavailable:
            pass  # the order handler's sweep finds the rows anyway


class RawSink:
    """Logged bus events straight to the broker's ingress."""

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher
        self.target = publisher.endpoint

    def send(self, record: LogRecord) -> bool:
        if not isinstance(record.item, WireMessage):
            return False
        self._publisher.publish(record.item)
        return True

    def flush(self, *, finished: bool = False) -> None:
        """Every event is handed to the socket as it is sent."""

    stored_through = None  # no progress is kept
