"""A real server of the product's on a free port of 127.0.0.1, as its process serves it (but on port 0)."""

from __future__ import annotations

import socket

from tornado.tcpserver import TCPServer


def listen_on_free_port(server: TCPServer, receive_buffer: int | None = None) -> int:
    """Bind a free port of 127.0.0.1 for `server` and return it; stopping the server is the caller's.

    `receive_buffer` (bytes) caps its connections' SO_RCVBUF: what a slow network holds in flight.
    """
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    server.add_sockets([sock])
    port: int = sock.getsockname()[1]
    return port
