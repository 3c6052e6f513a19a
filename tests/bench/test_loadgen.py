"""The load generator's read loop on real sockets: kernel arrival times, and the seq accounting through it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing import Pipe
from typing import Any

from bench import kerneltime
from bench.loadgen import ReadLoop, StreamSpec, open_streams, session
from bench.ssestream import Tally
from tests.waiting import wait_until


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """A connected loopback TCP pair (sender, receiver)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        receiver = socket.create_connection(server.getsockname())
        sender, _ = server.accept()
    return sender, receiver


def recv_stamped(sock: socket.socket, size: int) -> tuple[bytes, int | None, int]:
    """One recvmsg of up to `size` bytes: the bytes, the kernel's arrival time and the time after the read."""
    data, ancdata, _, _ = sock.recvmsg(size, kerneltime.ANCILLARY_SIZE)
    return data, kerneltime.arrival_ns(ancdata), time.time_ns()


@contextmanager
def stamped_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A loopback TCP pair whose receiver gets timestamps, once they come (Linux turns stamping on lazily, host-wide)."""
    sender, receiver = tcp_pair()
    with sender, receiver:
        kerneltime.enable(receiver)

        def stamped() -> bool:
            sender.sendall(b"x")
            return recv_stamped(receiver, 64)[1] is not None

        wait_until(stamped, what="a read carries a receive timestamp")
        yield sender, receiver


@contextmanager
def stamping_on() -> Iterator[None]:
    """Hold the host's receive stamping on with a stamped socket of our own (the session's sockets then get it at once)."""
    with stamped_pair():
        yield


def test_a_tcp_read_carries_the_realtime_the_kernel_received_it() -> None:
    with stamped_pair() as (sender, receiver):
        before = time.time_ns()
        sender.sendall(b"x" * 400)
        data, arrived, after = recv_stamped(receiver, 4096)
    assert data == b"x" * 400
    assert arrived is not None
    assert before <= arrived <= after  # CLOCK_REALTIME, the clock of time.time_ns()


def test_one_read_of_two_segments_carries_the_later_ones_time() -> None:
    with stamped_pair() as (sender, receiver):
        sender.sendall(b"a" * 100)
        wait_until(lambda: len(receiver.recv(4096, socket.MSG_PEEK)) == 100, what="the first segment is queued")
        between = time.time_ns()
        sender.sendall(b"b" * 100)
        wait_until(lambda: len(receiver.recv(4096, socket.MSG_PEEK)) == 200, what="both segments are queued")
        data, arrived, _ = recv_stamped(receiver, 4096)
    assert data == b"a" * 100 + b"b" * 100
    assert arrived is not None
    assert arrived >= between  # conservative for the earlier event of a read: never before it arrived


def test_no_timestamp_without_the_option() -> None:
    sender, receiver = tcp_pair()
    with sender, receiver:
        sender.sendall(b"x")
        assert recv_stamped(receiver, 64)[1] is None


def chunk(frame: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(frame), frame)


def event(epoch: int, seq: int) -> bytes:
    return b'id: %d-%d\nevent: order_update\ndata: {"order_id":"bench-%d"}\n\n' % (epoch, seq, time.time_ns())


class ScriptedStreamer:
    """A real TCP server answering each stream's GET with a chunked SSE body: a connection event, then its seqs."""

    def __init__(self, scripts: dict[int, tuple[int, list[int]]], refuse: frozenset[int] = frozenset()) -> None:
        self.scripts = scripts  # strategy id -> (head seq, seqs sent once `go` is set)
        self.refuse = refuse
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.streams: dict[int, socket.socket] = {}
        self.go = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self) -> None:
        for _ in range(len(self.scripts) + len(self.refuse)):
            conn, _ = self.server.accept()
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            strategy = int(request.split(b"strategy_id=", 1)[1].split(b" ", 1)[0])
            self.streams[strategy] = conn
            if strategy in self.refuse:
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                continue
            head = self.scripts[strategy][0]
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(b"retry: 3000\n\n")
                         + chunk(b'event: connection\ndata: {"last_event_id": "9-%d"}\n\n' % head))
        self.go.wait(30)  # the harness told the load generator what was published: the events follow
        for strategy, (_, seqs) in self.scripts.items():
            for seq in seqs:  # one send per event: many reads, some of several events
                self.streams[strategy].sendall(chunk(event(9, seq)))


@contextmanager
def streamer(scripts: dict[int, tuple[int, list[int]]], refuse: frozenset[int] = frozenset()) -> Iterator[ScriptedStreamer]:
    """A ScriptedStreamer serving in its thread, closed afterwards."""
    server = ScriptedStreamer(scripts, refuse)
    server.thread.start()
    try:
        yield server
    finally:
        server.go.set()
        server.thread.join(10)
        for conn in server.streams.values():
            conn.close()
        server.server.close()


def test_open_streams_counts_a_refused_stream_as_failed() -> None:
    with streamer({1: (0, [])}, refuse=frozenset({2})) as server:
        loop = ReadLoop(Tally())
        opened, errors = open_streams(loop, "127.0.0.1", server.port, [StreamSpec(1, "t"), StreamSpec(2, "t")])
        assert [s.strategy_id for s in opened] == [1]
        assert len(errors) == 1 and "HTTP 403" in errors[0]
        for stream in opened:
            loop.close(stream)


def run_session(scripts: dict[int, tuple[int, list[int]]], published: dict[int, int]) -> dict[str, Any]:
    """The load generator's session against a scripted streamer, with this test as the harness."""
    here, there = Pipe()
    specs = [StreamSpec(strategy, "token") for strategy in scripts]
    with stamping_on(), streamer(scripts) as server:
        worker = threading.Thread(target=session, args=(there, "127.0.0.1", server.port, specs), daemon=True)
        worker.start()
        hello = here.recv()
        assert (hello["connected"], hello["failed"]) == (len(scripts), 0)
        here.send({"published": published, "quiet_s": 0.5, "deadline_s": 20})
        server.go.set()
        result: dict[str, Any] = here.recv()
        here.send("close")
        worker.join(10)
    return result


def test_seqs_through_the_read_loop_count_lost_and_duplicated_as_before() -> None:
    # Stream 1 gets everything; stream 2 a repeat (12), a gap (13) and not its last event (15).
    result = run_session({1: (10, [11, 12, 13, 14, 15]), 2: (10, [11, 12, 12, 14])}, {1: 5, 2: 5})
    assert result["received"] == 9
    assert result["duplicated"] == 1
    assert result["lost"] == 2
    assert result["streams_closed"] == 0


def test_every_delivery_arrived_no_later_than_it_was_read() -> None:
    result = run_session({1: (0, list(range(1, 41))), 2: (0, list(range(1, 41)))}, {1: 40, 2: 40})
    to_read, to_arrival, waits = (memoryview(result[name]).cast("q").tolist()
                                  for name in ("latencies", "arrivals", "arrival_to_read"))
    assert len(to_read) == len(to_arrival) == len(waits) == 80
    assert result["unstamped_reads"] == 0
    assert result["reads"] > 0
    for read, arrived, waited in zip(to_read, to_arrival, waits):
        assert 0 <= arrived <= read  # publish ≤ kernel arrival ≤ the load generator's read, per delivery
        assert waited >= 0
