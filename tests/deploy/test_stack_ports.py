"""The deploy stack's ports: reserved (tests/ports.py) from its making until `stop()`, outside the ephemeral range."""

from __future__ import annotations

from pathlib import Path

from tests.deploy.stack import STACK_PORTS, Stack
from tests.ports import assert_held_outside_ephemeral, is_reserved, port_of

PORT_VARIABLES = ("TRADESTREAM_INGRESS", "TRADESTREAM_PUBLISH", "TRADESTREAM_REPLAY", "TRADESTREAM_ACK_INGRESS",
                  "TRADESTREAM_ORDERS", "TRADESTREAM_FILLS", "TRADESTREAM_PORT", "TRADESTREAM_WEBHOOK_PORT")


def test_a_stack_holds_its_ports_outside_the_ephemeral_range_until_it_stops(tmp_path: Path) -> None:
    stack = Stack.in_new_folder(tmp_path / "stack")  # not started: the ports are the same either way
    try:
        ports = [port_of(stack.env[name]) for name in PORT_VARIABLES]
        assert_held_outside_ephemeral(ports, STACK_PORTS)
    finally:
        assert stack.stop() == 0
    assert not any(is_reserved(port) for port in ports), ports
