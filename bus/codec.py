"""msgpack encoding and decoding, in one place: every frame goes through here.

msgspec does it all (msgpack-python was dropped). Measured on one 356-byte order
event: decoding to a map 1.87 -> 0.75 us, encoding a map 1.25 -> 0.35 us, a header
0.55 -> 0.08 us, with byte-identical output. The options are fixed here once:
string keys at the top of a map, no extension types, frames of at most
MAX_FRAME_BYTES (msgspec never allocates ahead of the bytes it has read, so a frame
cannot claim more than it carries); every failure is one DecodeError, and a
schema violation an InvalidEvent. The schemas themselves are msgspec types declared
where they belong (bus/events.py, bus/protocol.py).
"""

from __future__ import annotations

from typing import Any, Generic, NoReturn, TypeVar

import msgspec

from bus.errors import DecodeError, InvalidEvent

# One event is ~300 bytes; a 500-order batch summary is far below this.
MAX_FRAME_BYTES = 1 << 20

T = TypeVar("T")


def _no_extensions(code: int, data: memoryview) -> NoReturn:
    raise ValueError(f"msgpack extension type {code} is not allowed")


def _fail(exc: Exception) -> NoReturn:
    if isinstance(exc, msgspec.ValidationError):
        raise InvalidEvent(str(exc)) from None
    raise DecodeError(f"bad msgpack: {exc}") from None


class Schema(Generic[T]):
    """Decodes payloads into `kind` (a msgspec type), checking types and bounds in the same C pass."""

    def __init__(self, kind: Any, *, shape: str | None = None) -> None:
        self._decoder = msgspec.msgpack.Decoder(kind, ext_hook=_no_extensions)
        self._kind = kind
        self._shape = shape  # when set, a schema violation reads "<shape>" instead of msgspec's message

    def decode(self, data: bytes) -> T:
        """The value of one frame; DecodeError when it is not msgpack, InvalidEvent when it breaks the schema."""
        if len(data) > MAX_FRAME_BYTES:
            raise DecodeError(f"frame of {len(data)} bytes exceeds {MAX_FRAME_BYTES}")
        try:
            return self._decoder.decode(data)  # type: ignore[no-any-return]  # typed by `kind`
        except msgspec.ValidationError as exc:
            if self._shape is not None:
                raise DecodeError(f"expected {self._shape}") from None
            _fail(exc)
        except (msgspec.DecodeError, ValueError, RecursionError) as exc:  # ValueError: from _no_extensions
            _fail(exc)

    @property
    def raw_decode(self) -> Any:
        """msgspec's own decode, for a hot path that bounds the frame's size and catches
        msgspec.DecodeError (ValidationError is one), ValueError and RecursionError itself."""
        return self._decoder.decode

    def convert(self, value: Any) -> T:
        """The value of `kind` built from already decoded builtins; InvalidEvent when they break the schema."""
        try:
            return msgspec.convert(value, self._kind)  # type: ignore[no-any-return]  # typed by `kind`
        except msgspec.ValidationError as exc:
            raise InvalidEvent(str(exc)) from None


_MAP = Schema[dict[str, Any]](dict[str, Any], shape="a map with string keys")
_encoder = msgspec.msgpack.Encoder()


# pack(obj): encode a value made of maps, lists, strings, numbers, bools, None, or msgspec structs.
# The encoder's own method, without a Python function around it: every header the broker makes goes through it.
pack = _encoder.encode


def unpack_map(data: bytes) -> dict[str, Any]:
    """Decode a payload, which must be a map with string keys, at every depth (JSON has no others)."""
    value = _MAP.decode(data)
    for inner in value.values():
        if type(inner) is dict or type(inner) is list:
            _check_nested(inner)
    return value


def _check_nested(value: dict[Any, Any] | list[Any]) -> None:
    stack = [value]
    while stack:
        current = stack.pop()
        items = current.values() if type(current) is dict else current
        if type(current) is dict and any(type(key) is not str for key in current):
            raise DecodeError("expected a map with string keys at every depth")
        stack.extend(item for item in items if type(item) is dict or type(item) is list)
