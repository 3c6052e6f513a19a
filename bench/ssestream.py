"""One SSE stream's bytes into seq accounting and latencies: HTTP head, chunked decoding, events (no socket).

Of every event only the `id:` seq and the `bench-<ns>` publish time in the data
line are read. Each read brings two times, taken once per read, not per event:
when the kernel had its bytes (`arrived_ns`, bench/kerneltime.py) and when the
load generator got to read them (`read_ns`). An event's publish → read is what the
load generator saw; publish → arrived is the server's part (publisher, broker,
streamer, loopback), without the load generator's own scheduling.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from bench.publish import ORDER_ID_PREFIX
from bench.report import SeqTracker


@dataclass
class Tally:
    """What every stream of one load generator received, in µs per delivery (the three arrays in step)."""

    to_read: array[int] = field(default_factory=lambda: array("q"))  # publish → read
    to_arrival: array[int] = field(default_factory=lambda: array("q"))  # publish → arrived (kernel timestamp)
    arrival_to_read: array[int] = field(default_factory=lambda: array("q"))
    per_second: dict[int, int] = field(default_factory=dict)  # frames read per second (by read time)


class SseStream:
    """The parsing state of one stream: head, status, partial chunk, partial event, its SeqTracker."""

    __slots__ = ("body", "chunk_left", "chunked", "closed", "forced", "headers_done", "raw", "status", "tally",
                 "tracker")

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.headers_done = False
        self.chunked = False
        self.raw = b""  # undecoded bytes (headers, or a partial chunk)
        self.chunk_left = 0  # body bytes left in the current chunk; -1: expecting the CRLF after a chunk
        self.body = b""  # decoded bytes not yet split into events
        self.tracker: SeqTracker | None = None  # from the `connection` event on
        self.status = 0
        self.closed = False
        self.forced: str | None = None

    @property
    def refused(self) -> bool:
        """The response head came and it is not a 200: the stream will not start."""
        return self.headers_done and self.status != 200

    def feed(self, data: bytes, arrived_ns: int, read_ns: int) -> None:
        """Account for the bytes of one read."""
        if self.chunked and not self.chunk_left and not self.raw:
            # The usual read: exactly one whole chunk, nothing pending; sliced without _dechunk's loop.
            eol = data.find(b"\r\n")
            size = int(data[:eol], 16) if 0 < eol < 9 and data[:eol].isalnum() else 0
            if size and eol + size + 4 == len(data):
                chunk = data[eol + 2 : eol + 2 + size]
                self._events(self.body + chunk if self.body else chunk, arrived_ns, read_ns)
                return
        if not self.headers_done:
            data = self._headers(self.raw + data)
            if not self.headers_done or self.status != 200:
                return
        elif self.raw:
            data = self.raw + data
            self.raw = b""
        body = self._dechunk(data) if self.chunked else data
        self._events(self.body + body if self.body else body, arrived_ns, read_ns)

    def _headers(self, data: bytes) -> bytes:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            self.raw = data
            return b""
        head = data[:end].lower()
        self.status = int(head[9:12])
        self.raw = b""
        self.headers_done = True
        self.chunked = b"transfer-encoding: chunked" in head
        return data[end + 4 :]

    def _dechunk(self, data: bytes) -> bytes:
        out = []
        pos, size = 0, len(data)
        while pos < size:
            if self.chunk_left > 0:
                take = min(self.chunk_left, size - pos)
                out.append(data[pos : pos + take])
                pos += take
                self.chunk_left -= take
                if self.chunk_left == 0:
                    self.chunk_left = -1
            elif self.chunk_left < 0:
                if size - pos < 2:
                    break
                pos += 2
                self.chunk_left = 0
            else:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    break
                self.chunk_left = int(data[pos:eol].split(b";", 1)[0], 16) or -2
                pos = eol + 2
                if self.chunk_left == -2:  # the last chunk: the stream ended
                    self.chunk_left = 0
                    break
        self.raw = data[pos:] if pos < size else b""
        return b"".join(out)

    def _events(self, body: bytes, arrived_ns: int, read_ns: int) -> None:
        frames = body.split(b"\n\n")
        self.body = frames.pop()
        if not frames:
            return
        tracker = self.tracker
        tally = self.tally
        waited = (read_ns - arrived_ns) // 1000
        for frame in frames:
            if frame.startswith(b"id: "):
                eol = frame.find(b"\n")
                seq = int(frame[frame.find(b"-", 4) + 1 : eol])
                if tracker is not None:
                    tracker.see(seq)
                mark = frame.find(ORDER_ID_PREFIX, eol)
                if mark > 0:
                    mark += 6
                    published_ns = int(frame[mark : frame.find(b'"', mark)])
                    tally.to_read.append((read_ns - published_ns) // 1000)
                    tally.to_arrival.append((arrived_ns - published_ns) // 1000)
                    tally.arrival_to_read.append(waited)
            else:
                self._system(frame)
                tracker = self.tracker
        second = read_ns // 1_000_000_000
        tally.per_second[second] = tally.per_second.get(second, 0) + len(frames)

    def _system(self, frame: bytes) -> None:
        if b"event: connection" in frame:
            mark = frame.find(b'"last_event_id"')
            head = 0
            if mark >= 0:
                start = frame.find(b'"', mark + 15) + 1
                text = frame[start : frame.find(b'"', start)]
                head = int(text.rsplit(b"-", 1)[1]) if b"-" in text else 0
            self.tracker = SeqTracker(head)
        elif b"event: force_disconnect" in frame:
            self.forced = frame.decode(errors="replace")
