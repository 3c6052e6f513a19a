"""The database going away under running processes: readiness says so, requests are 503, never 500; it recovers alone.

Real `tradestream-streamer` and `tradestream-webhook` processes reach PostgreSQL
through a TCP relay (tests/relay.py) that the test cuts and restores: what a
database host going down, or a network partition, looks like to them. SQLite is a
local file that does not go away like this, so this runs against PostgreSQL only
(TRADESTREAM_TEST_DATABASE_URL).
"""

from __future__ import annotations

import http.client
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from store import actions
from store.db import init_db, make_engine, make_session_factory
from tests.conftest import POSTGRES_URL, _postgres_schema_url
from tests.producers.test_webhook_hostile import _LISTENING as WEBHOOK_LISTENING
from tests.producers.test_webhook_hostile import _SCRIPT as WEBHOOK_SCRIPT
from tests.relay import Relay
from tests.streamer.conftest import BrokerThread, World
from tests.streamer.test_processes import StreamerProcess
from tests.waiting import PROCESS_START_S, wait_until

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not POSTGRES_URL, reason="needs PostgreSQL (TRADESTREAM_TEST_DATABASE_URL): a SQLite file cannot become unreachable"),
]


def call(port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        raw = None if body is None else json.dumps(body)
        connection.request(method, path, raw, {"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


@pytest.fixture
def relayed_database() -> Iterator[tuple[str, Relay, dict[str, str]]]:
    """A fresh PostgreSQL schema with alice (owning strategy 1), its URL through a relay, the relay, alice's tokens."""
    for url in _postgres_schema_url(POSTGRES_URL):
        engine = make_engine(url)
        init_db(engine)
        with make_session_factory(engine)() as session:
            _, api_token = actions.create_user(session, None, "alice", "alice-pw")
            account = actions.create_account(session, None, "alice", "main", "paper", 1000)
            strategy, webhook_token = actions.create_strategy(session, None, "alice", "BTC", "btc")
            actions.link(session, None, strategy.id, account.id)
        engine.dispose()
        parsed = make_url(url)
        relay = Relay((parsed.host or "127.0.0.1", parsed.port or 5432))
        try:
            relayed = parsed.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
            yield relayed, relay, {"api": api_token, "webhook": webhook_token}
        finally:
            relay.close()


class WebhookProcess:
    """tradestream-webhook on a free port, its orders pushed nowhere (nothing reaches that step here)."""

    def __init__(self, workdir: Path, database_url: str) -> None:
        self.log_path = workdir / "webhook.log"
        args = [str(WEBHOOK_SCRIPT), "--database-url", database_url, "--orders", "tcp://127.0.0.1:9", "--port", "0"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, stderr=log, cwd=workdir)
        match = wait_until(lambda: WEBHOOK_LISTENING.search(self.log_path.read_text()), timeout=PROCESS_START_S, what="the webhook to listen")
        self.port = int(match[1])


def test_a_lost_database_makes_readiness_503_and_requests_503_and_both_recover_alone(
    tmp_path: Path, world: World, broker: BrokerThread, relayed_database: tuple[str, Relay, dict[str, str]]
) -> None:
    url, relay, tokens = relayed_database
    streamer = StreamerProcess(tmp_path, "streamer", world, broker, "--port", "0", "--database-url", url)
    webhook = WebhookProcess(tmp_path, url)
    bearer = {"Authorization": f"Bearer {tokens['api']}"}
    signal = {"group_name": "btc", "token": tokens["webhook"], "symbol": "BTC/USDT", "side": "buy", "order_type": "LIMIT", "price": "90000", "qty_per": 5}
    login = {"username": "alice", "password": "alice-pw"}
    try:
        wait_until(lambda: call(streamer.port, "GET", "/healthz")[0] == 200, what="the streamer to be ready")
        assert call(streamer.port, "GET", "/api/orders?strategy_id=1", headers=bearer)[0] == 200
        relay.cut()
        assert call(streamer.port, "POST", "/api/login", login)[1]["error"] == "database_unavailable"
        assert call(streamer.port, "GET", "/api/positions?strategy_id=1", headers=bearer) == (503, _unavailable())
        assert call(webhook.port, "POST", "/api/webhook", signal)[0:1] == (503,)
        assert call(webhook.port, "POST", "/api/webhook", signal)[1]["error"] == "store_unavailable"
        for port, ready in ((streamer.port, {"broker": "up"}), (webhook.port, {})):
            assert call(port, "GET", "/healthz") == (503, {"status": "unavailable", **ready, "database": "down"})
            assert call(port, "GET", "/livez") == (200, {"status": "ok"})
        relay.restore()
        for port in (streamer.port, webhook.port):
            wait_until(lambda: call(port, "GET", "/healthz")[0] == 200, what="readiness after the database is back")  # noqa: B023 (called at once)
        assert call(streamer.port, "POST", "/api/login", login)[0] == 200
        assert call(webhook.port, "POST", "/api/webhook", signal)[0] == 200
    finally:
        for process in (streamer.proc, webhook.proc):
            process.terminate()
            process.wait(timeout=10)
    for log in (streamer.log(), webhook.log_path.read_text()):
        assert "database down" in log and "database up again" in log
        assert "Traceback" not in log and " ERROR " not in log


def _unavailable() -> dict[str, str]:
    return {"error": "database_unavailable", "message": "The database is unavailable (OperationalError); try again shortly."}
