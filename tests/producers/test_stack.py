"""End to end over real processes: broker, orders, positions and webhook as console scripts.

webhook POST → order handler → broker → a real SUB client; then a trade-log
replay whose tick fills the order, and the position handler's event; a replay
SIGKILLed after a batch and run again, whose orders are placed and filled once. One stack
per module (starting Python processes is the slow part); tests run in order.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from bus import codec, protocol
from bus.topics import StreamKey, key_topic
from producers.replay_sinks import INBOX_BATCH
from store.handoff import Execution, InboxCommand
from store.models import Order, Position
from tests.faults.crashpoint import ENV, LAUNCHER, CrashPoint
from tests.ports import assert_held_outside_ephemeral, reserved_ports
from tests.producers.conftest import World, world_at
from tests.waiting import PROCESS_START_S, wait_until

# One worker runs all of them (--dist loadgroup, setup.cfg), so the module's `stack` starts once, not once per worker.
pytestmark = pytest.mark.xdist_group("producers-stack")

BIN = Path(sys.executable).parent
STOP_DEADLINE_S = 5.0


class Process:
    """One console script of the stack, its stderr in a log file."""

    def __init__(self, name: str, log_dir: Path, *args: str) -> None:
        self.name, self.args = name, list(args)
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready: str) -> re.Match[str]:
        """Start, and return the log line's match once `ready` appears in it."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([str(BIN / f"tradestream-{self.name}"), *self.args], stderr=log)
        pattern = re.compile(ready)
        return wait_until(lambda: pattern.search(self.log_path.read_text()[offset:]), timeout=PROCESS_START_S, what=f"{self.name} to be ready")

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=STOP_DEADLINE_S)

    def stop_as_make_run_does(self) -> int:
        """SIGINT (Ctrl-C reaches the whole process group), then SIGTERM from supervisord, again and again
        until the process has exited: however late a repeated stop lands in the shutdown, the exit stays clean."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_DEADLINE_S
        while time.monotonic() < deadline:
            try:
                return self.proc.wait(timeout=0.002)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=0)

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()


class Stack:
    """The running processes, their endpoints, and a SUB client on the broker."""

    def __init__(self, world: World, log_dir: Path, ctx: zmq.Context[Any]) -> None:
        self.world, self.ctx = world, ctx
        # Handed to the processes, which may restart on them: reserved until close() (tests/ports.py).
        self.ports = reserved_ports(4)
        acks = f"tcp://127.0.0.1:{self.ports.ports[0]}"
        broker = Process("broker", log_dir, "--ingress", "tcp://127.0.0.1:*", "--publish", "tcp://127.0.0.1:*",
                         "--replay", "tcp://127.0.0.1:*", "--ack-ingress", acks)
        self.processes = {"broker": broker}
        self.sub = ctx.socket(zmq.SUB)
        try:
            self._start(world, log_dir, broker, acks)
        except BaseException:
            self.close()  # a process that did not start must not outlive the test
            raise

    def _start(self, world: World, log_dir: Path, broker: Process, acks: str) -> None:
        self.ingress, self.publish, _ = broker.start(r"listening ingress=(\S+) publish=(\S+) replay=(\S+)").groups()
        orders, fills_port, webhook = self.ports.ports[1:]
        self.orders_endpoint = f"tcp://127.0.0.1:{orders}"
        fills = f"tcp://127.0.0.1:{fills_port}"
        self.webhook_url = f"http://127.0.0.1:{webhook}/api/webhook"
        common = ["--database-url", world.url, "--ack-ingress", acks]
        self.processes.update({
            "orders": Process("orders", log_dir, *common, "--orders", self.orders_endpoint, "--fills", fills,
                              "--metrics-port", "0"),
            "positions": Process("positions", log_dir, *common, "--fills", fills, "--metrics-port", "0"),
            "webhook": Process("webhook", log_dir, "--database-url", world.url, "--orders", self.orders_endpoint,
                               "--port", self.webhook_url.split(":")[2].split("/")[0]),
        })
        self.metrics_ports: dict[str, int] = {}
        for name in ("orders", "positions", "webhook"):
            started = self.processes[name].start(f"{name} listening on .*metrics port (\\d+)" if name != "webhook"
                                                 else "webhook listening on")
            if name != "webhook":
                self.metrics_ports[name] = int(started.group(1))
        self.sub.connect(self.publish)

    def metrics(self, name: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The samples of a handler's GET /metrics, by (name, labels)."""
        url = f"http://127.0.0.1:{self.metrics_ports[name]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text) for sample in family.samples}

    def subscribe(self, key: StreamKey) -> None:
        """Subscribe, and return once the broker's head marker says the subscription is live."""
        topic = key_topic(key)
        self.sub.subscribe(topic)
        while True:
            frames = self.receive_frames()
            if frames[0] == topic and codec.unpack_map(frames[2]).get("kind") == protocol.HEAD:
                return

    def receive_frames(self, timeout_ms: int = 5000) -> list[bytes]:
        if not self.sub.poll(timeout_ms, zmq.POLLIN):
            raise AssertionError(f"no event within {timeout_ms} ms")
        return self.sub.recv_multipart()

    def events(self, count: int) -> list[tuple[bytes, int, dict[str, Any]]]:
        """The next `count` key events as (topic, seq, payload), skipping markers and control frames."""
        received = []
        while len(received) < count:
            topic, header, payload = self.receive_frames()
            wire = codec.unpack_map(payload)
            if topic.startswith(b"k/") and not protocol.is_private(wire["kind"]):
                received.append((topic, protocol.unpack_header(header).seq, wire))
        return received

    def post(self, body: bytes | dict[str, Any]) -> tuple[int, dict[str, Any]]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(self.webhook_url, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def close(self) -> None:
        try:
            self.sub.close(linger=0)
            for process in self.processes.values():
                process.kill()
        finally:
            self.ports.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, demo_template: tuple[Path, dict[str, Any]]) -> Iterator[Stack]:
    yield from _new_stack(tmp_path_factory, demo_template)


@pytest.fixture
def own_stack(tmp_path_factory: pytest.TempPathFactory, demo_template: tuple[Path, dict[str, Any]]) -> Iterator[Stack]:
    """A stack of the test's own: its positions and re-marks do not reach the module's other tests."""
    yield from _new_stack(tmp_path_factory, demo_template)


def _new_stack(tmp_path_factory: pytest.TempPathFactory, demo_template: tuple[Path, dict[str, Any]]) -> Iterator[Stack]:
    template, demo = demo_template
    folder = tmp_path_factory.mktemp("stack")
    (folder / "var").mkdir()
    shutil.copyfile(template, folder / "var" / "tradestream.db")
    world = world_at(folder / "var" / "tradestream.db", demo)
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        running = Stack(world, folder, ctx)
        try:
            running.subscribe(StreamKey(world.user_ids["alice"], world.strategy_ids["btc-trend"]))
            running.subscribe(StreamKey(world.user_ids["bob"], world.strategy_ids["btc-trend"]))
            yield running
        finally:
            running.close()
    finally:
        world.engine.dispose()
        ctx.destroy(linger=0)


def example(stack: Stack, **fields: Any) -> dict[str, Any]:
    return {"group_name": "btc-trend", "token": stack.world.tokens["btc-trend"], "symbol": "BTC/USDT",
            "side": "buy", "order_type": "LIMIT", "price": "90000", "qty_per": 5, **fields}


def keys_of(events: list[tuple[bytes, int, dict[str, Any]]]) -> dict[bytes, list[tuple[int, str]]]:
    by_key: dict[bytes, list[tuple[int, str]]] = {}
    for topic, seq, wire in events:
        by_key.setdefault(topic, []).append((seq, wire.get("event_type", wire["kind"])))
    return by_key


def test_webhook_post_reaches_a_subscriber_on_each_account_owners_key(stack: Stack) -> None:
    alice, bob = (key_topic(StreamKey(stack.world.user_ids[u], 1)) for u in ("alice", "bob"))
    started = time.perf_counter()
    assert stack.post(example(stack)) == (200, {"status": "accepted", "signals": 1})
    events = stack.events(2)
    elapsed_ms = (time.perf_counter() - started) * 1000
    print(f"webhook POST -> both order_created events on the bus: {elapsed_ms:.1f} ms")
    assert keys_of(events) == {alice: [(1, "order_created")], bob: [(1, "order_created")]}
    for topic, _, wire in events:
        assert key_topic(StreamKey(wire["user_id"], wire["strategy_id"])) == topic
        assert (wire["symbol"], wire["side"], wire["status"], wire["price"]) == ("BTC/USDT", "BUY", "NEW", "90000.00")


def test_the_ports_handed_to_the_processes_stay_reserved_outside_the_ephemeral_range(stack: Stack) -> None:
    handed = [stack.processes["broker"].args[-1], stack.orders_endpoint, stack.processes["positions"].args[-3], stack.webhook_url]
    ports = [int(address.split(":")[2].split("/")[0]) for address in handed]
    assert sorted(ports) == sorted(stack.ports.ports), ports
    assert_held_outside_ephemeral(ports, len(stack.ports.ports))


def test_replayed_tick_fills_the_order_and_moves_the_position(own_stack: Stack, tmp_path: Path) -> None:
    # Its own stack and its own resting order: on the module's stack it depended on the first test's
    # order, and failed whenever xdist ran it on the other worker (or alone).
    stack = own_stack
    assert stack.post(example(stack, id="tick-fills"))[0] == 200  # LIMIT buy at 90000: rests
    assert keys_of(stack.events(2)) == {key_topic(StreamKey(stack.world.user_ids[u], 1)): [(1, "order_created")]
                                        for u in ("alice", "bob")}
    log = tmp_path / "small.jsonl"
    log.write_text(
        '{"ts": 0, "type": "tick", "symbol": "BTC/USDT", "price": 91000, "volume": 1}\n'
        '{"ts": 0.01, "type": "tick", "symbol": "BTC/USDT", "price": 89900, "volume": 1}\n'
        '{"ts": 0.02, "type": "signal", "group_name": "btc-trend", "symbol": "BTC/USDT", "side": "sell", "order_type": "MARKET", "price": 92000, "qty_per": 1}\n'
    )
    result = subprocess.run([str(BIN / "tradestream-replay"), str(log), "--speed", "0", "--orders", stack.orders_endpoint,
                             "--database-url", stack.world.url],
                            capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr.decode()
    assert b"3 records sent" in result.stderr
    events = stack.events(8)
    by_key = keys_of(events)
    assert len(by_key) == 2
    for _topic, received in by_key.items():
        # Order and position events come from two processes: each kind keeps its own order.
        assert [name for _, name in received if name.startswith("order_")] == ["order_filled", "order_filled"]
        assert [name for _, name in received if name.startswith("position_")] == ["position_created", "position_updated"]
        assert [seq for seq, _ in received] == [2, 3, 4, 5]
    alice = [w for _, _, w in events if w["user_id"] == stack.world.user_ids["alice"]]
    limit_fill, market_fill = (w for w in alice if w["kind"] == "order_update")
    assert (limit_fill["status"], limit_fill["quantity"], limit_fill["average_price"]) == ("FILLED", "0.05555555", "90000.0000000000")
    assert (market_fill["order_type"], market_fill["side"], market_fill["quantity"]) == ("MARKET", "SELL", "0.01086956")
    final = [w for w in alice if w["kind"] == "position_update"][-1]
    assert Decimal(final["quantity"]) == Decimal("0.05555555") - Decimal("0.01086956")  # exact


def test_a_replay_killed_after_a_batch_then_run_again_has_each_order_placed_and_filled_once(
    own_stack: Stack, tmp_path: Path
) -> None:
    stack, world = own_stack, own_stack.world
    ticks = INBOX_BATCH + 200  # the signal and the first ticks in the first batch, the filling tick in the second
    log = tmp_path / "session.jsonl"
    log.write_text(
        '{"ts": 0, "type": "signal", "group_name": "btc-trend", "symbol": "BTC/USDT", "side": "buy", "order_type": "LIMIT", "price": 90000, "qty_per": 5}\n'
        + "".join(f'{{"ts": 0, "type": "tick", "symbol": "BTC/USDT", "price": {95000 + n}}}\n' for n in range(ticks))
        + '{"ts": 0, "type": "tick", "symbol": "BTC/USDT", "price": 89000, "volume": 10}\n'
    )
    args = [str(log), "--speed", "0", "--orders", stack.orders_endpoint, "--database-url", world.url]
    crash = CrashPoint("replay", "before", "bus.publisher:Publisher.send", 1)  # batch 1 committed, not its wake-up
    killed = subprocess.run([sys.executable, str(LAUNCHER), "tradestream-replay", *args],
                            env={**os.environ, ENV: crash.spec}, capture_output=True, text=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL and crash.line in killed.stderr, killed.stderr
    again = subprocess.run([str(BIN / "tradestream-replay"), *args], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr

    records = ticks + 2
    with world.sessions() as session:
        def handled_all() -> bool:
            session.rollback()  # a new snapshot each poll
            counts = session.execute(select(func.count(), func.count(InboxCommand.handled_at))).one()
            return counts[0] >= records and counts[0] == counts[1]

        wait_until(handled_all, timeout=60, what="the order handler to handle every replayed line", poll=0.05)
        assert session.scalar(select(func.count()).select_from(InboxCommand)) == records
        orders = session.scalars(select(Order)).all()
        assert sorted((o.order_type, o.status) for o in orders) == [("LIMIT", "FILLED")] * 2  # alice's and bob's
        assert session.scalar(select(func.count()).select_from(Execution)) == 2
        filled = {o.account_id: o.filled_quantity for o in orders}

        def positions() -> dict[int, Decimal]:
            session.rollback()  # a new snapshot each poll (and the objects expired)
            return {p.account_id: p.quantity for p in session.scalars(select(Position))}

        wait_until(lambda: positions() == filled, timeout=30, what="each account's position to hold its fill once")
    assert f"resuming {log} after line {INBOX_BATCH} of a run started at" in again.stderr


def test_handlers_metrics_count_exactly_the_commands_events_and_fills_done(own_stack: Stack, tmp_path: Path) -> None:
    before = {name: own_stack.metrics(name) for name in ("orders", "positions")}
    assert own_stack.post(example(own_stack, price="80000", id="metrics-limit"))[0] == 200  # below the last tick: rests
    log = tmp_path / "tick.jsonl"
    log.write_text('{"ts": 0, "type": "tick", "symbol": "BTC/USDT", "price": 79000, "volume": 1}\n')
    result = subprocess.run([str(BIN / "tradestream-replay"), str(log), "--speed", "0", "--orders", own_stack.orders_endpoint,
                             "--database-url", own_stack.world.url], capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr.decode()
    events = own_stack.events(6)  # both accounts: order_created, order_filled, a position event
    assert sorted(wire.get("event_type", "") for _, _, wire in events if wire["kind"] == "order_update") == [
        "order_created", "order_created", "order_filled", "order_filled"]
    o, p = "tradestream_orders", "tradestream_positions"
    expected = {
        "orders": {
            (f"{o}_commands_handled_total", (("kind", "signal"),)): 1,
            (f"{o}_commands_handled_total", (("kind", "tick"),)): 1,
            (f"{o}_order_events_total", (("event_type", "order_created"),)): 2,
            (f"{o}_order_events_total", (("event_type", "order_filled"),)): 2,
            (f"{o}_handling_latency_seconds_count", ()): 2,
            (f"{o}_commands_failed_total", ()): 0,
            (f"{o}_outbox_relayed_total", ()): 4,
            (f"{o}_outbox_rejected_total", ()): 0,
        },
        "positions": {
            (f"{p}_fills_applied_total", ()): 2,
            (f"{p}_fill_latency_seconds_count", ()): 2,
            (f"{p}_fills_failed_total", ()): 0,
            (f"{p}_outbox_relayed_total", ()): 2,
        },
    }

    def moved(name: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        now = own_stack.metrics(name)
        return {key: now.get(key, 0.0) - before[name].get(key, 0.0) for key in expected[name]}

    for name in ("orders", "positions"):  # the relay's confirmation may come just after the event
        wait_until(lambda name=name: moved(name) == expected[name], what=f"{name}'s metrics", poll=0.05)  # type: ignore[misc]
        assert own_stack.metrics(name)[(f"{'tradestream_' + name}_outbox_pending_events", ())] == 0


def test_oversized_body_gets_a_json_413_from_the_real_server(stack: Stack) -> None:
    body = json.dumps(example(stack, padding="x" * 70_000)).encode()
    assert stack.post(body)[0] == 413


def test_command_accepted_while_the_order_handler_restarts_is_not_lost(stack: Stack) -> None:
    orders = stack.processes["orders"]
    assert orders.terminate() == 0
    assert stack.post(example(stack, price="85000", id="during-restart"))[0] == 200
    orders.start("orders listening on")
    events = stack.events(2)
    assert [(w["event_type"], w["price"]) for _, _, w in events] == [("order_created", "85000.00")] * 2


def test_raw_replay_publishes_logged_events_straight_to_the_broker(stack: Stack, tmp_path: Path) -> None:
    alice = stack.world.user_ids["alice"]
    event = {
        "kind": "order_update", "event_type": "order_cancelled", "order_id": "logged-1", "symbol": "ETH/USDT",
        "strategy_id": 1, "user_id": alice, "side": "SELL", "quantity": 2.0, "price": 3100.0, "status": "CANCELLED",
        "timestamp": "2025-01-06T09:30:00.000000Z", "order_type": "LIMIT", "stop_price": None,
        "account": {"account_id": 1, "name": "alice paper", "exchange": "paper"}, "suppress_toast": False,
        "filled_quantity": 0.0, "average_price": None, "fill_quantity": None, "fill_price": None,
    }
    log = tmp_path / "events.jsonl"
    log.write_text(json.dumps({"ts": 1, "type": "event", "event": event}) + "\n"
                   + '{"ts": 2, "type": "tick", "symbol": "ETH/USDT", "price": 1}\n')
    result = subprocess.run([str(BIN / "tradestream-replay"), str(log), "--raw", "--speed", "0", "--ingress", stack.ingress],
                            capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr.decode()
    assert b"1 records sent" in result.stderr and b"1 of the other mode passed over" in result.stderr
    ((topic, _, wire),) = stack.events(1)
    assert topic == key_topic(StreamKey(alice, 1))
    # A plain publisher's numbers arrive as decimal strings of their shortest digits (CONTRACT §4).
    as_strings = {"quantity": "2.0", "price": "3100.0", "filled_quantity": "0.0"}
    assert {k: v for k, v in wire.items() if k != "published_ns"} == {**event, **as_strings}


def test_every_process_exits_0_within_5_s_on_sigint_then_repeated_sigterms(stack: Stack) -> None:
    for name in ("webhook", "orders", "positions", "broker"):
        started = time.monotonic()
        assert stack.processes[name].stop_as_make_run_does() == 0, name
        assert time.monotonic() - started < STOP_DEADLINE_S
    for name in ("webhook", "orders", "positions"):
        assert "Traceback" not in stack.processes[name].log_path.read_text()


@pytest.mark.parametrize("module", ["webhook", "orders", "positions", "replay"])
def test_help_works_and_bad_settings_exit_2_with_a_reason(module: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    main = __import__(f"producers.{module}", fromlist=["main"]).main
    with pytest.raises(SystemExit) as helped:
        main(["--help"])
    assert helped.value.code == 0 and "TRADESTREAM_" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        main(["--no-such-flag"] + (["trades.jsonl"] if module == "replay" else []))
    assert refused.value.code == 2 and "--no-such-flag" in capsys.readouterr().err
    if module == "webhook":
        monkeypatch.setitem(os.environ, "TRADESTREAM_RATE_LIMIT", "-1")
        with pytest.raises(SystemExit) as bad_env:
            main([])
        assert bad_env.value.code == 2 and "TRADESTREAM_RATE_LIMIT" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["orders", "positions"])
def test_metrics_port_is_off_by_default_and_a_bad_one_exits_2(
    module: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    parse = __import__(f"producers.{module}", fromlist=["parse_config"]).parse_config
    monkeypatch.delenv("TRADESTREAM_METRICS_PORT", raising=False)
    assert [parse(argv)[0].metrics_port for argv in ([], ["--metrics-port", "off"], ["--metrics-port", "0"])] == [None, None, 0]
    with pytest.raises(SystemExit) as refused:
        parse(["--metrics-port", "65536"])
    assert refused.value.code == 2
    assert "--metrics-port: expected an integer 0..65535 or off, got '65536'" in capsys.readouterr().err
