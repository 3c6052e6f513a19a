"""Errors of the producers package.

    ProducerError
     ├── NotJSON             a webhook body not declared as JSON
     ├── InvalidJSON         a webhook body that is not valid JSON (field "body")
     ├── InvalidSignal       a webhook or logged signal breaks CONTRACT §5 (names the field)
     ├── RateLimited         too many webhooks with one token
     │    └── TooManyFailures    too many failed authentications from one address (producers/failed_auth.py)
     ├── SignalRefused       a well-formed webhook the strategy refuses
     │    ├── UnknownGroup       no strategy has that group_name
     │    ├── WrongToken         the token is not the group's
     │    └── StrategyInactive   the strategy is deactivated
     ├── StoreUnavailable    the database could not store the signal: it was not taken
     ├── InvalidCommand      an inbox row or a wake-up between producers is not one we know
     ├── NotRestored         a handler's state in memory cannot be rebuilt from the database: rows wait
     ├── AnotherWriter       a second order or position handler on the same database: it does not start
 ├── TradeLogError       a trade-log line cannot be replayed (carries its line number)
     └── ReplayConflict      another replay of the same log stored lines meanwhile: this one stops

None of them knows HTTP: the webhook maps them to statuses in one table (producers/webhook.py).
TRANSIENT names the database's own failures (not ours): the work is retried, never recorded as failed;
RETRIED adds NotRestored, the other failure that is not the row's.
"""

from __future__ import annotations

from sqlalchemy.exc import InterfaceError, OperationalError

# The database down, unreachable or locked past its busy timeout: the row is fine, try it again later.
TRANSIENT = (OperationalError, InterfaceError)


class ProducerError(Exception):
    """Base of every error raised by the producers package."""


class InvalidSignal(ProducerError, ValueError):
    """A signal field is missing, of the wrong type or out of range; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotJSON(ProducerError):
    """The request's Content-Type is not JSON."""


class InvalidJSON(ProducerError, ValueError):
    """The body does not decode as JSON; `field` is "body"."""

    field = "body"


class RateLimited(ProducerError):
    """The token sent more webhooks than its rate allows; `retry_after` whole seconds until it may again."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyFailures(RateLimited):
    """The client's address failed authentication too often in its window: refused before any check."""


class SignalRefused(ProducerError):
    """The webhook names an unknown group, a wrong token or an inactive strategy."""


class UnknownGroup(SignalRefused):
    """No strategy has the webhook's group_name."""


class WrongToken(SignalRefused):
    """The webhook's token is not its group's."""


class StrategyInactive(SignalRefused):
    """The webhook's strategy is deactivated."""


class StoreUnavailable(ProducerError):
    """The database failed while storing the signal (TRANSIENT): nothing was committed, the sender may retry."""


class InvalidCommand(ProducerError, ValueError):
    """An inbox row (signal or tick) or a fill wake-up that cannot be decoded."""


class TradeLogError(ProducerError, ValueError):
    """A bad trade-log line; `line` is its 1-based number."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


class ReplayConflict(ProducerError):
    """A replay's batch found the log's progress moved by another replay of it: nothing of the batch is stored."""


class AnotherWriter(ProducerError):
    """Another process is the order or position handler of this database (writer_lock.py): this one does not run."""


class NotRestored(ProducerError):
    """A handler's state in memory may not match the database and rebuilding it failed: no row is handled on it."""


# What drain_rows (pull_loop.py) lets through to the next sweep, the row left pending.
RETRIED = (*TRANSIENT, NotRestored)
