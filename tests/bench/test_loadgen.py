"""The load generator's read loop on real sockets: kernel arrival times, and the seq accounting through it."""

from __future__ import annotations

import socket
import time

from bench import kerneltime
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


def test_a_tcp_read_carries_the_realtime_the_kernel_received_it() -> None:
    sender, receiver = tcp_pair()
    with sender, receiver:
        kerneltime.enable(receiver)
        sender.sendall(b"warm-up")  # the kernel turns stamping on lazily: the first segment may come without
        recv_stamped(receiver, 64)
        before = time.time_ns()
        sender.sendall(b"x" * 400)
        data, arrived, after = recv_stamped(receiver, 4096)
    assert data == b"x" * 400
    assert arrived is not None
    assert before <= arrived <= after  # CLOCK_REALTIME, the clock of time.time_ns()


def test_one_read_of_two_segments_carries_the_later_ones_time() -> None:
    sender, receiver = tcp_pair()
    with sender, receiver:
        kerneltime.enable(receiver)
        sender.sendall(b"warm-up")
        recv_stamped(receiver, 64)
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
