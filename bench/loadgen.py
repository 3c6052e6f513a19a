"""The load-generator process: many SSE streams on raw sockets, as little CPU per event as possible.

One asyncio Protocol per stream; the HTTP/1.1 request is written by hand, the
chunked body is decoded by slicing, and of every event only the `id:` seq and
the `bench-<ns>` publish time in the data line are read. The receive time is
taken once per socket read, not once per event.

Each read goes into one buffer shared by every stream (a BufferedProtocol:
`recv_into`), not a fresh bytes object: asyncio's plain Protocol allocates
256 KiB per read and shrinks it, ~20 µs a read against ~3 µs (measured alone,
a 400-byte send and its read), and at ~40,000 reads/s that was most of the core
the load generator shares with the broker and the publisher (docs/benchmarks.md,
issue 13). What is measured is the same: the receive time of each read.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import time
from array import array
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from bench.publish import ORDER_ID_PREFIX
from bench.report import SeqTracker

CONNECT_CONCURRENCY = 256
READ_BUFFER = 64 * 1024
# One buffer for every stream: each read is consumed (copied out) before the next recv_into.
_BUFFER = memoryview(bytearray(READ_BUFFER))


@dataclass(frozen=True)
class StreamSpec:
    """One stream to open: which strategy, with which token."""

    strategy_id: int
    token: str


class SseClient(asyncio.BufferedProtocol):
    """One SSE stream: header parsing, chunked decoding, seq and latency accounting."""

    def __init__(self, request: bytes, latencies: array[int], per_second: dict[int, int]) -> None:
        self.request = request
        self.latencies = latencies
        self.per_second = per_second
        self.transport: asyncio.Transport | None = None
        self.headers_done = False
        self.chunked = False
        self.raw = b""  # undecoded bytes (headers, or a partial chunk)
        self.chunk_left = 0  # body bytes left in the current chunk; -1: expecting the CRLF after a chunk
        self.body = b""  # decoded bytes not yet split into events
        self.tracker: SeqTracker | None = None
        self.status = 0
        self.connected = asyncio.get_running_loop().create_future()
        self.closed = False
        self.forced: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.connected.done():
            self.connected.set_exception(ConnectionError(f"closed before connected (HTTP {self.status})"))

    def get_buffer(self, sizehint: int) -> memoryview:
        return _BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_BUFFER[:nbytes]))

    def eof_received(self) -> bool | None:
        return None  # close the transport: the stream ended

    def data_received(self, data: bytes) -> None:
        if not self.headers_done:
            data = self._headers(self.raw + data)
            if not self.headers_done:
                return
        elif self.raw:
            data = self.raw + data
            self.raw = b""
        body = self._dechunk(data) if self.chunked else data
        self._events(self.body + body if self.body else body)

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
        if self.status != 200 and self.transport is not None:
            self.transport.close()
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

    def _events(self, body: bytes) -> None:
        frames = body.split(b"\n\n")
        self.body = frames.pop()
        now_ns = time.time_ns()
        tracker = self.tracker
        latencies = self.latencies
        for frame in frames:
            if frame[:4] == b"id: ":
                eol = frame.find(b"\n")
                seq = int(frame[frame.find(b"-", 4) + 1 : eol])
                if tracker is not None:
                    tracker.see(seq)
                mark = frame.find(ORDER_ID_PREFIX, eol)
                if mark > 0:
                    mark += 6
                    latencies.append((now_ns - int(frame[mark : frame.find(b'"', mark)])) // 1000)
            else:
                self._system(frame)
                tracker = self.tracker
        if frames:
            second = now_ns // 1_000_000_000
            self.per_second[second] = self.per_second.get(second, 0) + len(frames)

    def _system(self, frame: bytes) -> None:
        if b"event: connection" in frame:
            mark = frame.find(b'"last_event_id"')
            head = 0
            if mark >= 0:
                start = frame.find(b'"', mark + 15) + 1
                text = frame[start : frame.find(b'"', start)]
                head = int(text.rsplit(b"-", 1)[1]) if b"-" in text else 0
            self.tracker = SeqTracker(head)
            if not self.connected.done():
                self.connected.set_result(head)
        elif b"event: force_disconnect" in frame:
            self.forced = frame.decode(errors="replace")


def build_request(host: str, port: int, spec: StreamSpec) -> bytes:
    """The GET of one stream, written by hand."""
    return (
        f"GET /api/events/stream?strategy_id={spec.strategy_id} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {spec.token}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()


async def open_streams(host: str, port: int, specs: list[StreamSpec], latencies: array[int],
                       per_second: dict[int, int]) -> tuple[list[SseClient], list[str]]:
    """Open every stream, at most CONNECT_CONCURRENCY at a time, until its connection event."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    clients: list[SseClient] = []
    errors: list[str] = []

    async def one(spec: StreamSpec) -> None:
        async with gate:
            client = SseClient(build_request(host, port, spec), latencies, per_second)
            try:
                await loop.create_connection(lambda: client, host, port)
                await asyncio.wait_for(client.connected, 30)
                clients.append(client)
            except (TimeoutError, OSError) as exc:
                errors.append(f"strategy {spec.strategy_id}: {exc!r}")
                if client.transport is not None:
                    client.transport.close()

    await asyncio.gather(*(one(spec) for spec in specs))
    return clients, errors


async def drain(clients: list[SseClient], targets: list[int], quiet_s: float, deadline_s: float) -> None:
    """Wait until every stream has its target events, or nothing arrived for `quiet_s`, or the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    last_total, last_change = -1, loop.time()
    while loop.time() < deadline:
        total = sum(c.tracker.received if c.tracker else 0 for c in clients)
        if all(c.closed or (c.tracker and c.tracker.next_seq - 1 - c.tracker.after >= t) for c, t in zip(clients, targets)):
            return
        if total != last_total:
            last_total, last_change = total, loop.time()
        elif loop.time() - last_change > quiet_s:
            return
        await asyncio.sleep(0.02)  # polling pace of the drain condition above


async def session(conn: Connection, host: str, port: int, specs: list[StreamSpec]) -> None:
    """Connect, report, wait for the published counts, drain, report the accounting."""
    latencies: array[int] = array("q")
    per_second: dict[int, int] = {}
    start = time.monotonic()
    clients, errors = await open_streams(host, port, specs, latencies, per_second)
    conn.send({"connected": len(clients), "connect_s": time.monotonic() - start, "errors": errors[:5],
               "failed": len(errors)})
    cpu_start, wall_start = time.process_time(), time.monotonic()
    loop = asyncio.get_running_loop()
    message: dict[str, Any] = await loop.run_in_executor(None, conn.recv)
    published: dict[int, int] = message["published"]
    targets = [published.get(spec_of(c, specs), 0) for c in clients]
    await drain(clients, targets, message["quiet_s"], message["deadline_s"])
    cpu_s, wall_s = time.process_time() - cpu_start, time.monotonic() - wall_start
    lost = sum(c.tracker.lost(t) if c.tracker else t for c, t in zip(clients, targets))
    closed = sum(1 for c in clients if c.closed)
    conn.send({
        "received": sum(c.tracker.received if c.tracker else 0 for c in clients),
        "lost": lost, "duplicated": sum(c.tracker.duplicated if c.tracker else 0 for c in clients),
        "streams_closed": closed, "forced": [c.forced for c in clients if c.forced][:3],
        "latencies": latencies.tobytes(), "per_second": per_second, "cpu_s": cpu_s, "wall_s": wall_s,
    })
    # Streams stay open until the harness has read the streamer's figures: 10,000 closes are not the run's.
    await loop.run_in_executor(None, conn.recv)
    for client in clients:
        if client.transport is not None:
            client.transport.close()


def spec_of(client: SseClient, specs: list[StreamSpec]) -> int:
    """The strategy id a client streams (read back from its request line)."""
    line = client.request.split(b"\r\n", 1)[0]
    return int(line.split(b"strategy_id=", 1)[1].split(b" ", 1)[0])


def loadgen_process(conn: Connection, host: str, port: int, specs: list[StreamSpec], cores: set[int] | None) -> None:
    """Entry of a load-generator process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the harness tears us down
    if cores:
        os.sched_setaffinity(0, cores)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(session(conn, host, port, specs))
    conn.close()
