"""zmq sockets polled by their ZMQ_FD as plain descriptors, and which of them may hold messages.

Why: `zmq_poll` checks every zmq socket it is given (ZMQ_EVENTS: a `poll()` and a `getpid()` in
libzmq's mailbox) before and after it waits, at every wake-up, and waits twice (a first pass
with no timeout); one `select.poll` of descriptors is one syscall (docs/benchmarks.md, issue 13).

The catch (libzmq's zmq_getsockopt(3), ZMQ_FD): the descriptor says that commands reached the
socket's mailbox, not that a message waits, and any call on the socket (a recv, a send, the
ZMQ_EVENTS check itself) may take those commands, after which the descriptor stays quiet while
messages wait. So a socket is `waiting` from when it is added or its descriptor fires until a
drain of it ended with EAGAIN (that recv took the mailbox's commands and found nothing) or a
recheck (ZMQ_EVENTS) found nothing; and it is rechecked after every call that may have taken
commands without reading what they announced: a send (an XPUB's subscriptions are read into
libzmq's queue by whatever call takes the command), a drain that stopped at its batch.
"""

from __future__ import annotations

import select
from typing import Any

import zmq


class FdPoll:
    """The sockets `add`ed, one `select.poll` over their descriptors; `waiting`: those to drain now."""

    def __init__(self) -> None:
        self._poll = select.poll()
        self._by_fd: dict[int, zmq.Socket[Any]] = {}
        self.waiting: set[zmq.Socket[Any]] = set()

    def add(self, sock: zmq.Socket[Any]) -> None:
        """Poll `sock` from now on; it is waiting (its descriptor may have fired, or been taken, before)."""
        fd = sock.getsockopt(zmq.FD)
        assert isinstance(fd, int)
        self._by_fd[fd] = sock
        self._poll.register(fd, select.POLLIN)
        self.waiting.add(sock)

    def wait(self, timeout_ms: int) -> None:
        """Wait up to `timeout_ms` for a descriptor (not at all while a socket waits); those that fired wait."""
        by_fd, waiting = self._by_fd, self.waiting
        for fd, _ in self._poll.poll(0 if waiting else timeout_ms):
            waiting.add(by_fd[fd])

    def drained(self, sock: zmq.Socket[Any], emptied: bool) -> None:
        """After a drain of `sock`: it waits no more if the drain ended with EAGAIN, and still does if not."""
        if emptied:
            self.waiting.discard(sock)
        else:
            self.waiting.add(sock)

    def recheck(self, sock: zmq.Socket[Any]) -> None:
        """Whether `sock` holds a message, after a send on it: ZMQ_EVENTS (which also re-arms its descriptor)."""
        events = sock.getsockopt(zmq.EVENTS)
        if isinstance(events, int) and events & zmq.POLLIN:
            self.waiting.add(sock)
        else:
            self.waiting.discard(sock)

    def recheck_all(self) -> None:
        """`recheck` every socket polled (at each heartbeat: a safety net, not what promptness rests on)."""
        for sock in self._by_fd.values():
            self.recheck(sock)
