"""At most one log line per interval for something that repeats, with how many it stood for.

    QuietLog   called once per occurrence: the first is logged at once, then at most one per interval
    CountLog   called now and then with a running total: one line per interval when it grew

A database that is down fails every request and every sweep, and an outsider
decides how many malformed frames arrive; one line each would flood the log.
Both say how many occurrences a line stands for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class QuietLog:
    """Logs through `logger` at `level`, at most once per `interval_s`."""

    def __init__(
        self, logger: logging.Logger, level: int, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger, self._level, self._interval_s, self._clock = logger, level, interval_s, clock
        self._next = 0.0
        self.count = 0
        self.suppressed = 0

    def __call__(self, message: str, *args: object, exc_info: bool = False) -> None:
        """Count one occurrence; log it unless one was logged less than `interval_s` ago."""
        self.count += 1
        now = self._clock()
        if now < self._next:
            self.suppressed += 1
            return
        self._next = now + self._interval_s
        suffix = f" ({self.suppressed} more since the last report)" if self.suppressed else ""
        self.suppressed = 0
        self._logger.log(self._level, message + suffix, *args, exc_info=exc_info)


class CountLog:
    """One line per interval saying how many of something happened since the last one, never one per event."""

    def __init__(self, logger: logging.Logger, what: str, interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger, self.what, self._interval_s, self._clock = logger, what, interval_s, clock
        self._reported = 0
        self._next = 0.0

    def tick(self, total: int) -> None:
        """Called now and then with the running total; logs a warning when it grew and the interval is over."""
        now = self._clock()
        if total == self._reported or now < self._next:
            return
        self._logger.warning("%d %s (%d in all)", total - self._reported, self.what, total)
        self._reported = total
        self._next = now + self._interval_s
