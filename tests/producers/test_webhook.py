"""The webhook over real HTTP, with the demo database and a real PULL socket for its wake-ups."""

from __future__ import annotations

import hmac
import json
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import zmq
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.web import Application

from bus.publisher import Publisher
from producers.commands import WAKE, SignalCommand, decode_body
from producers.intake import IDEMPOTENCY_WINDOW, Intake
from producers.signals import MAX_BATCH
from producers.webhook import MAX_BODY, WebhookService, make_app
from store import actions
from store.db import make_engine, make_session_factory
from store.handoff import InboxCommand
from store.models import MarketPrice, Order, Signal
from tests.producers.conftest import WakeSink, World
from web.ratelimit import RateLimiter

EXAMPLE = {"group_name": "btc-trend", "symbol": "BTC/USDT", "side": "buy", "order_type": "LIMIT", "price": "90000", "qty_per": 5}


class Clock:
    """A settable clock for the idempotency window."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 6, 9, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rate_limit() -> float:
    return 1000.0


@pytest.fixture
def wakes_publisher(wake_sink: WakeSink, zctx: zmq.Context[Any]) -> Iterator[Publisher]:
    publisher = Publisher(wake_sink.endpoint, context=zctx, send_timeout_ms=0, linger_ms=0)
    yield publisher
    publisher.close()


@pytest.fixture
def sessions(world: World) -> sessionmaker[Session]:
    return world.sessions


@pytest.fixture
def service(sessions: sessionmaker[Session], wakes_publisher: Publisher, clock: Clock, rate_limit: float) -> Iterator[WebhookService]:
    executor = ThreadPoolExecutor(2)
    yield WebhookService(Intake(sessions, clock), wakes_publisher, executor, RateLimiter(rate_limit))
    executor.shutdown(wait=True)


@pytest.fixture
def app(service: WebhookService) -> Application:
    return make_app(service)


def inbox_commands(world: World) -> list[tuple[SignalCommand, int | None]]:
    """What the webhook stored for the order handler: (command, Signal id), in arrival order."""
    with world.sessions() as session:
        rows = session.scalars(select(InboxCommand).order_by(InboxCommand.id)).all()
        commands = [(decode_body(row.kind, row.body), row.signal_id) for row in rows]
    assert all(isinstance(command, SignalCommand) for command, _ in commands)
    return commands  # type: ignore[return-value]


def signal(world: World, group: str = "btc-trend", **fields: Any) -> dict[str, Any]:
    """The contract's example webhook with the group's real token, fields replaced."""
    return {**EXAMPLE, "group_name": group, "token": world.tokens[group], **fields}


async def post(
    http_client: AsyncHTTPClient, base_url: str, body: Any, content_type: str | None = "application/json"
) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {} if content_type is None else {"Content-Type": content_type}
    response: HTTPResponse = await http_client.fetch(
        base_url + "/api/webhook", method="POST", body=raw, headers=headers, raise_error=False
    )
    return response.code, json.loads(response.body)


# (name, body or a function of the world giving it, content type, status, error code, field)
def _bad(**fields: Any) -> Any:
    return lambda world: signal(world, **fields)


def _without(name: str) -> Any:
    return lambda world: {k: v for k, v in signal(world).items() if k != name}


def _raw(template: str) -> Any:
    """A body written by hand (duplicate keys, deep nesting, escapes json.dumps would not write); $TOKEN is btc-trend's."""
    return lambda world: template.replace("$TOKEN", world.tokens["btc-trend"]).encode()


_ORDER = '"symbol": "BTC/USDT", "side": "buy", "order_type": "LIMIT", "price": "90000", "qty_per": 5'
_SIGNAL = '"group_name": "btc-trend", "token": "$TOKEN", ' + _ORDER


def _batch(*orders: dict[str, Any]) -> Any:
    base = {k: v for k, v in EXAMPLE.items() if k != "group_name"}
    return lambda world: {"group_name": "btc-trend", "token": world.tokens["btc-trend"], "orders": [{**base, **o} for o in orders]}


BAD_WEBHOOKS = [
    ("text/plain", _bad(), "text/plain", 415, "unsupported_media_type", None),
    ("no content type", _bad(), None, 415, "unsupported_media_type", None),
    ("broken JSON", b'{"group_name": ', "application/json", 400, "invalid_json", "body"),
    ("NaN literal", b'{"group_name": "btc-trend", "price": NaN}', "application/json", 400, "invalid_json", "body"),
    ("not UTF-8", b'{"group_name": "\xff"}', "application/json", 400, "invalid_json", "body"),
    ("array body", [EXAMPLE], "application/json", 400, "invalid_request", "body"),
    ("string body", "hello", "application/json", 400, "invalid_request", "body"),
    ("no group_name", _without("group_name"), "application/json", 400, "invalid_request", "group_name"),
    ("group_name number", _bad(group_name=7), "application/json", 400, "invalid_request", "group_name"),
    ("empty group_name", _bad(group_name=""), "application/json", 400, "invalid_request", "group_name"),
    ("no token", _without("token"), "application/json", 400, "invalid_request", "token"),
    ("token number", _bad(token=123), "application/json", 400, "invalid_request", "token"),
    ("id too long", _bad(id="x" * 65), "application/json", 400, "invalid_request", "id"),
    ("id number", _bad(id=5), "application/json", 400, "invalid_request", "id"),
    ("orders not a list", _bad(orders={"a": 1}), "application/json", 400, "invalid_request", "orders"),
    ("orders empty", _bad(orders=[]), "application/json", 400, "invalid_request", "orders"),
    ("orders too many", _batch(*[{}] * (MAX_BATCH + 1)), "application/json", 400, "invalid_request", "orders"),
    ("orders item not object", _bad(orders=[EXAMPLE, "x"]), "application/json", 400, "invalid_request", "orders[1]"),
    ("unknown group", _bad(group_name="no-such-group"), "application/json", 404, "unknown_group", None),
    ("unknown group beats bad token and fields", _bad(group_name="nope", token="x", price=-1), "application/json", 404, "unknown_group", None),
    ("wrong token", _bad(token="not-the-token"), "application/json", 401, "bad_token", None),
    ("another group's token", lambda w: signal(w, token=w.tokens["eth-swing"]), "application/json", 401, "bad_token", None),
    ("wrong token beats bad fields", _bad(token="nope", side="up"), "application/json", 401, "bad_token", None),
    ("no order_type", _without("order_type"), "application/json", 400, "invalid_request", "order_type"),
    ("order_type lower case", _bad(order_type="limit"), "application/json", 400, "invalid_request", "order_type"),
    ("order_type unknown", _bad(order_type="ICEBERG"), "application/json", 400, "invalid_request", "order_type"),
    ("no symbol", _without("symbol"), "application/json", 400, "invalid_request", "symbol"),
    ("symbol without slash", _bad(symbol="BTCUSDT"), "application/json", 400, "invalid_request", "symbol"),
    ("symbol with dash", _bad(symbol="BTC/US-DT"), "application/json", 400, "invalid_request", "symbol"),
    ("symbol trailing newline", _bad(symbol="BTC/USDT\n"), "application/json", 400, "invalid_request", "symbol"),
    ("symbol not ASCII", _bad(symbol="ВТС/USDT"), "application/json", 400, "invalid_request", "symbol"),
    ("symbol two slashes", _bad(symbol="BTC/USDT/X"), "application/json", 400, "invalid_request", "symbol"),
    ("no side", _without("side"), "application/json", 400, "invalid_request", "side"),
    ("side long", _bad(side="long"), "application/json", 400, "invalid_request", "side"),
    ("side number", _bad(side=1), "application/json", 400, "invalid_request", "side"),
    ("LIMIT without price", _without("price"), "application/json", 400, "invalid_request", "price"),
    ("price words", _bad(price="abc"), "application/json", 400, "invalid_request", "price"),
    ("price negative", _bad(price=-1), "application/json", 400, "invalid_request", "price"),
    ("price zero string", _bad(price="0"), "application/json", 400, "invalid_request", "price"),
    ("price overflows", _bad(price="1e999"), "application/json", 400, "invalid_request", "price"),
    ("price boolean", _bad(price=True), "application/json", 400, "invalid_request", "price"),
    ("price NaN string", _bad(price="NaN"), "application/json", 400, "invalid_request", "price"),
    ("price Infinity string", _bad(price="Infinity"), "application/json", 400, "invalid_request", "price"),
    ("price list", _bad(price=[1]), "application/json", 400, "invalid_request", "price"),
    ("no qty_per", _without("qty_per"), "application/json", 400, "invalid_request", "qty_per"),
    ("qty_per zero", _bad(qty_per="0"), "application/json", 400, "invalid_request", "qty_per"),
    ("STOP_MARKET without stop_price", _bad(order_type="STOP_MARKET"), "application/json", 400, "invalid_request", "stop_price"),
    ("STOP_LIMIT without price", lambda w: {**_without("price")(w), "order_type": "STOP_LIMIT", "stop_price": 1}, "application/json", 400, "invalid_request", "price"),
    ("STOP_LIMIT bad stop_price", _bad(order_type="STOP_LIMIT", stop_price="-5"), "application/json", 400, "invalid_request", "stop_price"),
    ("CANCEL_ALL without symbol", lambda w: {**_without("symbol")(w), "order_type": "CANCEL_ALL_ORDER"}, "application/json", 400, "invalid_request", "symbol"),
    ("MARKET without any known price", _bad(order_type="MARKET", price=None), "application/json", 400, "invalid_request", "price"),
    ("batch names the bad order", _batch({}, {}, {"price": "-1"}), "application/json", 400, "invalid_request", "orders[2].price"),
    ("batch MARKET without price", _batch({}, {"order_type": "MARKET", "price": None}), "application/json", 400, "invalid_request", "orders[1].price"),
    # Ambiguous JSON: a proxy in front may read the first of two keys, a parser the last.
    ("token twice, wrong then right", _raw('{"group_name": "btc-trend", "token": "wrong", "token": "$TOKEN", ' + _ORDER + '}'), "application/json", 400, "invalid_json", "body"),
    ("side twice", _raw('{' + _SIGNAL + ', "side": "sell"}'), "application/json", 400, "invalid_json", "body"),
    ("duplicate key in a batch order", _raw('{"group_name": "btc-trend", "token": "$TOKEN", "orders": [{' + _ORDER + ', "qty_per": 50}]}'), "application/json", 400, "invalid_json", "body"),
    ("duplicate key deep in an unknown field", _raw('{' + _SIGNAL + ', "meta": {"a": [{"b": 1, "b": 2}]}}'), "application/json", 400, "invalid_json", "body"),
    # Every number within its range (CONTRACT section 5).
    ("qty_per 1e300", _bad(qty_per=1e300), "application/json", 400, "invalid_request", "qty_per"),
    ("qty_per over 100 percent", _bad(qty_per="100.5"), "application/json", 400, "invalid_request", "qty_per"),
    ("qty_per 1e-300", _bad(qty_per=1e-300), "application/json", 400, "invalid_request", "qty_per"),
    # Kept exact, so its written-out digits go into the inbox row and must read back (the handler read up to 64).
    ("qty_per of 72 digits", _raw('{' + _SIGNAL.replace('"qty_per": 5', '"qty_per": 0.' + "1" * 70) + '}'), "application/json", 400, "invalid_request", "qty_per"),
    ("qty_per of 62 characters, 65 written out", _raw('{' + _SIGNAL.replace('"qty_per": 5', '"qty_per": 1.' + "0" * 57 + "e-6") + '}'), "application/json", 400, "invalid_request", "qty_per"),
    ("a number past Decimal's exponent", _raw('{' + _SIGNAL + ', "extra": 1e-9999999999999999999}'), "application/json", 400, "invalid_json", "body"),
    ("price 1e300", _bad(price=1e300), "application/json", 400, "invalid_request", "price"),
    ("price string 1e13", _bad(price="1e13"), "application/json", 400, "invalid_request", "price"),
    ("price 1e-300", _bad(price="1e-300"), "application/json", 400, "invalid_request", "price"),
    ("stop_price 1e300", _bad(order_type="STOP_LIMIT", stop_price=1e300), "application/json", 400, "invalid_request", "stop_price"),
    ("batch qty_per 1e300", _batch({}, {"qty_per": 1e300}), "application/json", 400, "invalid_request", "orders[1].qty_per"),
    ("1e999 in an unknown field", _raw('{' + _SIGNAL + ', "extra": 1e999}'), "application/json", 400, "invalid_json", "body"),
    ("integer beyond 64 bits in an unknown field", _raw('{' + _SIGNAL + ', "extra": ' + "9" * 30 + '}'), "application/json", 400, "invalid_json", "body"),
    # Any depth is a 400, in a known field or not.
    ("nested 1,000 deep in an unknown field", _raw('{' + _SIGNAL + ', "extra": ' + "[" * 1000 + "]" * 1000 + '}'), "application/json", 400, "invalid_json", "body"),
    ("nested 20,000 deep in an unknown field", _raw('{' + _SIGNAL + ', "extra": ' + "[" * 20000 + "]" * 20000 + '}'), "application/json", 400, "invalid_json", "body"),
    ("nested 1,000 deep in price", _raw('{"group_name": "btc-trend", "token": "$TOKEN", "price": ' + '{"a": ' * 1000 + "1" + "}" * 1000 + '}'), "application/json", 400, "invalid_json", "body"),
    ("nested 20,000 deep as the body", _raw("[" * 20000 + "]" * 20000), "application/json", 400, "invalid_json", "body"),
    ("nested 33 deep in an unknown field", _raw('{' + _SIGNAL + ', "extra": ' + "[" * 32 + "]" * 32 + '}'), "application/json", 400, "invalid_json", "body"),
    # Any string is a 400, never a 500 (a lone surrogate cannot be hashed or stored, nor U+0000 in PostgreSQL).
    ("lone surrogate in group_name", _raw('{"group_name": "\\ud800", "token": "$TOKEN", ' + _ORDER + '}'), "application/json", 400, "invalid_json", "body"),
    ("lone surrogate in token", _raw('{"group_name": "btc-trend", "token": "$TOKEN\\ud800", ' + _ORDER + '}'), "application/json", 400, "invalid_json", "body"),
    ("lone surrogate in id", _raw('{' + _SIGNAL + ', "id": "\\udc00"}'), "application/json", 400, "invalid_json", "body"),
    ("lone surrogate in an unknown field", _raw('{' + _SIGNAL + ', "note": "a\\ud800b"}'), "application/json", 400, "invalid_json", "body"),
    ("lone surrogate in a key", _raw('{' + _SIGNAL + ', "\\udfff": 1}'), "application/json", 400, "invalid_json", "body"),
    ("NUL in group_name", _raw('{"group_name": "btc-trend\\u0000", "token": "$TOKEN", ' + _ORDER + '}'), "application/json", 400, "invalid_json", "body"),
    ("NUL in id", _raw('{' + _SIGNAL + ', "id": "a\\u0000b"}'), "application/json", 400, "invalid_json", "body"),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error", "field"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_WEBHOOKS],
)
@pytest.mark.gen_test
async def test_bad_webhook_is_refused_with_its_status_and_field(
    http_client: AsyncHTTPClient, base_url: str, world: World, wake_sink: WakeSink,
    body: Any, content_type: str | None, status: int, error: str, field: str | None,
) -> None:
    document = body(world) if callable(body) else body
    if isinstance(document, dict):
        document = {k: v for k, v in document.items() if v is not None}
    code, reply = await post(http_client, base_url, document, content_type)
    assert (code, reply["error"]) == (status, error)
    assert reply.get("field") == field
    assert isinstance(reply["message"], str) and reply["message"]
    if field is not None:
        assert reply["message"].startswith(field.split("[")[0])
    with world.sessions() as session:
        assert session.scalars(select(Signal)).first() is None
    assert inbox_commands(world) == [] and wake_sink.pending() == []


@pytest.mark.gen_test
async def test_a_duplicate_wakes_the_order_handler_again(
    http_client: AsyncHTTPClient, base_url: str, world: World, wake_sink: WakeSink
) -> None:
    # The first one's wake-up may never have left: a webhook killed between its commit and its send.
    assert (await post(http_client, base_url, signal(world, id="tv-1")))[0] == 200
    assert wake_sink.receive() == list(WAKE)
    again = await post(http_client, base_url, signal(world, id="tv-1"))
    assert again == (200, {"status": "accepted", "signals": 1, "duplicate": True})
    assert wake_sink.receive() == list(WAKE)
    assert len(inbox_commands(world)) == 1


@pytest.mark.gen_test
async def test_contract_example_is_stored_in_the_inbox_with_its_signal_and_wakes_the_order_handler(
    http_client: AsyncHTTPClient, base_url: str, world: World, wake_sink: WakeSink
) -> None:
    code, reply = await post(http_client, base_url, signal(world, extra_field="ignored"))
    assert (code, reply) == (200, {"status": "accepted", "signals": 1})
    assert wake_sink.receive() == list(WAKE)
    ((command, signal_id),) = inbox_commands(world)
    assert (command.strategy_id, command.group_name, command.is_batch) == (world.strategy_ids["btc-trend"], "btc-trend", False)
    (order,) = command.orders
    assert (order.order_type, order.symbol, order.side, order.price, order.qty_per) == ("LIMIT", "BTC/USDT", "BUY", 90000.0, 5.0)
    assert command.signal_id == signal_id is not None
    with world.sessions() as session:
        stored = session.get(Signal, signal_id)
        assert stored is not None and stored.strategy_id == world.strategy_ids["btc-trend"]
        assert "token" not in json.loads(stored.payload)


# (name, body, the order's (price, stop_price, qty_per) in the command): the edges of what is accepted.
GOOD_EDGES = [
    ("qty_per 100 percent", _bad(qty_per=100), (90000.0, None, 100.0)),
    ("qty_per 1e-6 percent", _bad(qty_per="0.000001"), (90000.0, None, Decimal("0.000001"))),
    # A JSON number is read as its decimal digits, never through a double (0.1 != Decimal(0.1)):
    ("qty_per the JSON number 0.1", _bad(qty_per=0.1), (90000.0, None, Decimal("0.1"))),
    ("price the JSON number 90000.07", _bad(price=90000.07), (Decimal("90000.07"), None, 5.0)),
    ("price 1e12 and stop_price 1e-12", _bad(order_type="STOP_LIMIT", symbol="NEW/USDT", price="1e12", stop_price=1e-12), (1e12, Decimal("1e-12"), 5.0)),
    ("an emoji as an escaped surrogate pair", _raw('{' + _SIGNAL + ', "note": "\\ud83d\\ude00"}'), (90000.0, None, 5.0)),
    ("nested 32 deep in an unknown field", _raw('{' + _SIGNAL + ', "extra": ' + "[" * 31 + "]" * 31 + '}'), (90000.0, None, 5.0)),
    ("integer 2^63 - 1 in an unknown field", _raw('{' + _SIGNAL + f', "extra": {2**63 - 1}}}'), (90000.0, None, 5.0)),
]


@pytest.mark.parametrize(("body", "expected"), [pytest.param(*case[1:], id=case[0]) for case in GOOD_EDGES])
@pytest.mark.gen_test
async def test_numbers_at_their_bounds_and_any_unicode_text_are_accepted(
    http_client: AsyncHTTPClient, base_url: str, world: World,
    body: Any, expected: tuple[float | None, float | None, float],
) -> None:
    code, reply = await post(http_client, base_url, body(world))
    assert (code, reply) == (200, {"status": "accepted", "signals": 1})
    ((command, _),) = inbox_commands(world)
    (order,) = command.orders
    assert (order.price, order.stop_price, order.qty_per) == expected
    assert all(value is None or type(value) is Decimal for value in (order.price, order.stop_price, order.qty_per))


@pytest.mark.gen_test
async def test_numeric_strings_any_case_side_and_lower_case_symbol_are_normalised(
    http_client: AsyncHTTPClient, base_url: str, world: World
) -> None:
    body = signal(world, side="SeLl", symbol="eth/usdt", order_type="STOP_LIMIT", price="3000.5", stop_price="2990", qty_per="2.5")
    code, _ = await post(http_client, base_url, body, "application/json; charset=utf-8")
    assert code == 200
    ((command, _),) = inbox_commands(world)
    (order,) = command.orders
    assert (order.side, order.symbol, order.price, order.stop_price, order.qty_per) == ("SELL", "ETH/USDT", 3000.5, 2990.0, 2.5)


@pytest.mark.gen_test
async def test_batch_counts_every_order_and_keeps_list_order(
    http_client: AsyncHTTPClient, base_url: str, world: World
) -> None:
    body = _batch({"price": "1"}, {"order_type": "CANCEL_ALL_ORDER"}, {"price": "3"})(world)
    code, reply = await post(http_client, base_url, body)
    assert (code, reply) == (200, {"status": "accepted", "signals": 3})
    ((command, _),) = inbox_commands(world)
    assert command.is_batch
    assert [o.order_type for o in command.orders] == ["LIMIT", "CANCEL_ALL_ORDER", "LIMIT"]
    assert [o.price for o in command.orders] == [1.0, None, 3.0]


@pytest.mark.gen_test
async def test_same_id_within_ten_minutes_is_acknowledged_without_new_orders(
    http_client: AsyncHTTPClient, base_url: str, world: World, clock: Clock
) -> None:
    first = await post(http_client, base_url, signal(world, id="tv-1"))
    clock.now += IDEMPOTENCY_WINDOW - timedelta(seconds=1)
    again = await post(http_client, base_url, signal(world, id="tv-1"))
    assert first == (200, {"status": "accepted", "signals": 1})
    assert again == (200, {"status": "accepted", "signals": 1, "duplicate": True})
    other_group = await post(http_client, base_url, signal(world, "eth-swing", id="tv-1"))
    assert other_group == (200, {"status": "accepted", "signals": 1})
    assert [c.group_name for c, _ in inbox_commands(world)] == ["btc-trend", "eth-swing"]
    clock.now += timedelta(seconds=2)
    later = await post(http_client, base_url, signal(world, id="tv-1", price="91000"))
    assert later == (200, {"status": "accepted", "signals": 1})
    commands = inbox_commands(world)
    assert [(c.group_name, c.orders[0].price) for c, _ in commands] == [
        ("btc-trend", 90000.0), ("eth-swing", 90000.0), ("btc-trend", 91000.0)
    ]
    assert commands[2][1] == commands[0][1]  # the old Signal row, with a new command
    with world.sessions() as session:
        assert len(session.scalars(select(Signal)).all()) == 2


@pytest.mark.gen_test
async def test_market_order_without_price_is_accepted_once_a_fill_or_a_tick_is_known(
    http_client: AsyncHTTPClient, base_url: str, world: World
) -> None:
    with world.sessions() as session:
        session.add(Order(
            order_id="paper-1", account_id=world.account_ids["alice"], strategy_id=world.strategy_ids["btc-trend"],
            user_id=world.user_ids["alice"], symbol="BTC/USDT", side="BUY", order_type="MARKET", quantity=Decimal(1),
            status="FILLED", filled_quantity=Decimal(1), average_price=Decimal(90000),
        ))
        session.commit()
    body = {k: v for k, v in signal(world, order_type="MARKET").items() if k != "price"}
    assert (await post(http_client, base_url, body))[0] == 200
    assert inbox_commands(world)[0][0].orders[0].price is None
    eth = {**body, "symbol": "ETH/USDT"}
    assert (await post(http_client, base_url, eth))[0] == 400
    with world.sessions() as session:
        session.add(MarketPrice(symbol="ETH/USDT", price=Decimal(3000)))  # a tick the order handler handled
        session.commit()
    assert (await post(http_client, base_url, eth))[0] == 200


@pytest.mark.gen_test
async def test_inactive_strategy_is_409_after_group_and_token_checks(
    http_client: AsyncHTTPClient, base_url: str, world: World
) -> None:
    with world.sessions() as session:
        actions.deactivate(session, None, world.strategy_ids["sol-scalp"])
    body = signal(world, "sol-scalp", symbol="SOL/USDT", price="-1")
    code, reply = await post(http_client, base_url, body)
    assert (code, reply["error"]) == (409, "strategy_inactive")
    assert (await post(http_client, base_url, {**body, "token": "wrong"}))[0] == 401


@pytest.mark.gen_test
async def test_token_is_compared_in_constant_time(
    http_client: AsyncHTTPClient, base_url: str, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[Any, Any]] = []
    original = hmac.compare_digest

    def recording_compare(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording_compare)
    code, _ = await post(http_client, base_url, signal(world, token="guess"))
    assert code == 401
    assert len(compared) == 1 and len(compared[0][0]) == len(compared[0][1]) == 64  # sha256 hex digests


@pytest.mark.gen_test
async def test_body_over_64_kib_is_413_and_exactly_64_kib_is_read(
    http_client: AsyncHTTPClient, base_url: str, world: World
) -> None:
    base = json.dumps(signal(world, padding="")).encode()
    exact = base.replace(b'"padding": ""', b'"padding": "' + b"x" * (MAX_BODY - len(base)) + b'"')
    assert len(exact) == MAX_BODY
    assert (await post(http_client, base_url, exact))[0] == 200
    code, reply = await post(http_client, base_url, exact + b" ")
    assert (code, reply["error"]) == (413, "body_too_large")
    assert len(inbox_commands(world)) == 1


@pytest.mark.gen_test
async def test_other_methods_and_paths_answer_json_errors(http_client: AsyncHTTPClient, base_url: str) -> None:
    for path, method, status in (("/api/webhook", "GET", 405), ("/api/nothing", "GET", 404)):
        response = await http_client.fetch(base_url + path, method=method, raise_error=False)
        assert response.code == status
        assert set(json.loads(response.body)) == {"error", "message"}


class TestRateLimit:
    @pytest.fixture
    def rate_limit(self) -> float:
        return 0.2  # a burst of one request, then one every five seconds

    @pytest.mark.gen_test
    async def test_second_request_within_the_burst_is_429_for_that_token_only(
        self, http_client: AsyncHTTPClient, base_url: str, world: World
    ) -> None:
        assert (await post(http_client, base_url, signal(world)))[0] == 200
        refused = await http_client.fetch(
            base_url + "/api/webhook", method="POST", body=json.dumps(signal(world)), headers={"Content-Type": "application/json"},
            raise_error=False,
        )
        assert (refused.code, json.loads(refused.body)["error"]) == (429, "rate_limited")
        assert refused.headers["Retry-After"] == "5"  # one request per 5 s refills the bucket
        assert (await post(http_client, base_url, signal(world, "eth-swing")))[0] == 200


def test_rate_limiter_refills_at_its_rate_up_to_five_times_the_rate() -> None:
    limiter = RateLimiter(rate=2.0)
    assert [limiter.allow("t", now=0.0) for _ in range(11)] == [True] * 10 + [False]
    assert limiter.allow("t", now=0.5) and not limiter.allow("t", now=0.5)
    assert sum(limiter.allow("t", now=100.0) for _ in range(20)) == 10


class TestOrderHandlerDown:
    @pytest.fixture
    def wakes_publisher(self, zctx: zmq.Context[Any]) -> Iterator[Publisher]:
        # Nobody binds this endpoint and the queue holds one message: the next wake-up cannot queue.
        publisher = Publisher("tcp://127.0.0.1:1", context=zctx, send_timeout_ms=0, hwm=1, linger_ms=0)
        yield publisher
        publisher.close()

    @pytest.mark.gen_test
    async def test_signals_are_accepted_and_stored_though_no_wake_up_can_be_sent(
        self, http_client: AsyncHTTPClient, base_url: str, world: World, service: WebhookService
    ) -> None:
        replies = [await post(http_client, base_url, signal(world, id=f"s-{i}")) for i in range(5)]
        assert [code for code, _ in replies] == [200] * 5
        assert len(inbox_commands(world)) == 5 and service.wakes_dropped >= 3


class TestStoreDown:
    @pytest.fixture
    def sessions(self, world: World) -> Iterator[sessionmaker[Session]]:
        engine = make_engine(world.url)
        # After store.db's pragmas: a held lock fails a write in 50 ms instead of the 5 s busy timeout.
        event.listen(engine, "connect", lambda connection, _: connection.execute("PRAGMA busy_timeout=50"))
        yield make_session_factory(engine)
        engine.dispose()

    @pytest.mark.expect_log("signal not stored", "503 POST", "database down")
    @pytest.mark.gen_test
    async def test_a_database_that_cannot_store_the_signal_is_503_and_nothing_is_accepted(
        self, http_client: AsyncHTTPClient, base_url: str, world: World, wake_sink: WakeSink
    ) -> None:
        lock = sqlite3.connect(world.url.removeprefix("sqlite:///"))
        lock.execute("BEGIN EXCLUSIVE")
        try:
            code, reply = await post(http_client, base_url, signal(world, id="while-locked"))
        finally:
            lock.rollback()
            lock.close()
        assert (code, reply["error"]) == (503, "store_unavailable")
        assert wake_sink.pending() == []
        ready = await http_client.fetch(base_url + "/healthz", raise_error=False)
        assert (ready.code, json.loads(ready.body)) == (503, {"status": "unavailable", "database": "down"})
        assert await post(http_client, base_url, signal(world, id="while-locked")) == (200, {"status": "accepted", "signals": 1})
        assert len(inbox_commands(world)) == 1
        assert (await http_client.fetch(base_url + "/healthz")).code == 200  # the stored signal: up again


@pytest.mark.gen_test
async def test_liveness_and_readiness_answer_with_the_database_named(http_client: AsyncHTTPClient, base_url: str) -> None:
    ready = await http_client.fetch(base_url + "/healthz")
    alive = await http_client.fetch(base_url + "/livez")
    assert json.loads(ready.body) == {"status": "ok", "database": "up"}
    assert json.loads(alive.body) == {"status": "ok"}
    for path, answered in (("/healthz", ready), ("/livez", alive)):  # as a load balancer probes: HEAD
        head = await http_client.fetch(base_url + path, method="HEAD")
        assert (head.code, head.body) == (200, b""), path
        assert head.headers["Content-Length"] == answered.headers["Content-Length"], path


def _sample(text: str, name: str) -> float:
    """The value of one sample line `name{labels} value` of a /metrics answer (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.gen_test
async def test_metrics_count_signals_received_accepted_and_refused_by_reason(
    http_client: AsyncHTTPClient, base_url: str, world: World
) -> None:
    accepted = signal(world, id="metrics-1")
    assert (await post(http_client, base_url, accepted))[0] == 200
    assert (await post(http_client, base_url, accepted))[0] == 200  # a duplicate
    assert (await post(http_client, base_url, signal(world, token="wrong")))[0] == 401
    assert (await post(http_client, base_url, b"{", "application/json"))[0] == 400
    response = await http_client.fetch(base_url + "/metrics")
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.body.decode()
    expected = {
        "tradestream_webhook_signals_received_total": 4,
        'tradestream_webhook_signals_accepted_total{duplicate="false"}': 1,
        'tradestream_webhook_signals_accepted_total{duplicate="true"}': 1,
        'tradestream_webhook_signals_refused_total{reason="bad_token"}': 1,
        'tradestream_webhook_signals_refused_total{reason="invalid_json"}': 1,
        'tradestream_webhook_signals_refused_total{reason="rate_limited"}': 0,
    }
    assert {name: _sample(text, name) for name in expected} == expected
