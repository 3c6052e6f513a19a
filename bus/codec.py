"""msgpack encoding of payloads and headers; the only module that imports msgpack.

Options are fixed here once: binary and text kept apart, string map keys only,
and unpacker limits so that a hostile frame cannot make us allocate more than
the frame itself is worth.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgpack

from bus.errors import DecodeError

# One event is ~300 bytes; a 500-order batch summary is far below this.
MAX_FRAME_BYTES = 1 << 20
MAX_STR_LEN = 64 * 1024
MAX_ARRAY_LEN = 4096
MAX_MAP_LEN = 256


class Header(NamedTuple):
    """The broker's header frame: `[epoch, seq, published_ns, sequenced_ns]`."""

    epoch: int
    seq: int
    published_ns: int
    sequenced_ns: int


def pack(obj: Any) -> bytes:
    """Encode a value made of maps, lists, strings, numbers, bools and None."""
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes) -> Any:
    """Decode one msgpack value; every failure becomes DecodeError."""
    if len(data) > MAX_FRAME_BYTES:
        raise DecodeError(f"frame of {len(data)} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        # Literal keywords: expanding a dict of limits here would cost a dict per call (~2 µs).
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_str_len=MAX_STR_LEN,
            max_bin_len=MAX_FRAME_BYTES,
            max_array_len=MAX_ARRAY_LEN,
            max_map_len=MAX_MAP_LEN,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise DecodeError(f"bad msgpack: {exc}") from None


def unpack_map(data: bytes) -> dict[str, Any]:
    """Decode a payload, which must be a map."""
    value = unpack(data)
    if not isinstance(value, dict):
        raise DecodeError(f"payload is a {type(value).__name__}, not a map")
    return value


def pack_header(epoch: int, seq: int, published_ns: int, sequenced_ns: int) -> bytes:
    """Encode the broker's header frame."""
    return msgpack.packb((epoch, seq, published_ns, sequenced_ns))  # type: ignore[no-any-return]


def unpack_header(data: bytes) -> Header:
    """Decode a header frame, checking it is four non-negative integers."""
    value = unpack(data)
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(type(v) is int and v >= 0 for v in value)
    ):
        raise DecodeError("header is not [epoch, seq, published_ns, sequenced_ns]")
    return Header(*value)


def unpack_int_pair(data: bytes) -> tuple[int, int]:
    """Decode `[a, b]` of two integers, as used by replay requests and replies."""
    value = unpack(data)
    if not isinstance(value, list) or len(value) != 2 or not all(type(v) is int for v in value):
        raise DecodeError("expected [int, int]")
    return value[0], value[1]
