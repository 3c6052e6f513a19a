"""BrokerProcess's ports: reserved (tests/ports.py) outside the ephemeral range, the same after a restart."""

from __future__ import annotations

from tests.bus.conftest import BrokerProcess
from tests.ports import assert_held_outside_ephemeral, port_of


def test_a_killed_broker_restarts_on_its_reserved_ports(broker: BrokerProcess) -> None:
    before = dict(broker.endpoints)
    assert_held_outside_ephemeral([port_of(endpoint) for endpoint in before.values()], 4)
    broker.kill()
    assert broker.start().endpoints == before
