"""Errors of the bus package.

    BusError
     ├── DecodeError          a frame or payload that is not a tradestream message
     │    ├── InvalidEvent    well-formed msgpack, but a field has the wrong type or range
     │    └── PayloadTooLarge a payload over the broker's --max-payload
     ├── BusUnavailable       a send could not complete in time (peer down, queue full)
     └── JournalError         the broker's journal cannot be opened, read or written
"""


class BusError(Exception):
    """Base of every error raised by the bus package."""


class DecodeError(BusError):
    """A frame, header or payload could not be decoded."""


class InvalidEvent(DecodeError, ValueError):
    """A message decoded fine but breaks the schema of its kind."""


class PayloadTooLarge(DecodeError):
    """A payload larger than the broker accepts (--max-payload); refused before it is decoded."""


class BusUnavailable(BusError):
    """A message could not be handed to the bus within the send timeout."""


class JournalError(BusError):
    """The broker's journal is unreadable, corrupt, in use or cannot be written."""
