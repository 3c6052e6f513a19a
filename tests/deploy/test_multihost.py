"""The bus across hosts: broker, producers and two streamers in network namespaces, tcp:// and CURVE between them.

A system test (root, `ip netns`, tc): skipped with its reason where namespaces
cannot be made. The SSE clients and the webhook's caller are the root namespace,
reaching the hosts over the bridge (tests/deploy/multihost.py draws it); the real
Chromium runs on a host of its own, "client" (skipped without Chromium or Playwright).
"""

from __future__ import annotations

import os
import re
import signal
import sys
import textwrap
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.deploy.dashboard.browser import CHROMIUM, CHROMIUM_ARGS, Console, new_page, sign_in, sync_api
from tests.deploy.multihost import Deployment, Network, available, order_priced
from tests.waiting import wait_until

# One worker runs all of them (--dist loadgroup, setup.cfg), so the module's `deployment` starts once, not once per worker.
pytestmark = [pytest.mark.system, pytest.mark.xdist_group("multihost")]
REASON = available()

ROGUE = textwrap.dedent("""
    import sys, time, zmq
    from bus import codec
    from tests.bus.conftest import make_order
    ingress, publish, user_id, strategy_id = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ctx = zmq.Context()
    push, sub = ctx.socket(zmq.PUSH), ctx.socket(zmq.SUB)
    push.connect(ingress)
    sub.subscribe(b"")
    sub.connect(publish)
    event = make_order(user_id, strategy_id, "forged")
    push.send_multipart([b"k/%d/%d/" % (user_id, strategy_id), codec.pack({**event.to_wire(), "published_ns": 1})])
    received, deadline = 0, time.monotonic() + 2.0  # 10 broker heartbeats: a keyless SUB that were let in hears them
    while time.monotonic() < deadline:
        if sub.poll(100):
            sub.recv_multipart()
            received += 1
    print(received)
    ctx.destroy(linger=0)
""")


PRICE_CELLS = """() => {
    const column = [...document.querySelectorAll('#orders thead th')].findIndex(th => th.textContent.trim() === 'Price');
    return [...document.querySelectorAll('#orders tbody tr')].map(row => row.cells[column].innerText);
}"""  # the orders table's Price column, top row first


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if REASON:
        pytest.skip(REASON)
    net = Network()
    running = Deployment(tmp_path_factory.mktemp("multihost"), net, curve=True)
    try:
        net.open()
        yield running.start()
    finally:
        running.stop()
        net.close()


def test_a_webhook_on_one_host_reaches_streams_on_two_others_in_order(deployment: Deployment) -> None:
    streams = [deployment.stream("web1"), deployment.stream("web2")]
    try:
        prices = ["101", "102", "103"]
        for price in prices:
            deployment.post_signal(price)
        for stream in streams:
            seen = [stream.wait_for(order_priced(price), what=f"the order at {price}") for price in prices]
            ids = [tuple(map(int, event["id"].split("-"))) for event in seen]
            assert ids == sorted(ids) and len(set(ids)) == 3
    finally:
        for stream in streams:
            stream.close()


def test_a_rogue_host_without_a_key_can_neither_publish_nor_listen(deployment: Deployment) -> None:
    strategy, user = deployment.owner()
    stream = deployment.stream("web1")
    try:
        done = deployment.in_host("rogue", deployment_python(), "-c", ROGUE, deployment.endpoint("broker", 5557),
                                  deployment.endpoint("broker", 5558), str(user["id"]), str(strategy["id"]))
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "0"  # not one heartbeat, let alone an event
        deployment.post_signal("201")
        first = stream.wait_for(lambda event: event["event"] == "order_update", what="the next order")
        assert first["data"]["order_id"] != "forged" and order_priced("201")(first)
    finally:
        stream.close()
    assert "bus peer refused: a" in deployment.log("broker")


def test_events_arrive_in_order_over_a_delayed_lossy_link(deployment: Deployment) -> None:
    reason = deployment.net.netem("web2", "delay", "20ms", "5ms", "loss", "2%")
    if reason:
        pytest.skip(reason)
    stream = deployment.stream("web2")
    try:
        prices = [str(300 + n) for n in range(5)]
        for price in prices:
            deployment.post_signal(price)
        seen = [stream.wait_for(order_priced(price), what=f"the order at {price}") for price in prices]
        ids = [tuple(map(int, event["id"].split("-"))) for event in seen]
        assert ids == sorted(ids) and len(set(ids)) == len(prices)
    finally:
        stream.close()


def test_a_browser_on_a_client_host_shows_a_webhook_on_another_host_live_and_in_order(
    deployment: Deployment, tmp_path: Path
) -> None:
    api = sync_api()
    strategy, user = deployment.owner()
    launcher = deployment.net.launcher("client", CHROMIUM, tmp_path)
    console = Console()
    with api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(launcher), args=CHROMIUM_ARGS)
        pid = int(Path(f"{launcher}.pid").read_text())
        try:
            assert deployment.net.holds("client", pid)  # the browser is on the client host, not in the root namespace
            page = new_page(browser, console)
            sign_in(page, deployment.url("web1", 8080), user["username"], user["password"], strategy["id"])
            prices = ["411", "412", "413"]
            for price in prices:
                deployment.post_signal(price)

            def ours() -> list[str]:
                rows = page.evaluate(PRICE_CELLS)
                shown = [text.replace(",", "") for text in rows]  # "—" or "stop …" for orders of other prices
                return [price for price in prices_in(shown) if price in prices]

            wait_until(lambda: len(ours()) >= len(prices), timeout=30, what="the three orders in the page's table")
            assert ours() == prices[::-1]  # each once, the newest change on top
            assert console.unexpected() == []
        finally:
            browser.close()
            _end(pid)


def prices_in(texts: list[str]) -> list[str]:
    """The plain prices among a table's price cells, normalized ("411.00" → "411")."""
    return [str(Decimal(text).normalize()) for text in texts if re.fullmatch(r"\d+(\.\d+)?", text)]


def _end(pid: int) -> None:
    """Kill the browser if `close()` left it (it normally does not)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    wait_until(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), timeout=10, what=f"browser {pid} to end")


def _zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def deployment_python() -> str:
    return sys.executable
