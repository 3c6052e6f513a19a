"""When the kernel had a read's bytes: SO_TIMESTAMPNS on a TCP socket, read back from recvmsg's ancillary data.

Python's socket module does not name SO_TIMESTAMPNS; on Linux it is 35 (asm-generic
`SO_TIMESTAMPNS_OLD`, which is SO_TIMESTAMPNS wherever time_t is as wide as a long,
as on x86_64 and aarch64), and the control message it brings is SCM_TIMESTAMPNS, the
same number, carrying a `struct timespec` of CLOCK_REALTIME: the clock of
`time.time_ns()`. On TCP, Linux (`tcp_recv_timestamp`) hands the timestamp of the
*latest* skb the read took: for the earlier events of one read it is late, so the
arrival figure it gives is conservative (never earlier than an event arrived).

Linux turns stamping on for the whole host through deferred work, when the first
socket asks (again after the last one that asked closed): the first segments may come
without a timestamp. The load generator counts such reads at their read time
(`reads_without_arrival` in the bench's table; 0 in every run of issue 13's third pass).

Checked here (kernel 6.18, Python 3.11): two sends 10 ms apart, one read of both:
the timestamp is 0.002 ms after the second send; a send and its read: 0.8–1.1 µs
after `time.time_ns()` before the send, ~0.6 ms before the read (a 0.5 ms sleep).
"""

from __future__ import annotations

import socket
import struct

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
ANCILLARY_SIZE = socket.CMSG_SPACE(16)  # one struct timespec (two 64-bit fields)
_TIMESPEC = struct.Struct("qq")
_unpack, _SIZE, _SOL_SOCKET = _TIMESPEC.unpack_from, _TIMESPEC.size, socket.SOL_SOCKET


def enable(sock: socket.socket) -> None:
    """Ask the kernel to stamp what `sock` receives."""
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


def arrival_ns(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    """The SCM_TIMESTAMPNS of one recvmsg's ancillary data, in ns since the epoch (None if it has none)."""
    for level, kind, data in ancdata:  # one message at most: the only option asked for
        if kind == SCM_TIMESTAMPNS and level == _SOL_SOCKET and len(data) >= _SIZE:
            seconds, nanos = _unpack(data)
            return int(seconds) * 1_000_000_000 + int(nanos)
    return None
