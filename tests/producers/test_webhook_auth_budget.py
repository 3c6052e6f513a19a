"""The budget of failed authentications per client address, over real HTTP against the webhook's app and the demo database."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import zmq
from sqlalchemy import event
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.web import Application

from bus.process import SettingsParser
from bus.publisher import Publisher
from producers.failed_auth import FailedAuthBudget
from producers.intake import Intake
from producers.webhook import WebhookConfig, WebhookService, make_app
from tests.producers.conftest import WakeSink, World
from web.ratelimit import RateLimiter

EXAMPLE = {"symbol": "BTC/USDT", "side": "buy", "order_type": "LIMIT", "price": "90000", "qty_per": 5}
LIMIT, WINDOW_S = 20, 60.0
ELSEWHERE = "203.0.113.9"  # another client, as a trusted proxy says


class Clock:
    """A settable monotonic clock for the budget's window."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def trust_proxy() -> bool:
    return True


@pytest.fixture
def service(world: World, wake_sink: WakeSink, zctx: zmq.Context[Any], clock: Clock) -> Iterator[WebhookService]:
    executor = ThreadPoolExecutor(2)
    publisher = Publisher(wake_sink.endpoint, context=zctx, send_timeout_ms=0, linger_ms=0)
    budget = FailedAuthBudget(LIMIT, WINDOW_S)
    yield WebhookService(Intake(world.sessions), publisher, executor, RateLimiter(1000.0), budget=budget, clock=clock)
    executor.shutdown(wait=True)
    publisher.close()


@pytest.fixture
def app(service: WebhookService, trust_proxy: bool) -> Application:
    return make_app(service, trust_proxy)


async def post(
    http_client: AsyncHTTPClient, base_url: str, body: dict[str, Any], forwarded_for: str | None = None
) -> HTTPResponse:
    headers = {"Content-Type": "application/json"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    response: HTTPResponse = await http_client.fetch(
        base_url + "/api/webhook", method="POST", body=json.dumps(body), headers=headers, raise_error=False)
    return response


def good(world: World, group: str = "btc-trend") -> dict[str, Any]:
    return {**EXAMPLE, "group_name": group, "token": world.tokens[group]}


def guess(n: int) -> dict[str, Any]:
    """A wrong token (odd n) or an unknown group (even n): both are failed authentications."""
    return {**EXAMPLE, "group_name": "btc-trend" if n % 2 else f"guess-{n}", "token": f"guess-{n}"}


async def spend(http_client: AsyncHTTPClient, base_url: str, forwarded_for: str | None = None) -> None:
    codes = [(await post(http_client, base_url, guess(n), forwarded_for)).code for n in range(LIMIT)]
    assert codes == [404, 401] * (LIMIT // 2)


@pytest.mark.gen_test
async def test_the_21st_failure_from_an_address_is_429_while_a_known_good_sender_there_and_other_addresses_go_on(
    http_client: AsyncHTTPClient, base_url: str, world: World
) -> None:
    assert (await post(http_client, base_url, good(world))).code == 200  # btc-trend's sender, known good from now on
    await spend(http_client, base_url)
    refused = await post(http_client, base_url, guess(LIMIT + 1))
    assert refused.code == 429 and refused.headers["Retry-After"] == "60"
    body = json.loads(refused.body)
    assert set(body) == {"error", "message"} and body["error"] == "rate_limited" and "failed authentications" in body["message"]
    assert (await post(http_client, base_url, good(world))).code == 200  # behind the same address (NAT): served
    # A right token never seen before is refused too: it cannot be told from a guess without checking it.
    assert (await post(http_client, base_url, good(world, "eth-swing"))).code == 429
    assert (await post(http_client, base_url, guess(1), ELSEWHERE)).code == 401  # another client: its own budget
    assert (await post(http_client, base_url, good(world, "eth-swing"), ELSEWHERE)).code == 200


@pytest.mark.gen_test
async def test_the_end_of_the_window_gives_the_budget_back(
    http_client: AsyncHTTPClient, base_url: str, clock: Clock
) -> None:
    await spend(http_client, base_url)
    clock.now += WINDOW_S - 1
    late = await post(http_client, base_url, guess(0))
    assert (late.code, late.headers["Retry-After"]) == (429, "1")
    clock.now += 1
    await spend(http_client, base_url)
    assert (await post(http_client, base_url, guess(0))).code == 429


@pytest.mark.gen_test
async def test_a_refused_request_touches_no_database(
    http_client: AsyncHTTPClient, base_url: str, world: World
) -> None:
    await spend(http_client, base_url)
    statements: list[str] = []
    event.listen(world.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    assert (await post(http_client, base_url, guess(0))).code == 429
    assert statements == []
    assert (await post(http_client, base_url, guess(1), ELSEWHERE)).code == 401
    assert statements  # the listener sees what a checked request does


@pytest.mark.gen_test
async def test_refusals_are_logged_once_per_address_and_window_and_counted_in_metrics(
    http_client: AsyncHTTPClient, base_url: str, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="producers.webhook_service")
    await spend(http_client, base_url)
    for n in range(5):
        assert (await post(http_client, base_url, guess(n))).code == 429
    clock.now += 2  # past the log's own interval, inside the window
    assert (await post(http_client, base_url, guess(0))).code == 429
    lines = [r.getMessage() for r in caplog.records if r.name == "producers.webhook_service"]
    assert len(lines) == 1 and "127.0.0.1 refused" in lines[0]
    text = (await http_client.fetch(base_url + "/metrics")).body.decode()
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("tradestream_webhook_auth"))
    assert float(samples["tradestream_webhook_auth_failures_total"]) == LIMIT
    assert float(samples["tradestream_webhook_auth_limited_total"]) == 6
    assert float(samples["tradestream_webhook_auth_tracked_addresses"]) == 1
    refused = [line for line in text.splitlines() if line.startswith('tradestream_webhook_signals_refused_total{reason="rate_limited"}')]
    assert [float(line.rsplit(" ", 1)[1]) for line in refused] == [6.0]


class TestWithoutTrustProxy:
    @pytest.fixture
    def trust_proxy(self) -> bool:
        return False

    @pytest.mark.gen_test
    async def test_x_forwarded_for_is_ignored_so_a_client_cannot_choose_its_budget(
        self, http_client: AsyncHTTPClient, base_url: str
    ) -> None:
        await spend(http_client, base_url, forwarded_for="198.51.100.1")
        assert (await post(http_client, base_url, guess(0), ELSEWHERE)).code == 429


class TestOff:
    @pytest.fixture
    def service(self, world: World, wake_sink: WakeSink, zctx: zmq.Context[Any]) -> Iterator[WebhookService]:
        executor = ThreadPoolExecutor(2)
        publisher = Publisher(wake_sink.endpoint, context=zctx, send_timeout_ms=0, linger_ms=0)
        yield WebhookService(Intake(world.sessions), publisher, executor, RateLimiter(1000.0), budget=FailedAuthBudget(0))
        executor.shutdown(wait=True)
        publisher.close()

    @pytest.mark.gen_test
    async def test_auth_failures_0_checks_every_request(self, http_client: AsyncHTTPClient, base_url: str) -> None:
        codes = [(await post(http_client, base_url, guess(n))).code for n in range(LIMIT * 2)]
        assert codes == [404, 401] * LIMIT


def test_the_budget_flags_and_variables_are_read_and_explained() -> None:
    defaults, _ = SettingsParser(WebhookConfig, prog="tradestream-webhook", description="", environ={}).parse([])
    assert (defaults.auth_failures, defaults.auth_failure_window, defaults.trust_proxy) == (20, 60.0, False)
    environ = {"TRADESTREAM_AUTH_FAILURES": "5", "TRADESTREAM_AUTH_FAILURE_WINDOW": "30", "TRADESTREAM_TRUST_PROXY": "1"}
    parser = SettingsParser(WebhookConfig, prog="tradestream-webhook", description="", environ=environ)
    config, _ = parser.parse(["--auth-failures", "0"])
    assert (config.auth_failures, config.auth_failure_window, config.trust_proxy) == (0, 30.0, True)
    text = " ".join(parser.format_help().split())
    assert "--auth-failures AUTH_FAILURES failed authentications (unknown group, wrong token) per client address" in text
    assert "(0: no limit) (env TRADESTREAM_AUTH_FAILURES; default 20)" in text
    assert "(env TRADESTREAM_AUTH_FAILURE_WINDOW; default 60.0)" in text
    assert "last X-Forwarded-For entry (env TRADESTREAM_TRUST_PROXY; default off)" in text
