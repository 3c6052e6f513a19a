"""Fixtures for producer tests: the demo world in a real SQLite file, real ZeroMQ sockets.

`world` is what `tradestream-admin demo` creates (store.demo.demo): alice owns
btc-trend (linked to alice's 100,000 and bob's 50,000 accounts) and eth-swing
(alice, carol), bob owns sol-scalp (bob). Wake-ups are captured by binding a
real PULL socket where the order handler would be.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zmq
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from tornado.ioloop import IOLoop

from producers.relay import Relay
from store.db import init_db, make_engine, make_session_factory
from store.demo import demo as demo_world
from tests.waiting import wait_until


@dataclass(frozen=True)
class World:
    """The demo data: ids and tokens by name."""

    url: str
    engine: Engine
    sessions: sessionmaker[Session]
    strategy_ids: dict[str, int]
    tokens: dict[str, str]
    user_ids: dict[str, int]
    account_ids: dict[str, int]


def make_demo(path: Path) -> dict[str, Any]:
    """Create the tables and the demo data in a new SQLite file; the `demo` output."""
    engine = make_engine(f"sqlite:///{path}")
    init_db(engine)
    with make_session_factory(engine)() as session:
        demo = demo_world(session, None)
    engine.dispose()  # the last connection checkpoints the WAL into the file: it can be copied
    return demo


def world_at(path: Path, demo: dict[str, Any]) -> World:
    """The World of a copy of the demo database at `path`."""
    return world_of(f"sqlite:///{path}", demo)


def world_of(url: str, demo: dict[str, Any]) -> World:
    """The World of the demo database at `url` (its `demo` output)."""
    users = {user["username"]: user["id"] for user in demo["users"]}
    engine = make_engine(url)
    return World(
        url=url,
        engine=engine,
        sessions=make_session_factory(engine),
        strategy_ids={s["group_name"]: s["id"] for s in demo["strategies"]},
        tokens={s["group_name"]: s["webhook_token"] for s in demo["strategies"]},
        user_ids=users,
        account_ids={a["name"].split()[0]: a["id"] for a in demo["accounts"]},
    )


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The demo database, made once (password hashing is slow on purpose) and copied per test."""
    path = tmp_path_factory.mktemp("demo") / "tradestream.db"
    return path, make_demo(path)


@pytest.fixture
def world(tmp_path: Path, demo_template: tuple[Path, dict[str, Any]]) -> Iterator[World]:
    """The demo world in a fresh SQLite file of the test."""
    template, demo = demo_template
    path = tmp_path / "var" / "tradestream.db"
    path.parent.mkdir()
    shutil.copyfile(template, path)
    world = world_at(path, demo)
    yield world
    world.engine.dispose()


@pytest.fixture
def io_loop() -> Iterator[IOLoop]:
    """pytest-tornado's loop without its deprecated `make_current()`: a fresh asyncio loop."""
    asyncio_loop = asyncio.new_event_loop()
    asyncio.set_event_loop(asyncio_loop)
    loop = IOLoop.current()
    yield loop
    loop.close(all_fds=True)
    asyncio.set_event_loop(None)


@pytest.fixture
def zctx() -> Iterator[zmq.Context[Any]]:
    """A ZeroMQ context of the test, destroyed at the end."""
    ctx: zmq.Context[Any] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


class WakeSink:
    """A bound PULL socket standing where the order handler would be."""

    def __init__(self, ctx: zmq.Context[Any]) -> None:
        self.socket = ctx.socket(zmq.PULL)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind("tcp://127.0.0.1:*")
        self.endpoint = self.socket.getsockopt(zmq.LAST_ENDPOINT).decode()

    def receive(self, timeout_ms: int = 5000) -> list[bytes]:
        """The next message's frames; fails the test when none comes in time."""
        if not self.socket.poll(timeout_ms, zmq.POLLIN):
            raise AssertionError(f"no message within {timeout_ms} ms")
        return list(self.socket.recv_multipart())

    def pending(self) -> list[list[bytes]]:
        """Every message already received, without waiting."""
        messages = []
        while self.socket.poll(0, zmq.POLLIN):
            messages.append(self.socket.recv_multipart())
        return messages


@pytest.fixture
def wake_sink(zctx: zmq.Context[Any]) -> Iterator[WakeSink]:
    """Where the webhook under test sends its wake-ups."""
    sink = WakeSink(zctx)
    yield sink
    sink.socket.close()


def greeted(relay: Relay) -> None:
    """Pump a starting relay until the broker answered its `hello` (it sends no row before); that pump sent its rows."""
    wait_until(lambda: (relay.pump(), not relay.window.greeting)[1], what="the broker's answer to the relay's hello")
