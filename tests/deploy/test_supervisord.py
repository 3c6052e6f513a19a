"""supervisord.conf under the real supervisord: every process runs, comes back after
SIGKILL with no manual step, and the stack stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import urllib.request
from pathlib import Path

import pytest

from tests.deploy.stack import PROGRAMS, EventStream, Stack, order_with_price
from tests.waiting import wait_until

# One worker runs all of them (--dist loadgroup, setup.cfg), so the module's `stack` (tests/deploy/conftest.py) starts once, not once per worker.
pytestmark = pytest.mark.xdist_group("supervisord-stack")


def alice_stream(stack: Stack, last_event_id: str | None = None) -> EventStream:
    return EventStream(stack.base_url, stack.strategy("btc-trend")["id"], stack.user("alice")["api_token"], last_event_id)


def test_supervisorctl_status_shows_every_program_running(stack: Stack) -> None:
    states = stack.ctl_status()
    assert states == stack.status()  # what the other tests wait on is what supervisorctl shows
    assert sorted(states) == sorted(PROGRAMS)
    assert {state for state, _ in states.values()} == {"RUNNING"}
    assert (stack.root / "var" / "supervisor.sock").is_socket()
    for log in ("broker.log", "streamer-0.log", "streamer-1.log", "webhook.log", "orders.log", "positions.log"):
        assert (stack.root / "var" / "log" / log).exists(), log


def listening_sockets(port: int) -> int:
    """How many IPv4 sockets listen on `port` (Linux: /proc/net/tcp, state 0A)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        count += state == "0A" and int(local.split(":")[1], 16) == port
    return count


def test_two_streamers_share_the_http_port(stack: Stack) -> None:
    assert stack.pid("streamer:streamer-0") != stack.pid("streamer:streamer-1")
    # Two listening sockets on one port: SO_REUSEPORT, and neither streamer failed to bind.
    assert listening_sockets(int(stack.env["TRADESTREAM_PORT"])) == 2


def test_orders_positions_and_each_streamer_serve_their_metrics_on_their_own_port(stack: Stack) -> None:
    ports: dict[str, int] = {}
    for name, pattern in (("orders", r"metrics port (\d+)"), ("positions", r"metrics port (\d+)"),
                          ("streamer-0", r"metrics_port=(\d+)"), ("streamer-1", r"metrics_port=(\d+)")):
        logged = re.findall(pattern, (stack.root / "var" / "log" / f"{name}.log").read_text())
        assert logged, f"{name} logged no metrics port"
        ports[name] = int(logged[-1])  # the latest start's
    assert len(set(ports.values())) == 4
    for name, port in ports.items():
        prefix = "tradestream_streamer" if name.startswith("streamer") else f"tradestream_{name}"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert f"# TYPE {prefix}_" in response.read().decode(), name


def test_sigkilled_broker_is_restarted_and_events_flow_again_without_resync(stack: Stack) -> None:
    stream = alice_stream(stack)
    resyncs: list[dict[str, object]] = []

    def after_restart(event: dict[str, object]) -> bool:
        if event["event"] == "resync":
            resyncs.append(event)
        return order_with_price(70002)(event)

    try:
        stack.post_signal("btc-trend", price="70001")
        stream.wait_for(order_with_price(70001), "the order before the kill")
        before = stream.last_event_id
        assert before is not None

        stack.sigkill("broker")
        stack.wait_healthy()

        # The same stream goes on, in the same epoch: the broker's journal (var/broker-journal.db).
        stack.post_signal("btc-trend", price="70002")
        stream.wait_for(after_restart, "an order through the restarted broker")
        assert resyncs == []
        assert stream.last_event_id is not None and stream.last_event_id.split("-")[0] == before.split("-")[0]
        assert (stack.root / "var" / "broker-journal.db").exists()
    finally:
        stream.close()


def test_sigkilled_streamer_is_restarted_and_a_client_resumes_where_it_was(stack: Stack) -> None:
    stream = alice_stream(stack)
    try:
        stack.post_signal("btc-trend", price="70011")
        stream.wait_for(order_with_price(70011), "the order before the kill")
        for program in ("streamer:streamer-0", "streamer:streamer-1"):
            stack.sigkill(program)
        stream.wait_closed()  # it was served by one of the two
    finally:
        stream.close()

    # Posted while no browser listens; resuming from the last id delivers it.
    stack.post_signal("btc-trend", price="70012")
    stack.wait_healthy()
    resumed = alice_stream(stack, stream.last_event_id)
    try:
        resumed.wait_for(order_with_price(70012), "the order posted while disconnected")
    finally:
        resumed.close()


@pytest.mark.parametrize("program", ["orders", "webhook"])
def test_sigkilled_order_path_process_is_restarted_and_orders_flow_again(stack: Stack, program: str) -> None:
    stream = alice_stream(stack)
    try:
        stack.sigkill(program)
        price = {"orders": 70021, "webhook": 70022}[program]
        _post_until_accepted(stack, price=str(price))
        stream.wait_for(order_with_price(price), f"an order after {program} came back")
    finally:
        stream.close()


def test_sigkilled_position_handler_is_restarted_and_fills_move_positions_again(stack: Stack) -> None:
    stream = alice_stream(stack)
    try:
        stack.sigkill("positions")
        # A MARKET order fills at once; the fill reaches the restarted position handler.
        _post_until_accepted(stack, symbol="POS/USDT", order_type="MARKET", price="10")
        stream.wait_for(
            lambda event: event["event"] == "position_update" and event["data"]["symbol"] == "POS/USDT",
            "a position event after positions came back",
        )
    finally:
        stream.close()


def _post_until_accepted(stack: Stack, **fields: str) -> None:
    # RUNNING means alive for startsecs, not yet listening: a restarted webhook may still be binding.
    def accepted() -> bool:
        try:
            stack.post_signal("btc-trend", **fields)
        except OSError:  # refused: not listening yet
            return False
        return True
    wait_until(accepted, timeout=20, what="the webhook to accept a signal", poll=0.2)


def test_sigterm_stops_every_program_cleanly_and_removes_the_socket(tmp_path: Path) -> None:
    stack = Stack.in_new_folder(tmp_path / "stack").start()
    pids = [pid for _, pid in stack.status().values()]
    assert stack.stop() == 0

    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    log = (stack.root / "var" / "log" / "supervisord.log").read_text()
    assert "SIGKILL" not in log, "a program outlived stopwaitsecs"
    for program in ("broker", "orders", "positions", "streamer-0", "streamer-1", "webhook"):
        assert f"stopped: {program} (exit status 0)" in log, program
    assert not (stack.root / "var" / "supervisor.sock").exists()
    # The normal path logs no CRIT line (no unauthenticated socket, not root without -u).
    assert "CRIT" not in log and "CRIT" not in (stack.root / "var" / "supervisord.out").read_text()
