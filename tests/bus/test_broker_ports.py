"""BrokerProcess's ports: reserved (tests/ports.py) outside the ephemeral range, the same after a restart."""

from __future__ import annotations

from tests.bus.conftest import BrokerProcess
from tests.ports import ephemeral_range, is_reserved


def test_a_killed_broker_restarts_on_its_reserved_ports(broker: BrokerProcess) -> None:
    before = dict(broker.endpoints)
    ports = [int(endpoint.rsplit(":", 1)[-1]) for endpoint in before.values()]
    first, last = ephemeral_range()
    assert len(set(ports)) == 4 and not any(first <= port <= last for port in ports), before
    assert all(is_reserved(port) for port in ports), before
    broker.kill()
    assert broker.start().endpoints == before
