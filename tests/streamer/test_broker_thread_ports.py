"""BrokerThread's ports: reserved (tests/ports.py) outside the ephemeral range, the same after a restart."""

from __future__ import annotations

from tests.ports import ephemeral_range, is_reserved
from tests.streamer.conftest import BrokerThread


def test_a_stopped_broker_thread_starts_again_on_its_reserved_ports(broker: BrokerThread) -> None:
    before = dict(broker.endpoints)
    ports = [int(endpoint.rsplit(":", 1)[-1]) for endpoint in before.values()]
    first, last = ephemeral_range()
    assert len(set(ports)) == 4 and not any(first <= port <= last for port in ports), before
    assert all(is_reserved(port) for port in ports), before
    broker.stop()
    assert broker.start().endpoints == before
