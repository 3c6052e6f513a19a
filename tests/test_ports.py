"""tests/ports.py's reservations: outside the ephemeral range, locked across processes, bindable, released on close.

The tests that share a pool of ports take it as a real reservation first (`pool`), so that no other
test process can pick those ports meanwhile, and then reserve from it with locks in their own folder.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import LOCK_DIR, LOWEST_PORT, ephemeral_range, is_reserved, refused_port, reserved_ports

ROOT = Path(__file__).resolve().parents[1]
POOL = 10
# A second process: reserves 4 ports of the pool given as arguments (locks in the folder given first),
# prints them, and holds them until its stdin closes.
HOLDER = """
import sys
from pathlib import Path
from tests.ports import reserved_ports
with reserved_ports(4, pool=[int(p) for p in sys.argv[2:]], lock_dir=Path(sys.argv[1])) as ports:
    print(*ports, flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def pool() -> Iterator[list[int]]:
    with reserved_ports(POOL) as ports:
        yield ports


def test_the_ephemeral_range_is_the_kernels() -> None:
    first, last = (int(field) for field in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert ephemeral_range() == (first, last)


def test_reserved_ports_are_distinct_outside_the_ephemeral_range_and_bindable() -> None:
    first, last = ephemeral_range()
    with reserved_ports(50) as ports:
        assert len(set(ports)) == 50
        assert all(port >= LOWEST_PORT and not first <= port <= last for port in ports), ports
        # What the servers do with them: bind on 127.0.0.1 (SO_REUSEADDR) and listen.
        for port in ports:
            with socket.socket() as server:
                server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                server.bind(("127.0.0.1", port))
                server.listen()


def test_a_port_0_bind_never_gets_a_reserved_port() -> None:
    first, last = ephemeral_range()
    with reserved_ports(8) as ports, socket.socket() as any_port:
        any_port.bind(("127.0.0.1", 0))
        assert first <= any_port.getsockname()[1] <= last and any_port.getsockname()[1] not in ports


def test_a_reserved_port_is_locked_until_its_reservation_closes(pool: list[int], tmp_path: Path) -> None:
    reservation = reserved_ports(3, pool=pool, lock_dir=tmp_path)
    for port in reservation.ports:
        fd = os.open(tmp_path / f"{port}.lock", os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    reservation.close()
    assert not any(is_reserved(port, tmp_path) for port in reservation.ports)
    reservation.close()  # a second close does nothing


def test_the_default_lock_folder_holds_a_default_reservations_locks() -> None:
    with reserved_ports(2) as ports:
        assert all(is_reserved(port, LOCK_DIR) for port in ports)


def test_two_reservations_of_one_pool_never_share_a_port(pool: list[int], tmp_path: Path) -> None:
    with reserved_ports(5, pool=pool, lock_dir=tmp_path) as first, reserved_ports(5, pool=pool, lock_dir=tmp_path) as second:
        assert sorted(first + second) == sorted(pool)
        with pytest.raises(RuntimeError, match="only 0 of 1 ports free"):
            reserved_ports(1, pool=pool, lock_dir=tmp_path)
    with reserved_ports(POOL, pool=pool, lock_dir=tmp_path) as again:  # all released
        assert sorted(again) == sorted(pool)


def test_another_process_reservation_is_never_handed_out_here(pool: list[int], tmp_path: Path) -> None:
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), *map(str, pool)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as holder:
        assert holder.stdin is not None and holder.stdout is not None
        try:
            theirs = [int(port) for port in holder.stdout.readline().split()]
            assert len(theirs) == 4 and set(theirs) <= set(pool)
            with reserved_ports(POOL - 4, pool=pool, lock_dir=tmp_path) as mine:
                assert not set(mine) & set(theirs)
                with pytest.raises(RuntimeError):
                    reserved_ports(1, pool=pool, lock_dir=tmp_path)
        finally:
            holder.stdin.close()
            code = holder.wait(timeout=30)
    assert code == 0
    # Its locks went with it.
    assert not any(is_reserved(port, tmp_path) for port in theirs)


def test_a_port_someone_listens_on_is_skipped(pool: list[int], tmp_path: Path) -> None:
    busy, free = pool[:2]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", busy))
        squatter.listen()
        with reserved_ports(1, pool=[busy, free], lock_dir=tmp_path) as ports:
            assert ports == [free]
        assert not is_reserved(busy, tmp_path)


def test_the_refused_port_is_one_reserved_for_this_process_that_nobody_listens_on() -> None:
    port = refused_port()
    first, last = ephemeral_range()
    assert refused_port() == port and not first <= port <= last and is_reserved(port)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
