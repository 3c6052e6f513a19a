"""The HTTP API of an in-process streamer: login, bearer tokens, every error row, snapshots, stats."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from bus import reasons
from bus.events import OrderEvent, PositionEvent
from bus.publisher import Publisher
from store.db import make_engine, make_session_factory
from store.models import Account, Strategy
from streamer.handlers import SESSION_REFUSED, TOKEN_REFUSED, UNAUTHORIZED, parse_id
from streamer.latency import BUCKETS_S
from streamer.services import Services
from tests.store.factories import add_order, add_position
from tests.streamer.conftest import World, order, url_of
from tests.streamer.test_stream import open_stream
from tests.waiting import async_wait_until

NOT_YOURS = {"error": "forbidden", "message": "No such strategy, or you may not see it."}


async def call(client: AsyncHTTPClient, url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None) -> HTTPResponse:
    raw = None if body is None else (body if isinstance(body, (bytes, str)) else json.dumps(body))
    return await client.fetch(url, method=method, body=raw, headers=headers, raise_error=False, allow_nonstandard_methods=True)


def body(response: HTTPResponse) -> Any:
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    return json.loads(response.body)


@pytest.mark.gen_test
async def test_login_sets_a_signed_httponly_lax_cookie_that_authenticates(http_client: AsyncHTTPClient, base_url: str, world: World) -> None:
    response = await call(http_client, base_url + "/api/login", "POST", {"username": "u10", "password": "u10-pw"})
    assert response.code == 200
    assert body(response) == {"id": 10, "username": "u10", "is_admin": False}
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    session = {"Cookie": cookie.split(";")[0]}
    strategies = body(await call(http_client, base_url + "/api/strategies", headers=session))["strategies"]
    assert [s["id"] for s in strategies] == [1, 4, 10, 11]
    assert set(strategies[0]) == {"id", "name", "group_name", "is_active", "owner_id"}
    logout = await call(http_client, base_url + "/api/logout", "POST", b"", headers=session)
    assert logout.code == 200 and "tradestream_session=;" in logout.headers["Set-Cookie"].replace('""', "")
    after = await call(http_client, base_url + "/api/strategies", headers=session)  # the old cookie, kept
    assert after.code == 401 and body(after) == {"error": "unauthorized", "message": SESSION_REFUSED}


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "credentials",
    [{"username": "u10", "password": "wrong"}, {"username": "nobody", "password": "u10-pw"}],
)
async def test_bad_credentials_are_401(http_client: AsyncHTTPClient, base_url: str, credentials: dict[str, str]) -> None:
    response = await call(http_client, base_url + "/api/login", "POST", credentials)
    assert response.code == 401 and body(response)["error"] == "unauthorized"
    assert "Set-Cookie" not in response.headers


@pytest.mark.gen_test
@pytest.mark.parametrize("raw", [b"not json", b"[1]", b'{"username": 1, "password": "x"}', b'{"username": "u10"}'])
async def test_malformed_login_bodies_are_400(http_client: AsyncHTTPClient, base_url: str, raw: bytes) -> None:
    response = await call(http_client, base_url + "/api/login", "POST", raw)
    assert response.code == 400 and body(response)["error"] == "invalid_request"


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, UNAUTHORIZED),
        ({"Authorization": "Bearer not-a-token"}, TOKEN_REFUSED),  # a token sent: it is the token that is wrong
        ({"Authorization": "Basic dTEwOnUxMC1wdw=="}, UNAUTHORIZED),
        ({"Authorization": "Bearer"}, UNAUTHORIZED),
        ({"Cookie": "tradestream_session=10"}, UNAUTHORIZED),  # not signed by this server: no session at all
        ({"Cookie": 'tradestream_session="2|1:0|10:1700000000|19:tradestream_session|4:MTA=|00"'}, UNAUTHORIZED),
    ],
)
async def test_unauthenticated_requests_are_401_everywhere(http_client: AsyncHTTPClient, base_url: str,
                                                           headers: dict[str, str], message: str) -> None:
    for path in ("/api/events/stream?strategy_id=1", "/api/strategies", "/api/orders?strategy_id=1",
                 "/api/positions?strategy_id=1", "/api/events/stats"):
        response = await call(http_client, base_url + path, headers=headers)
        assert response.code == 401, path
        assert body(response) == {"error": "unauthorized", "message": message}


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "query",
    ["", "?strategy_id=", "?strategy_id=0", "?strategy_id=01", "?strategy_id=%2B1", "?strategy_id=-1",
     "?strategy_id=1.0", "?strategy_id=%201", "?strategy_id=1%20", f"?strategy_id={2**63}",
     "?strategy_id=%D9%A1", "?strategy_id=%EF%BC%91", "?strategy_id=1&strategy_id=1", "?strategy_id=abc",
     "?strategy_id=1%00"],
)
async def test_invalid_strategy_ids_are_400(http_client: AsyncHTTPClient, base_url: str, world: World, query: str) -> None:
    for path in ("/api/events/stream", "/api/orders", "/api/positions"):
        response = await call(http_client, base_url + path + query, headers=world.users["u10"].bearer)
        assert response.code == 400, (path, query)
        assert body(response)["error"] == "invalid_request"


@pytest.mark.gen_test
async def test_403_is_the_same_for_not_yours_and_does_not_exist(http_client: AsyncHTTPClient, base_url: str, world: World) -> None:
    bearer = world.users["u10"].bearer
    for path in ("/api/events/stream", "/api/orders", "/api/positions"):
        for strategy_id in (2, 99, 2**63 - 1):
            response = await call(http_client, f"{base_url}{path}?strategy_id={strategy_id}", headers=bearer)
            assert (response.code, body(response)) == (403, NOT_YOURS), (path, strategy_id)


@pytest.mark.gen_test
async def test_inactive_strategy_stream_is_409_but_its_snapshot_is_readable(http_client: AsyncHTTPClient, base_url: str, world: World) -> None:
    bearer = world.users["root"].bearer
    response = await call(http_client, base_url + "/api/events/stream?strategy_id=3", headers=bearer)
    assert response.code == 409 and body(response)["error"] == "strategy_inactive"
    snapshot = await call(http_client, base_url + "/api/orders?strategy_id=3", headers=bearer)
    assert snapshot.code == 200


@pytest.mark.gen_test
async def test_snapshot_carries_the_brokers_head_as_last_event_id(
    http_client: AsyncHTTPClient, base_url: str, world: World, publisher: Publisher, broker: Any, services: Services
) -> None:
    bearer = world.users["u10"].bearer
    for n in range(3):
        publisher.publish(order(10, 1, f"o{n}"))
    publisher.publish(order(11, 1, "other"))

    await async_wait_until(lambda: broker.broker.stats.published == 4, what="four events sequenced")
    orders = body(await call(http_client, base_url + "/api/orders?strategy_id=1", headers=bearer))
    assert orders == {"orders": [], "last_event_id": f"{broker.epoch}-3"}
    positions = body(await call(http_client, base_url + "/api/positions?strategy_id=10", headers=bearer))
    assert positions == {"positions": [], "last_event_id": f"{broker.epoch}-0"}


@pytest.mark.gen_test
async def test_snapshot_rows_carry_the_event_fields_and_only_the_users_own(http_client: AsyncHTTPClient, base_url: str, world: World) -> None:
    engine = make_engine(url_of(world))
    with make_session_factory(engine)() as session:
        strategy = session.get(Strategy, 1)
        mine, theirs = session.get(Account, world.accounts["u10"]), session.get(Account, world.accounts["u11"])
        assert strategy is not None and mine is not None and theirs is not None
        add_order(session, strategy, mine, "mine-1")
        add_order(session, strategy, theirs, "theirs-1")
        add_position(session, strategy, mine)
        session.commit()
    engine.dispose()
    bearer = world.users["u10"].bearer
    orders = body(await call(http_client, base_url + "/api/orders?strategy_id=1", headers=bearer))["orders"]
    assert [o["order_id"] for o in orders] == ["mine-1"]
    assert set(orders[0]) == set(OrderEvent.__struct_fields__) - {"event_type", "kind", "fill_quantity", "fill_price"}
    positions = body(await call(http_client, base_url + "/api/positions?strategy_id=1", headers=bearer))["positions"]
    assert len(positions) == 1 and positions[0]["user_id"] == 10
    assert set(positions[0]) == set(PositionEvent.__struct_fields__) - {"event_type", "kind"}


@pytest.mark.gen_test
async def test_stats_are_for_admins_only_and_have_the_contract_fields(http_client: AsyncHTTPClient, base_url: str, world: World) -> None:
    assert (await call(http_client, base_url + "/api/events/stats", headers=world.users["u10"].bearer)).code == 403
    response = await call(http_client, base_url + "/api/events/stats", headers=world.users["root"].bearer)
    stats = body(response)
    for name in ("total_connections", "connections_by_key", "events_received", "events_delivered",
                 "slow_consumer_disconnects", "gaps_detected", "gaps_recovered", "resyncs", "keys",
                 # the rest of CONTRACT §3's "at least" list
                 "rejected_streams", "streams_shed", "login_refused_address", "login_refused_user", "login_refused_busy",
                 "accept_failures", "database", "database_failures", "peer_streamers", "streams_elsewhere", "timings"):
        assert name in stats, name
    assert set(stats["latency_ms"]) == {"p50", "p99", "max"}
    assert stats["database"] == "up"
    timings = stats["timings"]  # the delivered events' stages, the loop lag and the GC pauses
    assert set(timings["stages"]) == {"published_to_sequenced", "sequenced_to_read", "read_to_written"}
    for summary in (*timings["stages"].values(), timings["loop_lag"], timings["gc_pause"]):
        assert {"count", "p50", "p99", "p999", "max", "counts_us"} <= set(summary)


@pytest.mark.gen_test
async def test_metrics_health_page_and_unknown_paths(http_client: AsyncHTTPClient, base_url: str, services: Services) -> None:
    metrics = await call(http_client, base_url + "/metrics")
    assert metrics.code == 200 and metrics.headers["Content-Type"].startswith("text/plain")
    text = metrics.body.decode()
    for name in ("tradestream_streamer_connections", "tradestream_streamer_events_delivered_total",
                 "tradestream_streamer_slow_consumer_disconnects_total", 'tradestream_streamer_latency_ms{quantile="0.99"}',
                 "process_resident_memory_bytes"):
        assert name in text
    await async_wait_until(lambda: services.hub.subscriber.broker_up, what="the broker heard")
    assert body(await call(http_client, base_url + "/healthz")) == {"status": "ok", "broker": "up", "database": "up"}
    assert body(await call(http_client, base_url + "/livez")) == {"status": "ok"}
    for path in ("/healthz", "/livez"):  # as a load balancer probes: HEAD, the same status, no body
        head = await call(http_client, base_url + path, "HEAD")
        assert (head.code, head.body, head.headers["Cache-Control"]) == (200, b"", "no-store"), path
    page = await call(http_client, base_url + "/")
    if (Path(services.config.static_path) / "index.html").exists():
        assert page.code == 200 and page.headers["Content-Type"].startswith("text/html")
    else:
        assert page.code == 404 and body(page)["error"] == "not_found"
    for path in ("/api/nope", "/nope.txt"):
        missing = await call(http_client, base_url + path)
        assert missing.code == 404 and body(missing)["error"] == "not_found"
    wrong_method = await call(http_client, base_url + "/api/strategies", "DELETE")
    assert wrong_method.code == 405 and body(wrong_method)["error"] == "method_not_allowed"


@pytest.mark.gen_test
async def test_metrics_expose_delivery_latency_as_a_histogram_of_every_delivered_event(
    port: int, http_client: AsyncHTTPClient, base_url: str, world: World, publisher: Publisher
) -> None:
    streams = [await open_stream(port, world.users["u10"], 1) for _ in range(2)]
    for n in range(3):
        publisher.publish(order(10, 1, f"o{n}"))
    for stream in streams:
        await stream.events(3)
    text = (await http_client.fetch(base_url + "/metrics")).body.decode()
    name = "tradestream_streamer_delivery_latency_seconds"
    buckets = re.findall(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', text, re.MULTILINE)
    assert [le for le, _ in buckets] == [*(str(b) for b in BUCKETS_S), "+Inf"]
    assert f"{name}_count 3.0" in text  # once per event of the key, not per client
    counts = [float(count) for _, count in buckets]
    assert counts == sorted(counts) and counts[-1] == 3.0
    for stream in streams:
        await stream.close()


@pytest.mark.gen_test
async def test_the_page_gets_the_disconnect_texts_from_the_one_table(http_client: AsyncHTTPClient, base_url: str) -> None:
    texts = body(await call(http_client, base_url + "/reasons.json"))
    assert texts == reasons.TEXTS and set(texts) == {
        "permission_revoked", "strategy_deleted", "strategy_inactive", "server_shutdown", "session_ended", "user_deactivated",
        "too_many_streams",
    }

@pytest.mark.gen_test
@pytest.mark.streamer_config(static_path="/nonexistent-static-dir")
async def test_the_page_is_404_json_until_it_exists(http_client: AsyncHTTPClient, base_url: str) -> None:
    page = await call(http_client, base_url + "/")
    assert page.code == 404 and body(page)["error"] == "not_found"


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("1", 1), ("10", 10), (str(2**63 - 1), 2**63 - 1),
        ("0", None), ("01", None), ("+1", None), ("-1", None), ("1.0", None), (" 1", None),
        ("1 ", None), ("", None), ("1e3", None), (str(2**63), None), ("9" * 30, None),
        ("\u0661", None), ("\uff11", None), ("1\n", None), ("0x1", None),
    ],
)
def test_ids_are_ascii_digits_without_sign_or_leading_zero_below_2_63(raw: str, parsed: int | None) -> None:
    assert parse_id(raw) == parsed
    assert parse_id(raw.encode("utf-8")) == parsed


@pytest.mark.gen_test
async def test_page_files_are_under_static_and_revalidated_and_the_favicon_redirects(http_client: AsyncHTTPClient, base_url: str) -> None:
    for path in ("/static/tradestream.js", "/static/wire.js", "/static/app.js", "/static/format.js", "/static/tables.js", "/static/views.js"):
        response = await call(http_client, base_url + path)
        assert response.code == 200, path
        assert response.headers["Content-Type"].split(";")[0] in ("application/javascript", "text/javascript")
        assert response.headers["Cache-Control"] == "no-cache"  # a deploy's files are used at once
    page = await call(http_client, base_url + "/")
    assert b'src="/static/app.js"' in page.body and b'rel="icon"' in page.body
    icon = await http_client.fetch(base_url + "/favicon.ico", follow_redirects=False, raise_error=False)
    assert (icon.code, icon.headers["Location"]) == (301, "/static/favicon.svg")
    wrong_method = await call(http_client, base_url + "/favicon.ico", "POST", b"")
    assert wrong_method.code == 405 and body(wrong_method)["error"] == "method_not_allowed"  # JSON, not Tornado's page
    assert (await call(http_client, base_url + "/app.js")).code == 404  # only /static/ serves files


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/static/%00", "/static/app.js%00", "/static/tables%00.js", "/static/" + "a" * 5000, "/static/a/" * 500])
async def test_a_static_name_no_file_can_have_is_a_json_404(http_client: AsyncHTTPClient, base_url: str, path: str) -> None:
    # A NUL was a 500 with a traceback: the path checks' os.path.realpath raised ValueError.
    response = await call(http_client, base_url + path)
    assert response.code == 404 and body(response)["error"] == "not_found"
