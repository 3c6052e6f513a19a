"""Server-Sent Events framing: pure functions from events to the exact bytes on the wire.

A frame is `id:`/`event:` lines, one `data:` line per line of the data, and a
blank line. Line breaks (CRLF, CR or LF) inside `data` become separate `data:`
lines; CR and LF are stripped from `id` and `event`, so no value can end a
frame early or forge a field. No Tornado here: the hub calls these once per
event and writes the same bytes to every client of the key.

The system events of a stream (CONTRACT §3, no `id:` line) are built here too:
`connection` first, `heartbeat`, `resync`, `force_disconnect` and `bus_status`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from bus import decimals
from bus.events import DECIMAL_FIELDS

RETRY_MS = 3000
RETRY_FRAME = b"retry: %d\n\n" % RETRY_MS
CONNECTION, HEARTBEAT, RESYNC, FORCE_DISCONNECT = "connection", "heartbeat", "resync", "force_disconnect"
BUS_STATUS = "bus_status"
BUS_UP, BUS_DOWN = "up", "down"  # also /healthz's and the stats' "broker" field
# Fields the bus adds for its own use; the browser never sees them.
INTERNAL_FIELDS = frozenset({"kind", "published_ns"})
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FIELD_BREAK = re.compile(r"[\r\n]")
_event_lines: dict[str, bytes] = {}


def clean_field(value: str) -> str:
    """An `id` or `event` value with CR and LF removed."""
    return _FIELD_BREAK.sub("", value)


def encode_frame(event: str | None, data: str, event_id: str | None = None) -> bytes:
    """One frame: optional `id:` and `event:` lines, then `data` split into `data:` lines."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {clean_field(event_id)}\n")
    if event is not None:
        lines.append(f"event: {clean_field(event)}\n")
    lines.extend(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    lines.append("\n")
    return "".join(lines).encode("utf-8")


def json_frame(event: str, value: Mapping[str, Any]) -> bytes:
    """A system event (no id) whose data is `value` as one line of JSON.

    orjson writes one line (as in `bus_event_frame`), so `encode_frame`'s split is not needed:
    the same bytes, without a decode, a regex split and an encode per heartbeat.
    """
    return b"%sdata: %s\n\n" % (_event_line(event), orjson.dumps(value))


def bus_word(up: bool) -> str:
    """"up" or "down": whether the streamer hears the broker."""
    return BUS_UP if up else BUS_DOWN


def connection_frame(user_id: int, strategy_id: int, last_event_id: str, bus_up: bool) -> bytes:
    """The `connection` event that starts a stream at `last_event_id`, with the bus's status."""
    data = {
        "status": "connected", "user_id": user_id, "strategy_id": strategy_id,
        "last_event_id": last_event_id, "bus": bus_word(bus_up),
    }
    return json_frame(CONNECTION, data)


def bus_status_frame(up: bool) -> bytes:
    """A `bus_status`: the streamer lost (or found again) the broker; live events pause (or go on)."""
    return json_frame(BUS_STATUS, {"status": bus_word(up)})


def heartbeat_frame(timestamp: str, last_event_id: str) -> bytes:
    """A `heartbeat`: the time, and the id of the key's head."""
    return json_frame(HEARTBEAT, {"timestamp": timestamp, "last_event_id": last_event_id})


def resync_frame(reason: str) -> bytes:
    """A `resync`: the client reloads its snapshot (the stream goes on)."""
    return json_frame(RESYNC, {"reason": reason})


def force_disconnect_frame(reason: str, message: str) -> bytes:
    """A `force_disconnect`, the last frame of a stream the server ends."""
    return json_frame(FORCE_DISCONNECT, {"reason": reason, "message": message})


def event_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """What a browser sees of a bus event: its payload without the bus's internal fields.

    Quantities, prices and money are decimal strings (CONTRACT §4); a plain publisher's msgpack
    number there is written as one (bus/decimals.py), so a browser never meets a float.
    A copy in C, then only the decimal fields it holds are looked at (not every field in
    Python): 2.94 → 1.46 µs for the bench's 19-field order (docs/benchmarks.md, third pass).
    """
    seen = dict(payload)
    for name in INTERNAL_FIELDS:
        seen.pop(name, None)
    for name in DECIMAL_FIELDS.intersection(seen):
        value = seen[name]
        if type(value) is int or type(value) is float:
            seen[name] = decimals.normalize(value)  # the key keeps its place
    account = seen.get("account")
    if type(account) is dict and type(account.get("equity")) in (int, float):
        seen["account"] = {**account, "equity": decimals.normalize(account["equity"])}
    return seen


def event_data(payload: Mapping[str, Any]) -> bytes:
    """The JSON data of a bus event (`event_payload`)."""
    return orjson.dumps(event_payload(payload))


def _event_line(kind: str) -> bytes:
    line = _event_lines.get(kind)
    if line is None:
        if len(_event_lines) > 64:  # kinds are a handful; never let odd ones pile up
            _event_lines.clear()
        line = _event_lines[kind] = f"event: {clean_field(kind)}\n".encode()
    return line


def bus_event_frame(epoch: int, seq: int, kind: str, payload: Mapping[str, Any]) -> bytes:
    """The frame of one sequenced bus event, `id: <epoch>-<seq>`.

    orjson writes one line (it escapes control characters inside strings and
    never indents), so the data needs no splitting: this is the hot path.
    """
    return b"id: %d-%d\n%sdata: %s\n\n" % (epoch, seq, _event_line(kind), event_data(payload))
