"""Fixtures of the streamer tests: a real broker, a real seeded SQLite database, a running app.

The world (seeded once per session through store.actions, copied per test):
users 1 `root` (admin), 2..9 fillers, 10 `u10`, 11 `u11`; strategies 1..11, all
owned by root; accounts of root, u10 and u11 linked to strategies 1, 10 and 11
(ids whose decimal forms prefix each other), u10's also to strategy 4;
strategy 3 is inactive; strategy 2 has no links.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import tornado.ioloop
import tornado.web
import zmq
import zmq.asyncio

from bus.broker import Broker
from bus.broker_config import BrokerConfig
from bus.events import Account, OrderEvent, utc_now
from bus.publisher import Publisher
from store import actions
from store.db import init_db, make_engine, make_session_factory
from streamer.app import make_front
from streamer.config import StreamerConfig
from streamer.server import make_server
from streamer.services import Services
from tests.ports import reserved_ports
from tests.waiting import wait_until
from web.front import FrontDoor
from web.server import HardenedHTTPServer

FILLERS = range(2, 10)
LINKED_STRATEGIES = (1, 10, 11)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "streamer_config(**fields): StreamerConfig fields for this test's app")
    config.addinivalue_line("markers", "broker_config(**fields): BrokerConfig fields for this test's broker")


@pytest.fixture
def io_loop() -> Iterator[tornado.ioloop.IOLoop]:
    """A new loop per test, replacing pytest-tornado's fixture (it calls the deprecated make_current).

    IOLoop() makes itself current, remembering asyncio's current loop to restore on
    close; with none set yet, asking for it would create one that nobody closes.
    Setting None first makes the answer "none" instead.
    """
    asyncio.set_event_loop(None)
    loop = tornado.ioloop.IOLoop()
    yield loop
    loop.close(all_fds=True)


@dataclass
class User:
    id: int
    username: str
    password: str
    token: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class World:
    template: Path
    users: dict[str, User] = field(default_factory=dict)
    accounts: dict[str, int] = field(default_factory=dict)


def _seed(session: Any) -> World:
    world = World(template=Path())
    names = ["root", *(f"u{i}" for i in FILLERS), "u10", "u11"]
    for name in names:
        user, token = actions.create_user(session, None, name, f"{name}-pw", is_admin=name == "root")
        world.users[name] = User(user.id, name, f"{name}-pw", token)
    assert [world.users[n].id for n in ("root", "u10", "u11")] == [1, 10, 11]
    for name in ("root", "u10", "u11"):
        world.accounts[name] = actions.create_account(session, None, name, f"acct-{name}", "paper", 10_000).id
    for number in range(1, 12):
        strategy, _ = actions.create_strategy(session, None, "root", f"Strategy {number}", f"g{number}")
        assert strategy.id == number
    for strategy_id in LINKED_STRATEGIES:
        for account_id in world.accounts.values():
            actions.link(session, None, strategy_id, account_id)
    actions.link(session, None, 4, world.accounts["u10"])
    actions.deactivate(session, None, 3)
    return world


@pytest.fixture(scope="session")
def seeded_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The world, written once into a template SQLite file."""
    path = tmp_path_factory.mktemp("world") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    init_db(engine)
    with make_session_factory(engine)() as session:
        world = _seed(session)
    engine.dispose()
    world.template = path
    return world


@pytest.fixture
def world(seeded_world: World, tmp_path: Path) -> World:
    """The world in a database file of this test's own."""
    target = tmp_path / "var" / "tradestream.db"
    target.parent.mkdir(parents=True)
    shutil.copyfile(seeded_world.template, target)
    return replace(seeded_world, template=target)


def url_of(world: World) -> str:
    """The SQLAlchemy URL of the world's database file."""
    return f"sqlite:///{world.template}"


class BrokerThread:
    """A real bus.broker.Broker in a thread, on reserved ports (tests/ports.py) until `close()`; restartable on them.

    Reserved, not port 0 then the ones it took: another test's port-0 bind could take one of those
    while the broker is stopped.
    """

    def __init__(self, **overrides: Any) -> None:
        self.overrides = overrides  # BrokerConfig fields (the broker_config marker), kept across restarts
        self.context: zmq.Context[Any] = zmq.Context()
        self.ports = reserved_ports(4)
        self.endpoints = {name: f"tcp://127.0.0.1:{port}" for name, port in
                          zip(("ingress", "publish", "replay", "ack_ingress"), self.ports.ports, strict=True)}
        self.broker: Broker | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> BrokerThread:
        wait_until(self._ports_free, what="the previous broker's ports to be released")
        endpoints = self.endpoints
        config = BrokerConfig(
            ingress=endpoints["ingress"], publish=endpoints["publish"], replay=endpoints["replay"],
            ack_ingress=endpoints["ack_ingress"], bus_heartbeat=0.1, **self.overrides,
        )
        self.broker = Broker(config, self.context)
        self.endpoints = self.broker.endpoints
        self.thread = threading.Thread(target=self.broker.run, name="broker", daemon=True)
        self.thread.start()
        return self

    def _ports_free(self) -> bool:
        # Probed with plain sockets: a Broker whose bind fails would leak the sockets it made.
        for endpoint in self.endpoints.values():
            host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
            if port == "*":
                continue
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((host, int(port)))
                except OSError:
                    return False
        return True

    def stop(self) -> None:
        if self.broker is not None and self.thread is not None:
            self.broker.stop()
            self.thread.join(5)
            self.broker = None

    @property
    def epoch(self) -> int:
        assert self.broker is not None
        return self.broker.sequencer.epoch


@pytest.fixture
def broker(request: pytest.FixtureRequest) -> Iterator[BrokerThread]:
    """A broker in a thread (`broker_config` marker overrides BrokerConfig fields)."""
    marker = request.node.get_closest_marker("broker_config")
    running = BrokerThread(**(marker.kwargs if marker else {})).start()
    yield running
    running.stop()
    running.context.destroy(linger=0)
    running.ports.close()


@pytest.fixture
def publisher(broker: BrokerThread) -> Iterator[Publisher]:
    """Pushes events to the broker's ingress, like a producer."""
    with Publisher(broker.endpoints["ingress"]) as pub:
        yield pub


def order(user_id: int, strategy_id: int, order_id: str) -> OrderEvent:
    """A valid order_update of the key (user_id, strategy_id)."""
    return OrderEvent(
        event_type="order_created", order_id=order_id, symbol="BTC/USDT", strategy_id=strategy_id, user_id=user_id,
        side="BUY", quantity="1", price="100", status="NEW", timestamp=utc_now(), order_type="LIMIT", stop_price=None,
        account=Account(1, "acct", "paper"), suppress_toast=False,
    )


def streamer_config(world: World, broker: BrokerThread, **overrides: Any) -> StreamerConfig:
    """A config for a streamer on the test's database and broker."""
    fields: dict[str, Any] = {
        "secret": "test-secret-" + "x" * 32,
        "database_url": url_of(world),
        "ingress": broker.endpoints["ingress"],
        "publish": broker.endpoints["publish"],
        "replay": broker.endpoints["replay"],
        "heartbeat": 60.0,
        "recheck": 60.0,
        **overrides,
    }
    return StreamerConfig(**fields)


@pytest.fixture
def services(request: pytest.FixtureRequest, world: World, broker: BrokerThread, io_loop: tornado.ioloop.IOLoop) -> Iterator[Services]:
    """Started Services of an in-process streamer (`streamer_config` marker overrides fields)."""
    marker = request.node.get_closest_marker("streamer_config")
    config = streamer_config(world, broker, **(marker.kwargs if marker else {}))
    context = zmq.asyncio.Context()
    running = Services(config, context)
    io_loop.run_sync(running.start)
    yield running
    io_loop.run_sync(running.close)
    context.destroy(linger=0)


@pytest.fixture
def app(services: Services) -> FrontDoor:
    """What the process serves (streamer.app.make_front): the stream's lean path in front of the Application."""
    return make_front(services)


@pytest.fixture
def http_server(
    request: pytest.FixtureRequest, io_loop: tornado.ioloop.IOLoop, _unused_port: Any, services: Services, app: FrontDoor
) -> Iterator[HardenedHTTPServer]:
    """pytest-tornado's http_server, but the process's (streamer.server.make_server): web/server.py and its read loop."""
    server = make_server(services, app)
    server.add_socket(_unused_port[0])
    yield server
    server.stop()
    io_loop.run_sync(server.close_all_connections, timeout=request.config.option.async_test_timeout)


@pytest.fixture
def port(http_server: Any, http_port: int) -> int:
    """The port of the running in-process streamer (pytest-tornado's http_server on http_port)."""
    return http_port

