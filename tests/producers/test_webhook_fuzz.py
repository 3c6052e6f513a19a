"""The webhook fuzzed: generated hostile signals, bodies and requests against the server its process runs.

Each example is one request on a new connection to producers.webhook.make_server
(the demo database, a real PULL for the wake-ups); tests/hostile.py says what
every answer must be. Cost: ~5 s for these tests on this machine (one worker).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import zmq
from hypothesis import given
from hypothesis import strategies as st
from tornado.ioloop import IOLoop

from bus.publisher import Publisher
from producers.intake import Intake
from producers.webhook import WebhookConfig, make_server
from producers.webhook_service import WebhookService
from tests.hostile import (
    HOSTILE_SETTINGS,
    Answer,
    Pairs,
    RawJson,
    broken_bodies,
    changes_of,
    check_answer,
    exchange,
    json_numbers,
    json_values,
    mutated,
    nested,
    raw_request,
    render,
    trap_number_text,
    url_pieces,
    watched_log,
)
from tests.hostile_json import hostile_json_bodies
from tests.ports import listen_on_free_port
from tests.producers.conftest import WakeSink, World
from web.bodies import MAX_BODY
from web.ratelimit import RateLimiter

# CONTRACT section 5: every answer of POST /api/webhook (503 only when the database is down: never here).
WEBHOOK_STATUSES = {200, 400, 401, 404, 409, 413, 415, 429}
FIELDS = ["group_name", "token", "symbol", "side", "order_type", "price", "stop_price", "qty_per", "id", "orders"]
ORDER_TYPES = ["MARKET", "LIMIT", "STOP_MARKET", "STOP_LIMIT", "CANCEL_ALL_ORDER"]


@pytest.fixture
def webhook(world: World, wake_sink: WakeSink, zctx: zmq.Context[Any], io_loop: IOLoop) -> Iterator[int]:
    """The port of the webhook's server (make_server, as its process runs it) on the demo world."""
    executor = ThreadPoolExecutor(2)
    publisher = Publisher(wake_sink.endpoint, context=zctx, send_timeout_ms=0, linger_ms=0)
    service = WebhookService(Intake(world.sessions), publisher, executor, RateLimiter(1000.0))
    server = make_server(service, WebhookConfig())
    yield listen_on_free_port(server)
    server.stop()
    io_loop.run_sync(server.close_all_connections)
    publisher.close()
    executor.shutdown(wait=True)


def ask(io_loop: IOLoop, port: int, request: bytes) -> Answer:
    answer: Answer = io_loop.run_sync(lambda: exchange(port, request))
    return answer


def post(io_loop: IOLoop, port: int, body: bytes, content_type: bytes = b"application/json") -> Answer:
    return ask(io_loop, port, raw_request("POST", b"/api/webhook", [(b"Content-Type", content_type)], body))


def still_serving(io_loop: IOLoop, port: int) -> None:
    assert ask(io_loop, port, raw_request("GET", b"/livez")).status == 200


def signal(world: World, **fields: Any) -> dict[str, Any]:
    """The contract's example signal of btc-trend, with `fields` replaced."""
    base = {"group_name": "btc-trend", "token": world.tokens["btc-trend"], "symbol": "BTC/USDT", "side": "buy",
            "order_type": "LIMIT", "price": "90000", "qty_per": 5}
    return {**base, **fields}


field_values = st.one_of(json_values, trap_number_text, json_numbers, st.sampled_from(ORDER_TYPES))
mutations = changes_of(FIELDS, field_values)


@HOSTILE_SETTINGS
@given(changes=mutations, batch=st.booleans(), order_type=st.sampled_from(ORDER_TYPES))
def test_hostile_signals_are_answered_as_the_contract_says_and_cost_little(
    io_loop: IOLoop, webhook: int, world: World, changes: list[tuple[str, str, Any]], batch: bool, order_type: str
) -> None:
    base = signal(world, order_type=order_type, stop_price="91000")
    if batch:
        order = {k: base.pop(k) for k in ("symbol", "side", "order_type", "price", "stop_price", "qty_per")}
        document = Pairs((*base.items(), ("orders", [mutated(order, changes), order])))
    else:
        document = mutated(base, changes)
    with watched_log() as log:
        answer = post(io_loop, webhook, render(document).encode("utf-8", "surrogatepass"))
        check_answer(answer, WEBHOOK_STATUSES, field_on_400=True)
        if not changes:
            assert answer.status == 200, answer.body
        log.check()
    still_serving(io_loop, webhook)


@HOSTILE_SETTINGS
@given(price=st.one_of(json_numbers, trap_number_text), qty_per=st.one_of(json_numbers, trap_number_text),
       symbol=st.sampled_from(["BTC/USDT", "FOO/BAR"]))
def test_trap_numbers_in_every_amount_are_a_400_or_accepted(
    io_loop: IOLoop, webhook: int, world: World, price: Any, qty_per: Any, symbol: str
) -> None:
    body = render(signal(world, symbol=symbol, order_type="STOP_LIMIT", price=price, stop_price=price, qty_per=qty_per))
    with watched_log() as log:
        answer = post(io_loop, webhook, body.encode())
        check_answer(answer, {200, 400}, field_on_400=True)
        if answer.status == 400:
            assert answer.json()["field"] in {"body", "price", "stop_price", "qty_per"}, answer.json()
        log.check()
    still_serving(io_loop, webhook)


content_types = st.one_of(
    st.sampled_from([b"application/json", b"application/json; charset=utf-8", b"application/json; charset=latin-1",
                     b"APPLICATION/JSON", b"application/vnd.api+json", b"text/plain", b"", b"application/x-www-form-urlencoded",
                     b"multipart/form-data; boundary=x", b"application/json\x0b", b"application/" + b"j" * 5000]),
    st.binary(max_size=30).filter(lambda b: b"\r" not in b and b"\n" not in b),
)


@HOSTILE_SETTINGS
@given(body=st.one_of(broken_bodies, st.builds(lambda d: nested(d).encode(), st.integers(30, 40))), content_type=content_types)
def test_broken_bodies_and_content_types_are_400_413_or_415(
    io_loop: IOLoop, webhook: int, body: bytes, content_type: bytes
) -> None:
    with watched_log() as log:
        answer = post(io_loop, webhook, body, content_type)
        check_answer(answer, {400, 413, 415}, field_on_400=True, bad_http=True)
        log.check()
    still_serving(io_loop, webhook)


@HOSTILE_SETTINGS
@given(body=hostile_json_bodies())
def test_64_kib_of_the_costliest_json_is_400_or_413_and_quiet(io_loop: IOLoop, webhook: int, body: bytes) -> None:
    """Wide, deep, many keys, numbers, escapes (tests/hostile.py), a fault or none: never a signal, always refused."""
    with watched_log() as log:
        answer = post(io_loop, webhook, body)
        check_answer(answer, {400, 413}, field_on_400=True)
        assert (answer.status == 413) == (len(body) > MAX_BODY), answer
        if answer.status == 400:
            assert answer.json()["error"] in {"invalid_json", "invalid_request"}, answer.json()
        log.check()
    still_serving(io_loop, webhook)


methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "FOO", "TRACE", "CONNECT"])
paths = st.one_of(
    st.sampled_from([b"/api/webhook", b"/api/webhook/", b"/healthz", b"/livez", b"/metrics", b"/", b"/api"]),
    st.lists(url_pieces, min_size=1, max_size=3).map(lambda parts: b"/" + b"/".join(parts)),
)
headers = st.lists(
    st.tuples(
        st.sampled_from([b"Content-Type", b"Content-Encoding", b"Transfer-Encoding", b"Expect", b"X-Forwarded-For",
                         b"Cookie", b"Authorization", b"Accept-Encoding", b"X-Anything"]),
        st.sampled_from([b"gzip", b"deflate", b"identity", b"100-continue", b"application/json", b"a" * 8000, b"",
                         b"\xff\xfe", b"1.2.3.4, ::1", b"multipart/form-data; boundary=x", b"text/plain"]),
    ),
    max_size=4,
)


@HOSTILE_SETTINGS
@given(method=methods, path=paths, query=st.lists(url_pieces, max_size=3), extra=headers,
       body=st.one_of(st.just(b""), broken_bodies))
def test_any_method_path_query_and_header_gets_a_json_4xx_or_its_answer(
    io_loop: IOLoop, webhook: int, method: str, path: bytes, query: list[bytes], extra: list[tuple[bytes, bytes]], body: bytes
) -> None:
    target = path + (b"?" + b"&".join(query) if query else b"")
    with watched_log() as log:
        answer = ask(io_loop, webhook, raw_request(method, target, extra, body))
        check_answer(answer, {200, 400, 404, 405, 413, 415}, bad_http=True)
        log.check()
    still_serving(io_loop, webhook)


# Exponents far beyond a double and beyond Decimal's own context: written out (format "f") or quantized they would
# take gigabytes and minutes. Each must be compared as it is and refused at once (CONTRACT section 5: 400 naming the field).
EXPONENT_TRAPS = [RawJson("0.1e-99999"), RawJson("1e-999999999"), "1e999999999", "9e+999999999999999999", "0.1e-99999",
                  "1e-999999999", "-1e999999999", "1e+999999"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["price", "stop_price", "qty_per"])
def test_exponent_traps_in_every_amount_are_a_400_naming_it_without_expanding_them(
    io_loop: IOLoop, webhook: int, world: World, name: str
) -> None:
    for trap in EXPONENT_TRAPS:
        fields = {"order_type": "STOP_LIMIT", "stop_price": "91000", name: trap}
        answer = post(io_loop, webhook, render(signal(world, **fields)).encode())
        check_answer(answer, {400}, field_on_400=True)
        assert answer.json()["field"] == name, (trap, answer.json())
