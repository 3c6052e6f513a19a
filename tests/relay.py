"""A TCP relay between a process and its database, that a test can cut and restore: the network going away, for real.

It listens on a port of its own and copies bytes both ways to the target. `cut()`
closes every relayed connection and stops listening (new connections are refused,
as from a database host that is down); `restore()` listens on the same port again:
a reserved one (tests/ports.py), so that no port-0 bind takes it while it is cut.
`hold_replies()` drops what the target sends back from then on (until `restore()`),
while what the client sends still reaches it: a COMMIT that the database carries
out and whose answer never arrives.
"""

from __future__ import annotations

import selectors
import socket
import threading

from tests.ports import reserved_ports

CHUNK = 65536


class Relay:
    """Relays 127.0.0.1:<port> to `target` in a thread of its own."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._selector = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._stopping = False
        self._upstreams: set[socket.socket] = set()
        self._holding = False
        self._reservation = reserved_ports(1)  # until close()
        self.port = self._listen(self._reservation.ports[0])
        self._thread = threading.Thread(target=self._run, name="relay", daemon=True)
        self._thread.start()

    def cut(self) -> None:
        """Close every relayed connection and refuse new ones."""
        with self._lock:
            if self._listener is not None:
                self._selector.unregister(self._listener)
                self._listener.close()
                self._listener = None
            for sock in list(self._pairs):
                self._drop(sock)
        self._wake_w.send(b"x")

    def hold_replies(self) -> None:
        """Drop every byte the target sends from now on; the client's still reach it."""
        with self._lock:
            self._holding = True

    def restore(self) -> None:
        """Accept connections again, on the same port, and relay replies again."""
        with self._lock:
            self._holding = False
            self._listen(self.port)
        self._wake_w.send(b"x")

    def close(self) -> None:
        """Stop the thread and close everything."""
        self.cut()
        self._stopping = True
        self._wake_w.send(b"x")
        self._thread.join(5)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
        self._reservation.close()

    def _listen(self, port: int) -> int:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        listener.setblocking(False)
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ)
        return int(listener.getsockname()[1])

    def _run(self) -> None:
        while not self._stopping:
            for key, _ in self._selector.select(timeout=1.0):
                with self._lock:
                    self._ready(key.fileobj)  # type: ignore[arg-type]  # only sockets are registered

    def _ready(self, sock: socket.socket) -> None:
        if sock is self._wake_r:
            sock.recv(CHUNK)
        elif sock is self._listener:
            self._accept(sock)
        elif sock in self._pairs:
            self._copy(sock)

    def _accept(self, listener: socket.socket) -> None:
        try:
            client, _ = listener.accept()
        except BlockingIOError:
            return
        upstream = socket.create_connection(self.target, timeout=5)
        self._upstreams.add(upstream)
        for one, other in ((client, upstream), (upstream, client)):
            one.setblocking(True)
            self._pairs[one] = other
            self._selector.register(one, selectors.EVENT_READ)

    def _copy(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(CHUNK)
            if data:
                if not (self._holding and sock in self._upstreams):
                    self._pairs[sock].sendall(data)
                return
        except OSError:
            pass
        self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        if sock not in self._pairs:
            return  # dropped with its partner already
        other = self._pairs.pop(sock)
        for one in (sock, other):
            if one is not None:
                self._pairs.pop(one, None)
                self._upstreams.discard(one)
                self._selector.unregister(one)
                one.close()
