"""BrokerThread's ports: reserved (tests/ports.py) outside the ephemeral range, the same after a restart."""

from __future__ import annotations

from tests.ports import assert_held_outside_ephemeral, port_of
from tests.streamer.conftest import BrokerThread


def test_a_stopped_broker_thread_starts_again_on_its_reserved_ports(broker: BrokerThread) -> None:
    before = dict(broker.endpoints)
    assert_held_outside_ephemeral([port_of(endpoint) for endpoint in before.values()], 4)
    broker.stop()
    assert broker.start().endpoints == before
