"""The broker's own protocol, in one place (CONTRACT section 2); topics live in topics.py.

    egress   [topic, header, payload]   header = [epoch, seq, published_ns, sequenced_ns]
    markers  payload kind `_head` (answers a subscription, head in seq), `_heartbeat` (control topic)
    ROUTER   [replay, topic, [epoch, after_seq]] -> [ok, [epoch, head], *(header, payload)] | [gone, [epoch, head]]
             [stats] -> [stats, {counters}]          anything else -> [error, text]

Kinds starting with `_` belong to this protocol and consume no seq; a
subscriber ignores those it does not know.
"""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple

import msgspec

from bus import codec

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
