"""/static/tradestream.js, the client library, on a page of its own against the real stack in Chromium.

The page is what another site would write (docs/client.md): it imports the module,
loads a snapshot through `snapshot()` and records what the stream tells it. The
broker runs without its journal here (conftest.py), so that a restart is a new epoch.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.deploy.stack import Stack
from tests.waiting import wait_until

# One worker runs all of them (--dist loadgroup, setup.cfg), so the package's `stack` and `browser` (conftest.py) start once, not once per worker.
pytestmark = pytest.mark.xdist_group("dashboard")

REFUSED = "ERR_CONNECTION_REFUSED"
CLIENT_PAGE = "/client-test.html"  # served by the browser itself (page.route), not by the stack
CLIENT_HTML = """<!doctype html><meta charset="utf-8"><title>client</title>
<script type="module">
import { TradeStream, fetchJson } from "/static/tradestream.js";

window.record = { events: [], states: [], bus: [], snapshots: 0 };
window.follow = (strategyId, withSnapshot = true) => {
  const snapshot = async () => {
    record.snapshots += 1;
    return (await fetchJson(`/api/orders?strategy_id=${strategyId}&limit=1`)).last_event_id;
  };
  const stream = new TradeStream(strategyId, withSnapshot ? { snapshot } : {});
  stream.on("event", ({ type, data, id }) => record.events.push({ type, id, price: data.price }));
  stream.on("state", (detail) => record.states.push({ ...detail, at: Date.now() }));
  stream.on("bus", ({ status }) => record.bus.push(status));
  window.stream = stream;
  stream.start();
};
window.ready = true;
</script>"""


def open_client(page: Any, stack: Stack, username: str) -> None:
    """The client page on the stack's origin, logged in as `username` (the cookie is the context's)."""
    page.route(stack.base_url + CLIENT_PAGE, lambda route: route.fulfill(body=CLIENT_HTML, content_type="text/html"))
    page.goto(stack.base_url + CLIENT_PAGE)
    page.wait_for_function("window.ready === true")
    login = page.request.post(stack.base_url + "/api/login",
                              data={"username": username, "password": stack.user(username)["password"]})
    assert login.status == 200


def client(page: Any, stack: Stack, username: str = "alice", group_name: str = "btc-trend") -> Any:
    """The client page, logged in as `username`, following `group_name`'s stream until connected."""
    open_client(page, stack, username)
    page.evaluate("id => follow(id)", stack.strategy(group_name)["id"])
    wait_state(page, "connected")
    return page


def record(page: Any) -> dict[str, Any]:
    return dict(page.evaluate("window.record"))


def states(page: Any) -> list[str]:
    return [s["state"] for s in record(page)["states"]]


def wait_state(page: Any, state: str, after: int = 0) -> dict[str, Any]:
    """The first `state` change at or after position `after` of the record."""
    def reached() -> dict[str, Any] | None:
        return next((s for s in record(page)["states"][after:] if s["state"] == state), None)
    return wait_until(reached, timeout=40, what=f"the stream to be {state}", poll=0.1)


def prices(page: Any) -> list[Decimal]:
    """The order events' prices (decimal strings, CONTRACT §4) in arrival order."""
    return [Decimal(e["price"]) for e in record(page)["events"] if e["type"] == "order_update"]


def wait_prices(page: Any, wanted: list[float]) -> None:
    wait_until(lambda: all(p in prices(page) for p in wanted), timeout=30, what=f"orders at {wanted}", poll=0.1)


def assert_contiguous_without_duplicates(page: Any) -> None:
    """Event ids of one epoch, each seq once and none skipped."""
    ids = [e["id"] for e in record(page)["events"]]
    by_epoch: dict[str, list[int]] = {}
    for event_id in ids:
        epoch, seq = event_id.split("-")
        by_epoch.setdefault(epoch, []).append(int(seq))
    for seqs in by_epoch.values():
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), ids


@pytest.mark.expect_console(REFUSED)
def test_resumes_after_a_streamer_restart_with_no_gap_and_no_duplicate(stack: Stack, page: Any) -> None:
    client(page, stack)
    stack.post_signal("btc-trend", price="71001")
    wait_prices(page, [71001])
    stack.ctl("stop", "streamer:*")
    wait_state(page, "reconnecting")
    for price in ("71002", "71003", "71004"):  # missed while no streamer runs
        stack.post_signal("btc-trend", price=price)
    stack.ctl("start", "streamer:*")
    stack.post_signal("btc-trend", price="71005")
    wait_prices(page, [71002, 71003, 71004, 71005])
    assert prices(page) == [71001, 71002, 71003, 71004, 71005]  # alice's one account: one order each, in order
    assert_contiguous_without_duplicates(page)
    assert record(page)["snapshots"] == 1  # resumed, not reloaded


@pytest.mark.expect_console("503 (Service Unavailable)")
def test_resyncs_after_a_broker_restart_and_says_when_the_bus_is_down(stack: Stack, page: Any) -> None:
    client(page, stack)
    stack.post_signal("btc-trend", price="72001")
    wait_prices(page, [72001])
    stack.ctl("stop", "broker")
    wait_until(lambda: record(page)["bus"][-1:] == ["down"], timeout=20, what="bus down", poll=0.1)
    mark = len(record(page)["states"])
    stack.ctl("start", "broker")
    wait_until(lambda: record(page)["bus"][-1:] == ["up"], timeout=20, what="bus up", poll=0.1)
    resync = wait_state(page, "resyncing", mark)
    assert resync["reason"] == "epoch_changed"
    wait_state(page, "connected", mark)
    assert record(page)["snapshots"] == 2  # the snapshot was reloaded once
    stack.post_signal("btc-trend", price="72002")
    wait_prices(page, [72002])
    epochs = {e["id"].split("-")[0] for e in record(page)["events"]}
    assert len(epochs) == 2  # the new broker's events, delivered after the reload
    assert_contiguous_without_duplicates(page)


@pytest.mark.expect_console(REFUSED)
def test_retries_as_soon_as_the_server_is_back_not_after_its_backoff(stack: Stack, page: Any) -> None:
    client(page, stack)
    stack.ctl("stop", "streamer:*")
    wait_until(lambda: next((s for s in record(page)["states"]
                             if s["state"] == "reconnecting" and s["reason"] == "unreachable"), None),
               timeout=40, what="a retry after a refused connection", poll=0.1)
    # From now on a retry that waits for its backoff is 30-60 s late, far beyond a streamer's start:
    # only the /healthz probe can bring the stream back before it.
    page.evaluate("Object.assign(stream.options, { retryBaseMs: 60000, retryMaxMs: 60000 })")
    waiting = wait_until(lambda: next((s for s in record(page)["states"]
                                       if s["state"] == "reconnecting" and s["retryInMs"] >= 30000), None),
                         timeout=40, what="a retry scheduled 30 s or more ahead", poll=0.1)
    mark = len(record(page)["states"])
    stack.ctl("start", "streamer:*")
    connected = wait_state(page, "connected", mark)
    pending = [s for s in record(page)["states"][:mark] if s["state"] == "reconnecting"][-1]
    assert waiting["reason"] == "unreachable"
    assert connected["at"] < pending["retryAt"]  # the /healthz probe saw the server and retried at once


def test_stops_for_good_on_force_disconnect(stack: Stack, page: Any) -> None:
    strategy_id = str(stack.strategy("eth-swing")["id"])
    client(page, stack, "carol", "eth-swing")
    try:
        stack.run_bin("tradestream-admin", "deactivate", "--strategy", strategy_id)
        stopped = wait_state(page, "stopped")
        assert stopped["reason"] == "strategy_inactive" and "deactivated" in stopped["message"]
        # Nothing is scheduled and no request is open: it will not reconnect by itself.
        assert page.evaluate("[stream.timers.length, stream.controller]") == [0, None]
        assert states(page)[-1] == "stopped"
    finally:
        stack.run_bin("tradestream-admin", "activate", "--strategy", strategy_id)


@pytest.mark.expect_console("403 (Forbidden)")
@pytest.mark.parametrize("with_snapshot", [False, True], ids=["stream", "snapshot"])
def test_a_refused_stream_or_snapshot_stops_with_the_servers_status_and_code(stack: Stack, page: Any, with_snapshot: bool) -> None:
    open_client(page, stack, "carol")
    page.evaluate("([id, snapshot]) => follow(id, snapshot)", [stack.strategy("sol-scalp")["id"], with_snapshot])  # not carol's
    stopped = wait_state(page, "stopped")
    assert (stopped["status"], stopped["reason"]) == (403, "forbidden")
    assert page.evaluate("[stream.timers.length, stream.controller]") == [0, None]


SSE_TEXT = (
    "retry: 3000\r\n\r\n: a comment\r\n"
    "event: connection\r\ndata: {\"status\":\"connected\"}\r\n\r\n"
    "id: 7-1\nevent: order_update\ndata: {\"a\":1}\n\n"
    "id: 7-2\revent: order_update\rdata: one\rdata:two\r\r"
    "event: heartbeat\ndata\n\n"
    "data: no event name\n\n"
    "event: partial\ndata: never finished\n"
)
SSE_FRAMES = [
    {"event": "connection", "data": '{"status":"connected"}', "id": None},
    {"event": "order_update", "data": '{"a":1}', "id": "7-1"},
    {"event": "order_update", "data": "one\ntwo", "id": "7-2"},
    {"event": "heartbeat", "data": "", "id": None},
    {"event": "message", "data": "no event name", "id": None},
]


def test_the_sse_parser_gives_the_same_frames_however_the_bytes_are_split(stack: Stack, page: Any) -> None:
    page.goto(stack.base_url + "/")
    splits = page.evaluate(
        """async (text) => {
            const { SseParser } = await import('/static/tradestream.js');
            const results = [];
            for (let cut = 0; cut <= text.length; cut++) {  // every place a chunk could end, CRLF included
                const frames = [];
                const parser = new SseParser((frame) => frames.push(frame));
                parser.push(text.slice(0, cut));
                parser.push("");  // an empty chunk changes nothing
                parser.push(text.slice(cut));
                results.push(frames);
            }
            return results;
        }""",
        SSE_TEXT,
    )
    assert all(frames == SSE_FRAMES for frames in splits), next(f for f in splits if f != SSE_FRAMES)
