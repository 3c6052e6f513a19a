"""A raw-socket SSE client for tests: sends a GET, parses the response head and the frames.

Deliberately independent of the streamer's code (it parses what a browser
would), and of Tornado's client, so it can also stop reading on purpose.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

DEADLINE_S = 5.0


@dataclass
class Frame:
    """One dispatched SSE frame."""

    event: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class SseStream:
    """One open event stream over a plain TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.retry: int | None = None
        self.body = b""
        self.eof = False

    @classmethod
    async def open(cls, port: int, path: str, headers: dict[str, str] | None = None, version: str = "1.1") -> SseStream:
        """Connect to 127.0.0.1:port and read the response head (and the body if it is an error)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        stream = cls(reader, writer)
        lines = [f"GET {path} HTTP/{version}", f"Host: 127.0.0.1:{port}", "Accept: text/event-stream"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await stream._read_head()
        return stream

    async def _read_head(self) -> None:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), DEADLINE_S)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        for line in filter(None, header_lines):
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        if self.status != 200:
            length = int(self.headers.get("content-length", "0"))
            self.body = await asyncio.wait_for(self.reader.readexactly(length), DEADLINE_S)

    async def next_frame(self, timeout: float = DEADLINE_S) -> Frame | None:
        """The next frame; None at end of stream. Fails after `timeout` seconds."""
        event, event_id = "message", None
        data: list[str] = []
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), timeout)
            if not raw:
                self.eof = True
                return None
            line = raw.decode("utf-8").rstrip("\n")
            if line == "":
                if data:
                    return Frame(event, "\n".join(data), event_id)
                event, event_id = "message", None
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
            elif name == "id":
                event_id = value
            elif name == "retry":
                self.retry = int(value)

    async def next_event(self, timeout: float = DEADLINE_S, skip: tuple[str, ...] = ("heartbeat",)) -> Frame | None:
        """The next frame whose event is not in `skip`; None at end of stream."""
        while True:
            frame = await self.next_frame(timeout)
            if frame is None or frame.event not in skip:
                return frame

    async def events(self, count: int, timeout: float = DEADLINE_S) -> list[Frame]:
        """The next `count` non-heartbeat frames (fails if the stream ends first)."""
        frames: list[Frame] = []
        for _ in range(count):
            frame = await self.next_event(timeout)
            assert frame is not None, f"stream ended after {len(frames)} of {count} frames: {frames}"
            frames.append(frame)
        return frames

    async def rest(self, timeout: float = DEADLINE_S) -> list[Frame]:
        """Every frame until the server closes the stream."""
        frames = []
        while (frame := await self.next_frame(timeout)) is not None:
            frames.append(frame)
        return frames

    async def close(self) -> None:
        """Hang up."""
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass
