"""The broker's own protocol, in one place (CONTRACT section 2); topics live in topics.py.

    egress   [topic, header, payload]   header = [epoch, seq, published_ns, sequenced_ns]
    markers  payload kind `_head` (answers a subscription, head in seq), `_heartbeat` (control topic)
    ROUTER   [replay, topic, [epoch, after_seq]] -> [ok, [epoch, head], *(header, payload)] | [gone, [epoch, head]]
             [stats] -> [stats, {counters}]          anything else -> [error, text]
    acknowledged ingress (ROUTER --ack-ingress, CONTRACT section 2)
             [pub, [stream, event_id, prev_id], topic, payload]
             -> [ack, [stream, last]] | [resend, [stream, last]] | [reject, [stream, event_id], reason]

Kinds starting with `_` belong to this protocol and consume no seq; a
subscriber ignores those it does not know.
"""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple

import msgspec

from bus import codec
from bus.errors import DecodeError
from bus.topics import MAX_ID

REPLAY = b"replay"
STATS = b"stats"
OK = b"ok"
GONE = b"gone"
ERROR = b"error"
HEAD_ONLY = -1  # the `after_seq` that asks for the head and no events

HEAD = "_head"
HEARTBEAT = "_heartbeat"
PRIVATE_PREFIX = "_"
HEAD_PAYLOAD = codec.pack({"kind": HEAD})
HEARTBEAT_PAYLOAD = codec.pack({"kind": HEARTBEAT})

_Unsigned = Annotated[int, msgspec.Meta(ge=0)]


class Header(NamedTuple):
    """The broker's header frame: `[epoch, seq, published_ns, sequenced_ns]`."""

    epoch: _Unsigned
    seq: _Unsigned
    published_ns: _Unsigned
    sequenced_ns: _Unsigned


_HEADER = codec.Schema[Header](Header, shape="header [epoch, seq, published_ns, sequenced_ns] of non-negative integers")
_INT_PAIR = codec.Schema[tuple[int, int]](tuple[int, int], shape="[int, int]")


def is_private(kind: Any) -> bool:
    """Whether a payload's kind is this protocol's (or not a kind at all): not an event."""
    return not isinstance(kind, str) or kind.startswith(PRIVATE_PREFIX)


def pack_header(epoch: int, seq: int, published_ns: int, sequenced_ns: int) -> bytes:
    """Encode the broker's header frame."""
    return codec.pack((epoch, seq, published_ns, sequenced_ns))


def unpack_header(data: bytes) -> Header:
    """Decode a header frame, checking it is four non-negative integers."""
    return _HEADER.decode(data)


def pack_int_pair(first: int, second: int) -> bytes:
    """Encode `[epoch, after_seq]` of a replay request or `[epoch, head]` of its answer."""
    return codec.pack((first, second))


def unpack_int_pair(data: bytes) -> tuple[int, int]:
    """Decode `[a, b]` of two integers, as used by replay requests and replies."""
    return _INT_PAIR.decode(data)


def replay_request(topic: bytes, epoch: int, after_seq: int) -> list[bytes]:
    """The frames asking for a key's events after `after_seq` of `epoch`."""
    return [REPLAY, topic, pack_int_pair(epoch, after_seq)]


# -- the acknowledged ingress -------------------------------------------------------

PUB = b"pub"
ACK = b"ack"
RESEND = b"resend"
REJECT = b"reject"
UNKNOWN = b"unknown"
HELLO = b"hello"
MAX_STREAM_NAME = 64
MAX_REASON = 200  # characters of a reject's reason

StreamName = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_STREAM_NAME)]
_EventId = Annotated[int, msgspec.Meta(gt=0, le=MAX_ID)]
_PrevId = Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)]


class Envelope(NamedTuple):
    """What a relay says about one outbox row: its stream, its id, and the id it sent before it."""

    stream: StreamName
    event_id: _EventId
    prev_id: _PrevId


class Answer(NamedTuple):
    """The broker's answer to a relay: `ack`/`resend` carry `last`, `reject` an event id and a reason, `unknown` an event id."""

    verb: bytes
    stream: str
    number: int
    reason: str = ""


_ENVELOPE = codec.Schema[Envelope](Envelope, shape="envelope [stream (1-64 characters), event_id > 0, prev_id >= 0]")
_STREAM_NUMBER = codec.Schema[tuple[StreamName, _EventId]](tuple[StreamName, _EventId], shape="[stream, id > 0]")
_STREAM_ACKED = codec.Schema[tuple[StreamName, _PrevId]](tuple[StreamName, _PrevId], shape="[stream, acked >= 0]")


def pub_message(stream: str, event_id: int, prev_id: int, topic: bytes, payload: bytes) -> list[bytes]:
    """The frames a relay sends for one outbox row (its DEALER adds nothing)."""
    return [PUB, codec.pack((stream, event_id, prev_id)), topic, payload]


def unpack_envelope(data: bytes) -> Envelope:
    """Decode a `pub` message's envelope; DecodeError unless 0 <= prev_id < event_id."""
    envelope = _ENVELOPE.decode(data)
    if envelope.prev_id >= envelope.event_id:
        raise DecodeError(f"prev_id {envelope.prev_id} is not below event_id {envelope.event_id}")
    return envelope


def ack_message(identity: bytes, stream: str, last: int) -> list[bytes]:
    """Every event of `stream` up to `last` is sequenced (or rejected): to the relay at `identity`."""
    return [identity, ACK, codec.pack((stream, last))]


def resend_message(identity: bytes, stream: str, last: int) -> list[bytes]:
    """An event came after a loss: resend everything of `stream` after `last`."""
    return [identity, RESEND, codec.pack((stream, last))]


def unknown_message(identity: bytes, stream: str, event_id: int) -> list[bytes]:
    """The broker does not know `stream` (restarted without a journal, or forgot it): nothing was taken.

    The relay answers `hello` with the last id it has confirmed, then sends again from there.
    """
    return [identity, UNKNOWN, codec.pack((stream, event_id))]


def hello_message(stream: str, acked: int) -> list[bytes]:
    """A relay's answer to `unknown`: every event of `stream` up to `acked` was confirmed to it."""
    return [HELLO, codec.pack((stream, acked))]


def unpack_hello(data: bytes) -> tuple[str, int]:
    """Decode a `hello` message's body: DecodeError unless it is [stream, acked >= 0]."""
    return _STREAM_ACKED.decode(data)


def reject_message(identity: bytes, stream: str, event_id: int, reason: str) -> list[bytes]:
    """This event breaks the schema and will never be sequenced; it counts as handled."""
    return [identity, REJECT, codec.pack((stream, event_id)), reason[:MAX_REASON].encode()]


def parse_answer(frames: list[bytes]) -> Answer:
    """A relay's view of one answer; DecodeError for anything else."""
    if len(frames) == 2 and frames[0] in (ACK, RESEND):  # `last` may be 0: a hello's `ack` of a new stream
        stream, number = _STREAM_ACKED.decode(frames[1])
        return Answer(frames[0], stream, number)
    if len(frames) == 2 and frames[0] == UNKNOWN:
        stream, number = _STREAM_NUMBER.decode(frames[1])
        return Answer(UNKNOWN, stream, number)
    if len(frames) == 3 and frames[0] == REJECT:
        stream, number = _STREAM_NUMBER.decode(frames[1])
        return Answer(REJECT, stream, number, frames[2].decode(errors="replace"))
    raise DecodeError(f"not an answer of the acknowledged ingress: {frames[:1]!r:.40}")
