"""tradestream-replay FILE: feeds a trade log (tradelog.py, docs/trade-log.md) into the stack.

    signals, ticks ─▶ order inbox rows (--database-url) ─PUSH wake --orders─▶ tradestream-orders   (default)
    logged events  ─PUSH --ingress─▶ tradestream-broker                                          (--raw)

Records are sent at `--speed` times the pace recorded in their `ts` (0: as fast
as possible). By default they become rows of the order handler's inbox, the
same inbox as the webhook's signals, so signals and ticks keep one arrival order
and each is handled exactly once, whether or not the order handler is up: the
records due together are committed in one transaction (at most INBOX_BATCH),
then the order handler is woken (best effort). With --raw the logged events go
straight to the broker's plain ingress (at most once, CONTRACT §2). A bad line
is reported with its number and either stops the replay (exit 1, `--on-error
stop`, the default; the lines before it are stored) or is skipped (`skip`).
Lines of the other mode (events without --raw, signals and ticks with it) are
counted and passed over. Signals are not checked against a token: whoever can
write the database is trusted, as the webhook is. A progress bar is drawn only
when stderr is a terminal. On exit queued messages get LINGER_MS to reach their peer.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from bus import endpoints, kinds, security
from bus.errors import BusUnavailable
from bus.events import WireMessage
from bus.process import SettingsParser, configure_logging, setting, stop_on_signals
from bus.publisher import Publisher
from bus.security import bus_keys_setting
from producers import inbox
from producers.commands import WAKE, Command, SignalCommand, TickCommand
from producers.errors import TradeLogError
from producers.tradelog import LogRecord, read_csv, read_jsonl
from store.db import DEFAULT_DATABASE_URL, make_session_factory, open_database, sqlalchemy_url
from store.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

SEND_TIMEOUT_MS = 5000
LINGER_MS = 3000
INBOX_BATCH = 500


@dataclass(frozen=True, slots=True)
class ReplayConfig:
    """Settings of one replay run."""

    file: Path  # the positional argument, not a setting
    speed: float = setting(1.0, kind=kinds.non_negative_float, help="times the recorded pace; 0 = at once")
    raw: bool = setting(False, help="publish the log's event lines straight to the broker")
    database_url: str = setting(DEFAULT_DATABASE_URL, kind=sqlalchemy_url, help="SQLAlchemy database URL of the order inbox")
    orders: str = setting(endpoints.ORDERS, kind=kinds.zmq_endpoint, help="order handler endpoint woken for new inbox rows")
    ingress: str = setting(endpoints.INGRESS, kind=kinds.zmq_endpoint, help="broker endpoint for events (--raw)")
    bus_keys: str = bus_keys_setting()
    on_error: str = setting("stop", kind=kinds.one_of("stop", "skip"), help="what a bad line does")
    format: str = setting("auto", kind=kinds.one_of("auto", "jsonl", "csv"), help="auto: by file name")


@dataclass(slots=True)
class ReplayReport:
    """What a run did."""

    sent: int = 0
    other_mode: int = 0
    bad_lines: int = 0
    stopped: bool = False


class Pacer:
    """Waits until each record's time comes, `speed` times faster than recorded (0: never waits)."""

    def __init__(self, speed: float, stop: threading.Event, clock: Callable[[], float] = time.monotonic) -> None:
        self.speed, self._stop, self._clock = speed, stop, clock
        self._origin: tuple[float, float] | None = None

    def due_now(self, ts: float) -> bool:
        """Whether `ts` is due already (waiting for it would not block)."""
        if self.speed == 0 or self._origin is None:
            return True
        first_ts, started = self._origin
        return started + max(0.0, ts - first_ts) / self.speed <= self._clock()

    def wait(self, ts: float) -> bool:
        """Block until `ts` is due; False if asked to stop meanwhile."""
        if self.speed == 0:
            return not self._stop.is_set()
        if self._origin is None:
            self._origin = (ts, self._clock())
        first_ts, started = self._origin
        due = started + max(0.0, ts - first_ts) / self.speed
        return not self._stop.wait(max(0.0, due - self._clock()))


class Sink(Protocol):
    """Where records go: `send` takes one (False: a record of the other mode), `flush` delivers what it holds."""

    def send(self, record: LogRecord) -> bool: ...

    def flush(self) -> None: ...


def replay(
    records: Iterable[LogRecord | TradeLogError],
    sink: Sink,
    pacer: Pacer,
    *,
    skip_bad_lines: bool,
) -> ReplayReport:
    """Send every record in order, flushing whenever the next one is not due yet."""
    report = ReplayReport()
    for record in records:
        if isinstance(record, TradeLogError):
            report.bad_lines += 1
            if not skip_bad_lines:
                raise record
            log.warning("line %d skipped: %s", record.line, record.message)
            continue
        if not pacer.due_now(record.ts):
            sink.flush()
        if not pacer.wait(record.ts):
            report.stopped = True
            break
        if sink.send(record):
            report.sent += 1
        else:
            report.other_mode += 1
    return report


class InboxSink:
    """Signals and ticks into the order inbox, one transaction per flush, then a wake-up for the order handler."""

    def __init__(self, sessions: sessionmaker[Session], wakes: Publisher) -> None:
        self._sessions, self._wakes = sessions, wakes
        self._held: list[Command] = []
        self.target = "the order inbox"

    def send(self, record: LogRecord) -> bool:
        if not isinstance(record.item, (SignalCommand, TickCommand)):
            return False
        self._held.append(record.item)
        if len(self._held) >= INBOX_BATCH:
            self.flush()
        return True

    def flush(self) -> None:
        if not self._held:
            return
        with self._sessions() as session:
            for command in self._held:
                inbox.put(session, command)
            session.commit()
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

    def flush(self) -> None:
        """Every event is handed to the socket as it is sent."""


def read_records(config: ReplayConfig, lines: Iterable[str]) -> Iterator[LogRecord | TradeLogError]:
    """The records of the log, in the format its flag or its file name says."""
    is_csv = config.format == "csv" or (config.format == "auto" and config.file.suffix.lower() == ".csv")
    return read_csv(lines) if is_csv else read_jsonl(lines)


def parse_config(argv: list[str] | None) -> tuple[ReplayConfig, str]:
    """Read flags and TRADESTREAM_* variables."""
    parser = SettingsParser(
        ReplayConfig,
        prog="tradestream-replay",
        description="Replays a trade log (JSONL or CSV; see docs/trade-log.md) into the order handler's inbox, "
        "or with --raw its events straight into the broker.",
    )
    parser.add_argument("file", type=Path, help="the trade log (.jsonl or .csv)")
    args = parser.parse_args(argv)
    return ReplayConfig(args.file, **parser.values(args)), parser.log_level(args)


def _count_lines(path: Path) -> int:
    with path.open("rb") as stream:
        return sum(1 for _ in stream)


def make_sink(config: ReplayConfig, publisher: Publisher) -> InboxSink | RawSink:
    """The inbox (default) or the broker (--raw); the inbox's tables are created when missing."""
    if config.raw:
        return RawSink(publisher)
    return InboxSink(make_session_factory(open_database(config.database_url)), publisher)


def run(config: ReplayConfig, stream: TextIO, stop: threading.Event) -> int:
    """Replay an open log; the exit status."""
    if config.raw:
        publisher = Publisher(config.ingress, send_timeout_ms=SEND_TIMEOUT_MS, linger_ms=LINGER_MS)
    else:
        publisher = Publisher(config.orders, send_timeout_ms=0, linger_ms=LINGER_MS)
    bar = tqdm(stream, total=_count_lines(config.file), unit="line", disable=not sys.stderr.isatty())
    try:
        sink = make_sink(config, publisher)
        try:
            report = replay(read_records(config, bar), sink, Pacer(config.speed, stop),
                            skip_bad_lines=config.on_error == "skip")
        finally:
            sink.flush()  # the lines before a bad one are kept, as they were sent
    except TradeLogError as exc:
        log.error("%s:%d: %s", config.file, exc.line, exc.message)
        return 1
    except (BusUnavailable, SQLAlchemyError, DatabaseUnavailable) as exc:
        log.error("cannot send: %s", str(exc).splitlines()[0])
        return 1
    except UnicodeDecodeError as exc:
        log.error("%s: not UTF-8 text (%s)", config.file, exc.reason)
        return 1
    finally:
        bar.close()
        publisher.close()
    log.info("%s: %d records sent to %s, %d of the other mode passed over, %d bad lines skipped%s",
             config.file, report.sent, sink.target, report.other_mode, report.bad_lines,
             " (stopped early)" if report.stopped else "")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tradestream-replay`."""
    config, log_level = parse_config(argv)
    configure_logging("replay", log_level)
    if not security.start(config.bus_keys, connects=(config.ingress if config.raw else config.orders,)):
        return 1
    stop = threading.Event()
    stop_on_signals(stop.set)
    try:
        stream = config.file.open(encoding="utf-8", newline="")
    except OSError as exc:
        log.error("cannot read %s: %s", config.file, exc.strerror)
        return 1
    with stream:
        return run(config, stream, stop)


if __name__ == "__main__":
    raise SystemExit(main())
