"""Errors of the producers package.

    ProducerError
     ├── InvalidSignal     a webhook or logged signal breaks CONTRACT §5 (names the field)
     ├── SignalRefused     a well-formed webhook the strategy refuses (404, 401, 409)
     ├── InvalidCommand    a frame between producers is not a command we know
     └── TradeLogError     a trade-log line cannot be replayed (carries its line number)
"""

from __future__ import annotations


class ProducerError(Exception):
    """Base of every error raised by the producers package."""


class InvalidSignal(ProducerError, ValueError):
    """A signal field is missing, of the wrong type or out of range; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class SignalRefused(ProducerError):
    """The webhook names an unknown group, a wrong token or an inactive strategy."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


class InvalidCommand(ProducerError, ValueError):
    """A command frame (signal, tick or fill) that cannot be decoded."""


class TradeLogError(ProducerError, ValueError):
    """A bad trade-log line; `line` is its 1-based number."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message
