"""At most one log line per interval for a failure that repeats, with how many it stood for.

A database that is down fails every request and every sweep; one line per
failure would flood the log. The first one is logged at once, then at most one
per `interval_s`, each saying how many were not logged since.
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
