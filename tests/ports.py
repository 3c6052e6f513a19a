"""Ports for the tests: a real server on port 0 in this process, or ports reserved for other processes.

`listen_on_free_port` binds port 0 for a server of this process: nothing can take it first.

`reserved_ports` is for the stacks of real processes, which are handed their ports as arguments
and restart on the same ones (supervisord's autorestart, the fault stack's kill -9): a port picked
by binding 0 and releasing it lies in the kernel's ephemeral range, where any bind to port 0 on
the machine (another xdist worker's server, a client's connect) may take it before the process
binds it ('Address already in use'). So a reservation picks ports outside that range, which port
0 never hands out, holds an flock on `<LOCK_DIR>/<port>.lock` for each of them until it is closed
(two workers or two stacks never pick the same port), and checks each is bindable right now.
The lock files are never deleted: unlinking a lock file that another process has opened would
let a third lock a new file of the same name, and both would think they hold the port.
"""

from __future__ import annotations

import fcntl
import functools
import os
import random
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from tornado.tcpserver import TCPServer

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LINUX_DEFAULT_EPHEMERAL = (32768, 60999)
# Under it: well-known services (PostgreSQL's 5432, supervisord.conf's 8080, 8081, 9101...). With Linux's
# default ephemeral range that leaves 20000-32767 and 61000-65535.
LOWEST_PORT = 20000
LOCK_DIR = Path(tempfile.gettempdir()) / "tradestream-test-ports"
_RANDOM = random.SystemRandom()  # not the `random` module's state, which a test may seed the same in every worker


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


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for port 0 and outgoing connections (first, last), inclusive."""
    try:
        first, last = (int(field) for field in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return LINUX_DEFAULT_EPHEMERAL
    return first, last


def candidate_ports() -> list[int]:
    """The ports a reservation picks from: from LOWEST_PORT up, outside the ephemeral range."""
    first, last = ephemeral_range()
    ports = [port for port in range(LOWEST_PORT, 65536) if not first <= port <= last]
    if not ports:
        raise RuntimeError(f"no port from {LOWEST_PORT} up is outside the ephemeral range {first}-{last}")
    return ports


class PortReservation:
    """Ports held for this process until `close()`; `with` gives the list of ports."""

    def __init__(self, ports: list[int], locks: list[int]) -> None:
        self.ports = ports
        self._locks = locks

    def close(self) -> None:
        """Release the ports (closing a lock file's descriptor releases its flock); a second close does nothing."""
        locks, self._locks = self._locks, []
        for fd in locks:
            os.close(fd)

    def __enter__(self) -> list[int]:
        return self.ports

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def reserved_ports(count: int, *, pool: Sequence[int] | None = None, lock_dir: Path = LOCK_DIR) -> PortReservation:
    """`count` distinct ports of `pool` (default `candidate_ports()`), each locked and bindable now."""
    candidates = list(candidate_ports() if pool is None else pool)
    start = _RANDOM.randrange(len(candidates)) if candidates else 0  # workers start apart, and rarely meet
    lock_dir.mkdir(parents=True, exist_ok=True)
    reservation = PortReservation([], [])
    try:
        for port in candidates[start:] + candidates[:start]:
            if len(reservation.ports) == count:
                break
            fd = _lock(lock_dir / f"{port}.lock")
            if fd is None:
                continue  # another reservation holds it
            if not _bindable(port):
                os.close(fd)
                continue
            reservation.ports.append(port)
            reservation._locks.append(fd)
        if len(reservation.ports) < count:
            raise RuntimeError(f"only {len(reservation.ports)} of {count} ports free among {len(candidates)}")
    except BaseException:
        reservation.close()
        raise
    return reservation


def _lock(path: Path) -> int | None:
    """The descriptor of `path` under an exclusive flock, or None when another holds it.

    Not inherited by subprocesses (os.open's default): the lock is this process's, not its children's.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for a person looking
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _bindable(port: int) -> bool:
    """Whether 127.0.0.1:`port` can be bound now, as the servers bind it (SO_REUSEADDR: a TIME_WAIT is no obstacle)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def is_reserved(port: int, lock_dir: Path = LOCK_DIR) -> bool:
    """Whether a reservation (of any process) holds `port`: its lock file's flock is taken."""
    try:
        fd = os.open(lock_dir / f"{port}.lock", os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the flock if this took it
    return False


def assert_held_outside_ephemeral(ports: Sequence[int], count: int) -> None:
    """`count` distinct ports, none in the kernel's ephemeral range, each held by a reservation (a stack's check)."""
    first, last = ephemeral_range()
    assert len(set(ports)) == count and not any(first <= port <= last for port in ports), ports
    assert all(is_reserved(port) for port in ports), ports


def port_of(endpoint: str) -> int:
    """The port of `tcp://host:port` or `host:port`."""
    return int(endpoint.rsplit(":", 1)[-1])


@functools.cache
def refused_port() -> int:
    """A port of 127.0.0.1 nobody listens on (connecting is refused): one reserved for the rest of this process.

    Reserved at its first use and never closed: the process's exit releases the lock. A test that
    binds a port later (a late server) wants a reservation of its own instead.
    """
    return reserved_ports(1).ports[0]
