"""Paged order history (`GET /api/orders?limit=&before=`) and the latest batch from the broker's history."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient

from bus.events import BatchSummary, OrderBatchEvent, OrderEvent, utc_now
from bus.publisher import Publisher
from store.db import make_engine, make_session_factory
from store.models import Account, Strategy
from tests.store.factories import add_order
from tests.streamer.conftest import BrokerThread, World, order, url_of
from tests.waiting import async_wait_until

MINE = [f"mine-{n}" for n in range(1, 8)]


@pytest.fixture
def history(world: World) -> list[str]:
    """Seven orders of u10 in strategy 1, created in this order, with u11's orders between them."""
    engine = make_engine(url_of(world))
    with make_session_factory(engine)() as session:
        strategy = session.get(Strategy, 1)
        mine, theirs = session.get(Account, world.accounts["u10"]), session.get(Account, world.accounts["u11"])
        assert strategy is not None and mine is not None and theirs is not None
        for n, order_id in enumerate(MINE):
            add_order(session, strategy, mine, order_id)
            add_order(session, strategy, theirs, f"theirs-{n}")
        session.commit()
    engine.dispose()
    return MINE


async def get(client: AsyncHTTPClient, base_url: str, world: World, query: str) -> tuple[int, Any]:
    response = await client.fetch(f"{base_url}/api/orders?strategy_id=1{query}", headers=world.users["u10"].bearer, raise_error=False)
    return response.code, json.loads(response.body)


def ids(answer: dict[str, Any]) -> list[str]:
    return [row["order_id"] for row in answer["orders"]]


@pytest.mark.gen_test
async def test_pages_walk_back_through_the_history_oldest_first_within_a_page(
    http_client: AsyncHTTPClient, base_url: str, world: World, history: list[str], broker: BrokerThread
) -> None:
    status, snapshot = await get(http_client, base_url, world, "")
    assert status == 200 and set(snapshot) == {"orders", "last_event_id"}  # no paging parameter: the answer as before
    assert ids(snapshot) == history

    status, newest = await get(http_client, base_url, world, "&limit=3")
    assert status == 200 and ids(newest) == ["mine-5", "mine-6", "mine-7"]
    assert newest["has_more"] is True and newest["last_event_id"] == f"{broker.epoch}-0"

    status, older = await get(http_client, base_url, world, "&before=mine-5&limit=3")
    assert status == 200 and ids(older) == ["mine-2", "mine-3", "mine-4"] and older["has_more"] is True
    assert "last_event_id" not in older  # a page of history is not a place to stream from

    status, oldest = await get(http_client, base_url, world, "&before=mine-2&limit=3")
    assert (status, ids(oldest), oldest["has_more"]) == (200, ["mine-1"], False)
    status, everything = await get(http_client, base_url, world, "&before=mine-7")
    assert (status, ids(everything), everything["has_more"]) == (200, history[:-1], False)


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "query",
    ["&limit=0", "&limit=1001", "&limit=abc", "&limit=01", "&limit=-1", "&limit=2&limit=3", "&limit=",
     "&before=", "&before=theirs-1", "&before=no-such-order", "&before=" + "x" * 257, "&before=a&before=b",
     "&before=%FF"],
)
async def test_bad_paging_parameters_are_400(
    http_client: AsyncHTTPClient, base_url: str, world: World, history: list[str], query: str
) -> None:
    status, answer = await get(http_client, base_url, world, query)
    assert (status, answer["error"]) == (400, "invalid_request")


@pytest.mark.expect_log("503 GET")
@pytest.mark.gen_test
@pytest.mark.streamer_config(publish="tcp://127.0.0.1:9", replay="tcp://127.0.0.1:9", bus_timeout=0.3)
async def test_history_pages_need_no_broker_while_snapshots_do(
    http_client: AsyncHTTPClient, base_url: str, world: World, history: list[str]
) -> None:
    status, older = await get(http_client, base_url, world, "&before=mine-3&limit=5")
    assert (status, ids(older)) == (200, ["mine-1", "mine-2"])
    status, snapshot = await get(http_client, base_url, world, "&limit=5")
    assert (status, snapshot["error"]) == (503, "bus_unavailable")


def batch(user_id: int, strategy_id: int, created: int) -> OrderBatchEvent:
    summary = BatchSummary(order_type="LIMIT", created=created, cancelled=0)
    return OrderBatchEvent(summaries=(summary,), strategy_id=strategy_id, user_id=user_id, timestamp=utc_now())


async def latest(client: AsyncHTTPClient, base_url: str, world: World) -> Any:
    response = await client.fetch(f"{base_url}/api/batches/latest?strategy_id=1", headers=world.users["u10"].bearer)
    return json.loads(response.body)


async def publish(publisher: Publisher, broker: BrokerThread, events: list[OrderEvent | OrderBatchEvent]) -> None:
    assert broker.broker is not None
    target = broker.broker.stats.published + len(events)
    for event in events:
        publisher.publish(event)
    await async_wait_until(lambda: broker.broker is not None and broker.broker.stats.published == target, what="events sequenced")


@pytest.mark.gen_test
async def test_latest_batch_is_the_newest_one_the_brokers_history_still_holds(
    http_client: AsyncHTTPClient, base_url: str, world: World, publisher: Publisher, broker: BrokerThread
) -> None:
    assert await latest(http_client, base_url, world) == {"batch": None, "event_id": None}
    # seq 1 a batch, then 59 orders, a second batch at seq 61 (another key's in between), then 89 orders:
    # the history (100 per key) has lost the first and keeps the second 90 events back.
    await publish(publisher, broker, [batch(10, 1, 1), *(order(10, 1, f"a{n}") for n in range(59))])
    await publish(publisher, broker, [batch(11, 1, 9), batch(10, 1, 2), *(order(10, 1, f"b{n}") for n in range(89))])
    found = await latest(http_client, base_url, world)
    assert found["event_id"] == f"{broker.epoch}-61"
    assert found["batch"]["summaries"] == [{"order_type": "LIMIT", "created": 2, "cancelled": 0}]
    assert "kind" not in found["batch"] and found["batch"]["user_id"] == 10

    await publish(publisher, broker, [order(10, 1, f"c{n}") for n in range(15)])  # now 105 back: evicted
    assert await latest(http_client, base_url, world) == {"batch": None, "event_id": None}
