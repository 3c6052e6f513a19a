"""tradestream-replay FILE: feeds a trade log (tradelog.py, docs/trade-log.md) into the stack.

    signals, ticks ─▶ order inbox rows (--database-url) ─PUSH wake --orders─▶ tradestream-orders   (default)
    logged events  ─PUSH --ingress─▶ tradestream-broker                                          (--raw)

Records are sent at `--speed` times the pace recorded in their `ts` (0: as fast
as possible). By default they become rows of the order handler's inbox, the
same inbox as the webhook's signals, so signals and ticks keep one arrival order
and each is handled exactly once, whether or not the order handler is up: the
records due together are committed in one transaction (at most INBOX_BATCH, replay_sinks.py)
with the last line they reach (replay_runs.py), then the order handler is woken
(best effort). A run of the same log that did not finish (killed, stopped, a bad
line, the database or bus down) is resumed after that line, a finished one is
replayed anew, `--restart` starts over (replay_progress.py). With --raw the
logged events go straight to the broker's plain ingress (at most once, CONTRACT
§2; no progress is kept). A bad line is reported with its number and either
stops the replay (exit 1, `--on-error stop`, the default; the lines before it
are stored) or is skipped (`skip`).
Lines of the other mode (events without --raw, signals and ticks with it) are
counted and passed over. Signals are not checked against a token: whoever can
write the database is trusted, as the webhook is. A progress bar is drawn only
when stderr is a terminal. On exit queued messages get LINGER_MS to reach their peer.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm

from bus import endpoints, kinds, security
from bus.errors import BusUnavailable
from bus.process import SettingsParser, configure_logging, exit_on_stop_signals_while_starting, setting, stop_on_signals
from bus.publisher import Publisher
from bus.security import bus_keys_setting
from producers import replay_runs
from producers.errors import ReplayConflict, TradeLogError
from producers.replay_progress import stopped_note
from producers.replay_sinks import InboxSink, RawSink, Sink
from producers.tradelog import LogRecord, read_csv, read_jsonl
from store.db import DEFAULT_DATABASE_URL, make_session_factory, open_database, sqlalchemy_url
from store.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

SEND_TIMEOUT_MS = 5000
LINGER_MS = 3000


@dataclass(frozen=True, slots=True)
class ReplayConfig:
    """Settings of one replay run."""

    file: Path  # the positional argument, not a setting
    speed: float = setting(1.0, kind=kinds.non_negative_float, help="times the recorded pace; 0 = at once")
    raw: bool = setting(False, help="publish the log's event lines straight to the broker (at most once, never resumed)")
    database_url: str = setting(DEFAULT_DATABASE_URL, kind=sqlalchemy_url, help="SQLAlchemy database URL of the order inbox")
    orders: str = setting(endpoints.ORDERS, kind=kinds.zmq_endpoint, help="order handler endpoint woken for new inbox rows")
    ingress: str = setting(endpoints.INGRESS, kind=kinds.zmq_endpoint, help="broker endpoint for events (--raw)")
    bus_keys: str = bus_keys_setting()
    on_error: str = setting("stop", kind=kinds.one_of("stop", "skip"), help="what a bad line does")
    format: str = setting("auto", kind=kinds.one_of("auto", "jsonl", "csv"), help="auto: by file name")
    restart: bool = setting(False, help="replay from the first line even if a run of this log did not finish "
                            "(by default it resumes after the last line that run stored); not used by --raw")


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


def read_records(config: ReplayConfig, lines: Iterable[str], after: int) -> Iterator[LogRecord | TradeLogError]:
    """The records (and bad lines) after line `after`, in the format the log's flag or its file name says."""
    is_csv = config.format == "csv" or (config.format == "auto" and config.file.suffix.lower() == ".csv")
    return read_csv(lines, after) if is_csv else read_jsonl(lines, after)


def parse_config(argv: list[str] | None) -> tuple[ReplayConfig, str]:
    """Read flags and TRADESTREAM_* variables."""
    parser = SettingsParser(
        ReplayConfig,
        prog="tradestream-replay",
        description="Replays a trade log (JSONL or CSV; see docs/trade-log.md) into the order handler's inbox, "
        "each line once: run again after a run of the same log (same bytes) that did not finish, it resumes after "
        "the last line stored; after one that finished, it replays the log anew. With --raw its events go straight "
        "into the broker, at most once, and no progress is kept.",
    )
    parser.add_argument("file", type=Path, help="the trade log (.jsonl or .csv), a regular file: a pipe is refused (it is read twice)")
    args = parser.parse_args(argv)
    return ReplayConfig(args.file, **parser.values(args)), parser.log_level(args)


def make_sink(
    config: ReplayConfig, publisher: Publisher, log_id: replay_runs.LogIdentity, engine: Engine | None
) -> tuple[Sink, int]:
    """The inbox in `engine` (default) or the broker (--raw, no engine), and the line the run resumes after."""
    if engine is None:
        return RawSink(publisher), 0
    sessions = make_session_factory(engine)
    plan, run = replay_runs.begin(sessions, log_id, str(config.file.resolve()), restart=config.restart)
    if (warning := plan.warning(str(config.file))) is not None:
        log.warning("%s", warning)
    log.info("%s", plan.describe(str(config.file)))
    return InboxSink(sessions, publisher, run), plan.after_line


def run(config: ReplayConfig, stream: TextIO, stop: threading.Event) -> int:
    """Replay an open log; the exit status."""
    if config.raw:
        publisher = Publisher(config.ingress, send_timeout_ms=SEND_TIMEOUT_MS, linger_ms=LINGER_MS)
    else:
        publisher = Publisher(config.orders, send_timeout_ms=0, linger_ms=LINGER_MS)
    scanned = replay_runs.scan(config.file)
    bar = tqdm(stream, total=scanned.lines, unit="line", disable=not sys.stderr.isatty())
    engine: Engine | None = None
    try:
        # Disposed below: a main called in a test's process (tests/in_process.py) left its connections open.
        engine = None if config.raw else open_database(config.database_url)  # the schema brought to head
        sink, after_line = make_sink(config, publisher, scanned.identity, engine)
        finished = False
        try:  # a resumed run's pace starts at its first line sent: the Pacer never sees the lines passed over
            report = replay(read_records(config, bar, after_line), sink, Pacer(config.speed, stop),
                            skip_bad_lines=config.on_error == "skip")
            finished = not report.stopped
        finally:
            sink.flush(finished=finished)  # the lines before a bad one are kept, as they were sent
    except TradeLogError as exc:
        log.error("%s:%d: %s", config.file, exc.line, exc.message)
        return 1
    except (BusUnavailable, SQLAlchemyError, DatabaseUnavailable, ReplayConflict) as exc:
        log.error("cannot send: %s", str(exc).splitlines()[0])
        return 1
    except UnicodeDecodeError as exc:
        log.error("%s: not UTF-8 text (%s)", config.file, exc.reason)
        return 1
    finally:
        bar.close()
        publisher.close()
        if engine is not None:
            engine.dispose()
    log.info("%s: %d records sent to %s, %d of the other mode passed over, %d bad lines skipped%s",
             config.file, report.sent, sink.target, report.other_mode, report.bad_lines,
             f" ({stopped_note(sink.stored_through, restart=config.restart)})" if report.stopped else "")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tradestream-replay`."""
    config, log_level = parse_config(argv)
    configure_logging("replay", log_level)
    exit_on_stop_signals_while_starting()
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
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            # A pipe (`<(grep ...)`, `cat log | ... /dev/stdin`) can be read once: scan() would take every line
            # to know the log, and the replay would find none and exit 0 having sent nothing.
            log.error("cannot replay %s: not a regular file (a pipe?); the log is read twice, to know it and to"
                      " send it: save it to a file first", config.file)
            return 1
        return run(config, stream, stop)


if __name__ == "__main__":
    raise SystemExit(main())
