"""The fault stack's bus ports: reserved (tests/ports.py) from its making until `close()`, outside the ephemeral range.

They must be fixed before the first start, since a process killed -9 restarts on the same ones; the HTTP
ports are not among them (port 0 at the first start, then the one the server said it took).
"""

from __future__ import annotations

from tests.faults.stack import Stack
from tests.ports import assert_held_outside_ephemeral, is_reserved, port_of


def test_the_bus_ports_are_held_outside_the_ephemeral_range_until_the_stack_closes(idle_stack: Stack) -> None:
    ports = [port_of(endpoint) for endpoint in idle_stack.bus.values()]
    assert_held_outside_ephemeral(ports, 6)
    idle_stack.close()
    assert not any(is_reserved(port) for port in ports), ports
