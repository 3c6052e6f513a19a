"""The webhook against hostile clients: slow ones are dropped; out of descriptors (a real process) it pauses accepting."""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import zmq
from tornado.httpclient import AsyncHTTPClient
from tornado.ioloop import IOLoop

from bench.hostile import flood
from bus.publisher import Publisher
from producers.commands import WAKE
from producers.intake import Intake
from producers.webhook import WebhookConfig, WebhookService, make_server
from tests.hostile import exchange, raw_request
from tests.limits import fd_limited
from tests.ports import listen_on_free_port
from tests.producers.conftest import WakeSink, World
from tests.waiting import PROCESS_START_S, wait_until
from tests.web.test_server import DROP_DEADLINE_S, SLOW_CLIENTS, TIMEOUT_S, dropped_within
from web.ratelimit import RateLimiter

FD_LIMIT = 256
_LISTENING = re.compile(r"webhook listening on http://[^:]+:(\d+)")
_SCRIPT = Path(sys.executable).with_name("tradestream-webhook")


class WebhookProcess:
    """tradestream-webhook allowed FD_LIMIT descriptors, logging to a file; headers may take a minute."""

    def __init__(self, workdir: Path, world: World, orders: str) -> None:
        self.log_path = workdir / "webhook.log"
        # Port 0, and the one it took from its `listening on` line: it is never restarted.
        args = [str(_SCRIPT), "--database-url", world.url, "--orders", orders, "--port", "0", "--header-timeout", "60"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(fd_limited(args, FD_LIMIT), stderr=log, cwd=workdir)
        listening = wait_until(lambda: _LISTENING.search(self.log()), timeout=PROCESS_START_S, what="the webhook to listen")
        assert listening is not None  # wait_until returns a truthy value
        self.port = int(listening[1])

    def log(self) -> str:
        return self.log_path.read_text()


@pytest.fixture
def webhook(tmp_path: Path, world: World, wake_sink: WakeSink) -> Iterator[WebhookProcess]:
    process = WebhookProcess(tmp_path, world, wake_sink.endpoint)
    yield process
    if process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait()


def _get(connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None) -> int:
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0


def _healthz(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        return _get(connection, "GET", "/healthz")
    finally:
        connection.close()


@pytest.fixture
def webhook_port(world: World, wake_sink: WakeSink, zctx: zmq.Context[Any], io_loop: IOLoop) -> Iterator[int]:
    """The webhook's app behind the server its process uses (make_server), with short timeouts."""
    executor = ThreadPoolExecutor(2)
    publisher = Publisher(wake_sink.endpoint, context=zctx, send_timeout_ms=0, linger_ms=0)
    service = WebhookService(Intake(world.sessions), publisher, executor, RateLimiter(1000.0))
    server = make_server(service, WebhookConfig(header_timeout=TIMEOUT_S, body_timeout=TIMEOUT_S))
    yield listen_on_free_port(server)
    server.stop()
    publisher.close()
    executor.shutdown(wait=True)


@pytest.mark.parametrize(("first", "trickle"), [pytest.param(*case[1:], id=case[0]) for case in SLOW_CLIENTS])
@pytest.mark.gen_test
async def test_the_webhook_drops_a_slow_client_after_its_timeout(
    webhook_port: int, first: bytes, trickle: bytes
) -> None:
    # The webhook streams its body (stream_request_body): the body timeout holds there too.
    slow_post = first.replace(b"POST / ", b"POST /api/webhook ")
    assert await dropped_within(webhook_port, slow_post, trickle, DROP_DEADLINE_S), f"still open after {DROP_DEADLINE_S} s"
    assert (await AsyncHTTPClient().fetch(f"http://127.0.0.1:{webhook_port}/healthz")).code == 200


def test_out_of_descriptors_the_webhook_pauses_accepting_serves_open_connections_and_recovers_alone(
    webhook: WebhookProcess, world: World, wake_sink: WakeSink
) -> None:
    pid = webhook.proc.pid
    kept = http.client.HTTPConnection("127.0.0.1", webhook.port, timeout=5)
    assert _get(kept, "GET", "/healthz") == 200
    signal = {"group_name": "btc-trend", "token": world.tokens["btc-trend"], "symbol": "BTC/USDT", "side": "buy",
              "order_type": "LIMIT", "price": "90000", "qty_per": 5}
    with flood(webhook.port, FD_LIMIT + 64, pid):
        wait_until(lambda: len(os.listdir(f"/proc/{pid}/fd")) == FD_LIMIT, what="the webhook to run out of descriptors")
        wait_until(lambda: "Too many open files" in webhook.log(), what="accept() to fail")
        assert _get(kept, "POST", "/api/webhook", json.dumps(signal).encode()) == 200
        assert wake_sink.receive() == list(WAKE)  # the signal is stored: its wake-up went out
        # Tornado's own handler logged a traceback per loop turn here (16 MB of log in 3 s).
        assert webhook.log().count("Too many open files") == 1
        assert "Traceback" not in webhook.log()
    wait_until(lambda: _healthz(webhook.port) == 200, what="the webhook to accept again")
    wait_until(lambda: "accepting again after" in webhook.log(), what="the recovery line")
    kept.close()
    webhook.proc.terminate()
    assert webhook.proc.wait(timeout=5) == 0
    assert "Traceback" not in webhook.log()


@pytest.mark.parametrize(
    ("path", "headers", "body"),
    [
        pytest.param("/api/elsewhere", {"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"}, b"a=b",
                     id="a form body in an unknown encoding"),
        pytest.param("/healthz", {"Content-Type": "multipart/form-data; boundary=x"}, b"--x", id="a multipart body without its end"),
    ],
)
@pytest.mark.gen_test
async def test_a_body_tornado_cannot_parse_is_a_json_400_without_a_warning(
    webhook_port: int, caplog: pytest.LogCaptureFixture, path: str, headers: dict[str, str], body: bytes
) -> None:
    # Tornado logged each as a WARNING with its reason: an outsider decides how many there are.
    for _ in range(3):
        response = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{webhook_port}{path}", method="POST", headers=headers,
                                                 body=body, raise_error=False)
        assert response.code == 400 and json.loads(response.body)["error"] == "invalid_request"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.gen_test
async def test_another_method_on_metrics_is_a_json_405(webhook_port: int) -> None:
    response = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{webhook_port}/metrics", method="POST", body=b"", raise_error=False)
    assert response.code == 405 and response.headers["Content-Type"] == "application/json"  # not Tornado's HTML page
    assert json.loads(response.body)["error"] == "method_not_allowed"


@pytest.mark.gen_test
async def test_headers_beyond_the_limit_are_a_json_431(webhook_port: int) -> None:
    answer = await exchange(webhook_port, raw_request("POST", b"/api/webhook", [(b"X-Big", b"b" * 70_000)], b"{}"))
    assert answer.status == 431 and answer.json()["error"] == "headers_too_large"
    assert (await AsyncHTTPClient().fetch(f"http://127.0.0.1:{webhook_port}/healthz")).code == 200
