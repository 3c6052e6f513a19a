"""tradestream-replay FILE: feeds a trade log (tradelog.py, docs/trade-log.md) into the stack.

    signals, ticks ─PUSH --orders─▶ tradestream-orders          (default: the whole pipeline)
    logged events  ─PUSH --ingress─▶ tradestream-broker          (--raw: straight to the bus)

Records are sent at `--speed` times the pace recorded in their `ts` (0: as fast
as possible). A bad line is reported with its number and either stops the
replay (exit 1, `--on-error stop`, the default) or is skipped (`skip`). Lines
of the other mode (events without --raw, signals and ticks with it) are
counted and passed over. Signals are not checked against a token: whoever can
reach the order handler's socket is trusted, as the webhook is. A progress bar
is drawn only when stderr is a terminal. On exit the queued commands get
LINGER_MS to reach their peer.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from bus import endpoints, kinds
from bus.errors import BusUnavailable
from bus.events import WireMessage
from bus.process import SettingsParser, configure_logging, setting, stop_on_signals
from bus.publisher import Publisher
from producers.commands import SignalCommand, TickCommand, topic_of
from producers.errors import TradeLogError
from producers.tradelog import LogRecord, read_csv, read_jsonl

log = logging.getLogger(__name__)

SEND_TIMEOUT_MS = 5000
LINGER_MS = 3000


@dataclass(frozen=True, slots=True)
class ReplayConfig:
    """Settings of one replay run."""

    file: Path  # the positional argument, not a setting
    speed: float = setting(1.0, kind=kinds.non_negative_float, help="times the recorded pace; 0 = at once")
    raw: bool = setting(False, help="publish the log's event lines straight to the broker")
    orders: str = setting(endpoints.ORDERS, kind=kinds.zmq_endpoint, help="order handler endpoint for signals and ticks")
    ingress: str = setting(endpoints.INGRESS, kind=kinds.zmq_endpoint, help="broker endpoint for events (--raw)")
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
    send: Callable[[LogRecord], bool],
    pacer: Pacer,
    *,
    skip_bad_lines: bool,
) -> ReplayReport:
    """Send every record in order; `send` returns False for a record of the other mode."""
    report = ReplayReport()
    for record in records:
        if isinstance(record, TradeLogError):
            report.bad_lines += 1
            if not skip_bad_lines:
                raise record
            log.warning("line %d skipped: %s", record.line, record.message)
            continue
        if not pacer.wait(record.ts):
            report.stopped = True
            break
        if send(record):
            report.sent += 1
        else:
            report.other_mode += 1
    return report


def make_sender(publisher: Publisher, raw: bool) -> Callable[[LogRecord], bool]:
    """Sends pipeline commands, or with `raw` bus events; False for the other kind."""

    def send(record: LogRecord) -> bool:
        item = record.item
        if isinstance(item, WireMessage) and raw:
            publisher.publish(item)
            return True
        if isinstance(item, (SignalCommand, TickCommand)) and not raw:
            publisher.send_map(topic_of(item), item.to_wire())
            return True
        return False

    return send


def read_records(config: ReplayConfig, lines: Iterable[str]) -> Iterator[LogRecord | TradeLogError]:
    """The records of the log, in the format its flag or its file name says."""
    is_csv = config.format == "csv" or (config.format == "auto" and config.file.suffix.lower() == ".csv")
    return read_csv(lines) if is_csv else read_jsonl(lines)


def parse_config(argv: list[str] | None) -> tuple[ReplayConfig, str]:
    """Read flags and TRADESTREAM_* variables."""
    parser = SettingsParser(
        ReplayConfig,
        prog="tradestream-replay",
        description="Replays a trade log (JSONL or CSV; see docs/trade-log.md) into the order handler, "
        "or with --raw its events straight into the broker.",
    )
    parser.add_argument("file", type=Path, help="the trade log (.jsonl or .csv)")
    args = parser.parse_args(argv)
    return ReplayConfig(args.file, **parser.values(args)), parser.log_level(args)


def _count_lines(path: Path) -> int:
    with path.open("rb") as stream:
        return sum(1 for _ in stream)


def run(config: ReplayConfig, stream: TextIO, stop: threading.Event) -> int:
    """Replay an open log; the exit status."""
    endpoint = config.ingress if config.raw else config.orders
    publisher = Publisher(endpoint, send_timeout_ms=SEND_TIMEOUT_MS, linger_ms=LINGER_MS)
    bar = tqdm(stream, total=_count_lines(config.file), unit="line", disable=not sys.stderr.isatty())
    records, send = read_records(config, bar), make_sender(publisher, config.raw)
    try:
        report = replay(records, send, Pacer(config.speed, stop), skip_bad_lines=config.on_error == "skip")
    except TradeLogError as exc:
        log.error("%s:%d: %s", config.file, exc.line, exc.message)
        return 1
    except BusUnavailable as exc:
        log.error("cannot send: %s", exc)
        return 1
    except UnicodeDecodeError as exc:
        log.error("%s: not UTF-8 text (%s)", config.file, exc.reason)
        return 1
    finally:
        bar.close()
        publisher.close()
    log.info("%s: %d records sent to %s, %d of the other mode passed over, %d bad lines skipped%s",
             config.file, report.sent, publisher.endpoint, report.other_mode, report.bad_lines,
             " (stopped early)" if report.stopped else "")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tradestream-replay`."""
    config, log_level = parse_config(argv)
    configure_logging("replay", log_level)
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
