"""The load-generator process: many SSE streams on raw sockets, one epoll loop, as little CPU per read as possible.

Every socket is non-blocking and registered (level-triggered) with one
`select.epoll`; each ready socket gets one `recvmsg_into` into a buffer shared by
every stream, with room for the kernel's receive timestamp (SO_TIMESTAMPNS,
bench/kerneltime.py), then its bytes go to the stream's parser (bench/ssestream.py).
A read thus brings two times: when the kernel had the bytes and when this loop got
to read them; the difference is the load generator's own scheduling, on a core it
shares with the broker and the publisher under `--pin`.

Why not asyncio: its transports read with `recv`/`recv_into` and cannot ask for
ancillary data, and each read goes through a Handle, the selector's key lookup and
the protocol's callbacks. Until issue 13's third pass this was a
`BufferedProtocol` (before that a plain `Protocol`, whose transport allocates 256
KiB per read: ~20 µs a read against ~3 µs); the figures of both are in
docs/benchmarks.md.
"""

from __future__ import annotations

import errno
import os
import resource
import select
import signal
import socket
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from bench import kerneltime
from bench.ssestream import SseStream, Tally

CONNECT_CONCURRENCY = 256
CONNECT_TIMEOUT_S = 30.0
READ_BUFFER = 64 * 1024
DRAIN_CHECK_S = 0.02  # how often the drain condition is evaluated (it walks every stream)
# One buffer for every stream: each read is copied out (bytes) before the next recvmsg_into.
_BUFFER = memoryview(bytearray(READ_BUFFER))
_IN, _OUT = select.EPOLLIN, select.EPOLLOUT


@dataclass(frozen=True)
class StreamSpec:
    """One stream to open: which strategy, with which token."""

    strategy_id: int
    token: str


class StreamSocket:
    """One stream's socket, its request still to write and its parser."""

    __slots__ = ("deadline", "parser", "pending", "recvmsg_into", "sock", "strategy_id")

    def __init__(self, sock: socket.socket, request: bytes, strategy_id: int, parser: SseStream) -> None:
        self.sock = sock
        self.recvmsg_into = sock.recvmsg_into
        self.pending = request  # bytes of the GET not yet written
        self.strategy_id = strategy_id
        self.parser = parser
        self.deadline = time.monotonic() + CONNECT_TIMEOUT_S


class ReadLoop:
    """The epoll loop over every stream's socket (and the harness's pipe)."""

    def __init__(self, tally: Tally, pipe: Connection | None = None) -> None:
        self.tally = tally
        self.epoll = select.epoll()
        self.streams: dict[int, StreamSocket] = {}
        self.pipe_fd = pipe.fileno() if pipe is not None else -1
        if pipe is not None:
            self.epoll.register(self.pipe_fd, _IN)
        self.reads = 0
        self.unstamped = 0  # reads the kernel gave no timestamp for (counted at their read time)

    def open(self, host: str, port: int, spec: StreamSpec) -> StreamSocket:
        """Start connecting one stream (non-blocking); its GET is written once the socket is writable."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        kerneltime.enable(sock)
        code = sock.connect_ex((host, port))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(code, os.strerror(code))
        stream = StreamSocket(sock, build_request(host, port, spec), spec.strategy_id, SseStream(self.tally))
        self.streams[sock.fileno()] = stream
        self.epoll.register(sock.fileno(), _OUT)
        return stream

    def close(self, stream: StreamSocket) -> None:
        """Close one stream (it counts as closed)."""
        stream.parser.closed = True
        fd = stream.sock.fileno()
        if fd >= 0 and self.streams.pop(fd, None) is not None:
            self.epoll.unregister(fd)
        stream.sock.close()

    def poll(self, timeout_s: float) -> bool:
        """Serve every ready socket once; whether the pipe has a message."""
        pipe_ready = False
        streams = self.streams
        buffers = [_BUFFER]
        clock, arrival_ns, ancillary_size = time.time_ns, kerneltime.arrival_ns, kerneltime.ANCILLARY_SIZE
        for fd, _events in self.epoll.poll(timeout_s):
            stream = streams.get(fd)
            if stream is None:
                pipe_ready = pipe_ready or fd == self.pipe_fd
                continue
            if stream.pending:
                self._write(stream)
                continue
            try:
                size, ancdata, _, _ = stream.recvmsg_into(buffers, ancillary_size)
            except BlockingIOError:
                continue
            except OSError:
                self.close(stream)
                continue
            read_ns = clock()
            if not size:
                self.close(stream)
                continue
            self.reads += 1
            arrived_ns = arrival_ns(ancdata)
            if arrived_ns is None:
                self.unstamped += 1
                arrived_ns = read_ns
            parser = stream.parser
            parser.feed(bytes(_BUFFER[:size]), arrived_ns, read_ns)
            if parser.refused:
                self.close(stream)
        return pipe_ready

    def _write(self, stream: StreamSocket) -> None:
        error = stream.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            self.close(stream)
            return
        try:
            sent = stream.sock.send(stream.pending)
        except BlockingIOError:
            return
        except OSError:
            self.close(stream)
            return
        stream.pending = stream.pending[sent:]
        if not stream.pending:
            self.epoll.modify(stream.sock.fileno(), _IN)

    def wait_for_message(self, pipe: Connection) -> Any:
        """Keep reading the streams until the harness sends something; that message."""
        while not self.poll(1.0):
            pass
        return pipe.recv()


def build_request(host: str, port: int, spec: StreamSpec) -> bytes:
    """The GET of one stream, written by hand."""
    return (
        f"GET /api/events/stream?strategy_id={spec.strategy_id} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {spec.token}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()


def open_streams(loop: ReadLoop, host: str, port: int, specs: list[StreamSpec]) -> tuple[list[StreamSocket], list[str]]:
    """Open every stream, at most CONNECT_CONCURRENCY at a time, until its connection event."""
    waiting = list(reversed(specs))
    connecting: list[StreamSocket] = []
    connected: list[StreamSocket] = []
    errors: list[str] = []
    while waiting or connecting:
        while waiting and len(connecting) < CONNECT_CONCURRENCY:
            spec = waiting.pop()
            try:
                connecting.append(loop.open(host, port, spec))
            except OSError as exc:
                errors.append(f"strategy {spec.strategy_id}: {exc!r}")
        loop.poll(0.05)
        now = time.monotonic()
        still: list[StreamSocket] = []
        for stream in connecting:
            parser = stream.parser
            if parser.tracker is not None:
                connected.append(stream)
            elif parser.closed:
                errors.append(f"strategy {stream.strategy_id}: closed before connected (HTTP {parser.status})")
            elif now > stream.deadline:
                errors.append(f"strategy {stream.strategy_id}: no connection event in {CONNECT_TIMEOUT_S:g} s")
                loop.close(stream)
            else:
                still.append(stream)
        connecting = still
    return connected, errors


def drain(loop: ReadLoop, streams: list[StreamSocket], targets: list[int], quiet_s: float, deadline_s: float) -> None:
    """Read until every stream has its target events, or nothing arrived for `quiet_s`, or the deadline."""
    deadline = time.monotonic() + deadline_s
    last_total, last_change = -1, time.monotonic()
    pairs = [(stream.parser, target) for stream, target in zip(streams, targets)]
    while (now := time.monotonic()) < deadline:
        total = sum(p.tracker.received if p.tracker else 0 for p, _ in pairs)
        if all(p.closed or (p.tracker and p.tracker.next_seq - 1 - p.tracker.after >= t) for p, t in pairs):
            return
        if total != last_total:
            last_total, last_change = total, now
        elif now - last_change > quiet_s:
            return
        check_at = now + DRAIN_CHECK_S
        while (left := check_at - time.monotonic()) > 0:
            loop.poll(left)


def session(conn: Connection, host: str, port: int, specs: list[StreamSpec]) -> None:
    """Connect, report, wait for the published counts, drain, report the accounting."""
    tally = Tally()
    loop = ReadLoop(tally, conn)
    start = time.monotonic()
    streams, errors = open_streams(loop, host, port, specs)
    conn.send({"connected": len(streams), "connect_s": time.monotonic() - start, "errors": errors[:5],
               "failed": len(errors)})
    cpu_start, wall_start, reads_start = time.process_time(), time.monotonic(), loop.reads
    message: dict[str, Any] = loop.wait_for_message(conn)
    published: dict[int, int] = message["published"]
    targets = [published.get(stream.strategy_id, 0) for stream in streams]
    drain(loop, streams, targets, message["quiet_s"], message["deadline_s"])
    cpu_s, wall_s = time.process_time() - cpu_start, time.monotonic() - wall_start
    trackers = [stream.parser.tracker for stream in streams]
    conn.send({
        "received": sum(t.received if t else 0 for t in trackers),
        "lost": sum(t.lost(n) if t else n for t, n in zip(trackers, targets)),
        "duplicated": sum(t.duplicated if t else 0 for t in trackers),
        "streams_closed": sum(1 for stream in streams if stream.parser.closed),
        "forced": [s.parser.forced for s in streams if s.parser.forced][:3],
        "latencies": tally.to_read.tobytes(), "arrivals": tally.to_arrival.tobytes(),
        "arrival_to_read": tally.arrival_to_read.tobytes(), "per_second": tally.per_second,
        "cpu_s": cpu_s, "wall_s": wall_s, "reads": loop.reads - reads_start, "unstamped_reads": loop.unstamped,
    })
    # Streams stay open (and read) until the harness has read the streamer's figures: 10,000 closes are not the run's.
    loop.wait_for_message(conn)
    for stream in streams:
        loop.close(stream)


def loadgen_process(conn: Connection, host: str, port: int, specs: list[StreamSpec], cores: set[int] | None) -> None:
    """Entry of a load-generator process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the harness tears us down
    if cores:
        os.sched_setaffinity(0, cores)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    session(conn, host, port, specs)
    conn.close()
