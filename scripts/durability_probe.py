"""Loss under SIGKILL and webhook → browser latency, measured on one or more checkouts in one run.

    .venv/bin/python scripts/durability_probe.py before=/tmp/base after=. --rounds 3
    .venv/bin/python scripts/durability_probe.py after=. nojournal=.:nojournal --latency-only

For each checkout (a folder with the project's packages; the processes run as
`python -m ...` with PYTHONPATH set to it, on this interpreter's libraries) it
starts the stack on free ports in a temporary folder (broker, orders, positions,
webhook, streamer; a fresh SQLite demo database) and measures:

- latency: one real SSE client follows bob's sol-scalp stream; N webhook LIMIT
  signals are sent one at a time, each timed from just before its POST until its
  `order_created` frame arrives on the stream (p50, p99, max);
- orders SIGKILL: a burst of 300 signals (8 senders), `kill -9` of
  tradestream-orders after the first 100 answered 200, restarted at once as
  supervisord would; signals answered 200 vs signals that got orders;
- positions SIGKILL: a burst of 300 MARKET BUY signals (each one fill), `kill -9`
  of tradestream-positions after the first 100 answered, restarted at once; the
  positions table's quantity vs the signed sum of the filled orders.

With --rounds N the checkouts are measured N times, alternately (this machine's
load varies by the minute), and the median of the rounds' p50/p99 is printed
last. A checkout given as FOLDER:nojournal runs its broker without --journal.
Not a test: it asserts nothing and prints figures (also as JSON with --json).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

BURST = 300
KILL_AFTER = 100
SENDERS = 8
QUIET_S = 3.0
DEADLINE_S = 60.0
MODULES = {
    "broker": "bus.broker",
    "orders": "producers.orders",
    "positions": "producers.positions",
    "webhook": "producers.webhook",
    "streamer": "streamer.server",
}
READY = {
    "broker": r"listening",
    "orders": r"orders listening on",
    "positions": r"positions listening on",
    "webhook": r"webhook listening on",
    "streamer": r"streamer listening on",
}


def free_ports(count: int) -> list[int]:
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def wait_for(condition: Any, what: str, timeout: float = DEADLINE_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


class Stack:
    """The five processes of one checkout, on free ports, in a temporary folder."""

    def __init__(self, checkout: Path, root: Path, journal: bool = True) -> None:
        self.checkout, self.root = checkout, root
        self.db = root / "tradestream.db"
        ingress, publish, replay, orders, fills, http_port, webhook_port, ack = free_ports(8)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESTREAM_")}
        self.env.update(PYTHONPATH=str(checkout), PYTHONUNBUFFERED="1")
        url = f"sqlite:///{self.db}"
        broker = ["--ingress", f"tcp://127.0.0.1:{ingress}", "--publish", f"tcp://127.0.0.1:{publish}",
                  "--replay", f"tcp://127.0.0.1:{replay}"]
        if self.has_flag(MODULES["broker"], "--ack-ingress"):
            broker += ["--ack-ingress", f"tcp://127.0.0.1:{ack}"]
        if journal and self.has_flag(MODULES["broker"], "--journal"):
            broker += ["--journal", str(root / "journal.db")]
        # Before issue 9 the producers push events to the plain ingress; after it their relays use the ack ingress.
        durable = self.has_flag(MODULES["orders"], "--ack-ingress")
        bus = ["--ack-ingress", f"tcp://127.0.0.1:{ack}"] if durable else ["--ingress", f"tcp://127.0.0.1:{ingress}"]
        self.args = {
            "broker": broker,
            "orders": ["--database-url", url, *bus, "--orders", f"tcp://127.0.0.1:{orders}", "--fills", f"tcp://127.0.0.1:{fills}"],
            "positions": ["--database-url", url, *bus, "--fills", f"tcp://127.0.0.1:{fills}"],
            "webhook": ["--database-url", url, "--orders", f"tcp://127.0.0.1:{orders}", "--port", str(webhook_port), "--rate-limit", "100000"],
            "streamer": ["--database-url", url, "--ingress", f"tcp://127.0.0.1:{ingress}", "--publish", f"tcp://127.0.0.1:{publish}",
                         "--replay", f"tcp://127.0.0.1:{replay}", "--port", str(http_port), "--secret", "probe-secret"],
        }
        self.webhook_url = f"http://127.0.0.1:{webhook_port}/api/webhook"
        self.http_port = http_port
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        demo = subprocess.run([sys.executable, "-m", "store.admin", "--database-url", url, "demo", "--json"],
                              env=self.env, cwd=root, capture_output=True, check=True)
        self.demo = json.loads(demo.stdout)
        try:
            for name in MODULES:
                self.start(name)
        except BaseException:
            self.close()
            raise

    def has_flag(self, module: str, flag: str) -> bool:
        result = subprocess.run([sys.executable, "-m", module, "--help"], env=self.env, cwd=self.root, capture_output=True, text=True)
        return flag in result.stdout

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def start(self, name: str) -> None:
        log_path = self.log(name)
        offset = log_path.stat().st_size if log_path.exists() else 0
        with open(log_path, "ab") as log:
            self.procs[name] = subprocess.Popen([sys.executable, "-m", MODULES[name], *self.args[name]],
                                                env=self.env, cwd=self.root, stderr=log, stdout=subprocess.DEVNULL)
        pattern = re.compile(READY[name])
        try:
            wait_for(lambda: pattern.search(log_path.read_text()[offset:]), f"{name} to start")
        except SystemExit:
            print(log_path.read_text()[offset:][-2000:], file=sys.stderr)
            raise

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait()

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    def strategy(self, group: str) -> dict[str, Any]:
        return next(s for s in self.demo["strategies"] if s["group_name"] == group)

    def token_of(self, username: str) -> str:
        return str(next(u for u in self.demo["users"] if u["username"] == username)["api_token"])

    def post(self, body: dict[str, Any]) -> int:
        request = urllib.request.Request(self.webhook_url, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except OSError:
            return 0

    def query(self, sql: str) -> Any:
        with sqlite3.connect(self.db, timeout=10) as connection:
            return connection.execute(sql).fetchone()[0]


class SseClient:
    """A real event-stream reader: a thread parses frames and stamps their arrival."""

    def __init__(self, port: int, strategy_id: int, token: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.connection.request("GET", f"/api/events/stream?strategy_id={strategy_id}",
                                headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"})
        self._socket = self.connection.sock  # http.client forgets it once the response is read
        self.response = self.connection.getresponse()
        assert self.response.status == 200, self.response.status
        self.frames: queue.Queue[tuple[float, str, dict[str, Any]]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            for raw in iter(self.response.readline, b""):
                line = raw.decode().rstrip("\r\n")
                if line:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
                elif "event" in fields:
                    self.frames.put((time.perf_counter(), fields["event"], json.loads(fields.get("data") or "null")))
                    fields = {}
        except (OSError, ValueError, http.client.HTTPException):
            pass

    def wait_price(self, price: float, timeout: float = 10.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                arrived, event, data = self.frames.get(timeout=0.1)
            except queue.Empty:
                continue
            if event == "order_update" and data.get("price") == price:
                return arrived
        raise SystemExit(f"no event with price {price} within {timeout} s")

    def close(self) -> None:
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.connection.close()


def signal_body(stack: Stack, **fields: Any) -> dict[str, Any]:
    return {"group_name": "sol-scalp", "token": stack.strategy("sol-scalp")["webhook_token"],
            "symbol": "SOL/USDT", "side": "buy", "order_type": "LIMIT", "price": "100", "qty_per": 1, **fields}


def measure_latency(stack: Stack, count: int) -> dict[str, float]:
    client = SseClient(stack.http_port, stack.strategy("sol-scalp")["id"], stack.token_of("bob"))
    time.sleep(0.5)  # the stream's subscription settles; the first signal is not timed anyway
    samples = []
    try:
        for n in range(count + 5):
            price = 10.0 + n / 100
            started = time.perf_counter()
            status = stack.post(signal_body(stack, price=str(price)))
            assert status == 200, status
            arrived = client.wait_price(price)
            if n >= 5:  # warm-up
                samples.append((arrived - started) * 1000)
    finally:
        client.close()
    samples.sort()
    return {"n": len(samples), "p50_ms": round(statistics.median(samples), 2),
            "p99_ms": round(samples[int(0.99 * (len(samples) - 1))], 2), "max_ms": round(samples[-1], 2)}


def burst(stack: Stack, victim: str, bodies: list[dict[str, Any]]) -> int:
    """Send `bodies` from SENDERS threads; SIGKILL and restart `victim` after KILL_AFTER answers. Answered 200."""
    answered = 0
    lock = threading.Lock()
    killed = threading.Event()
    restart = threading.Thread(target=stack.start, args=(victim,), daemon=True)

    def send(body: dict[str, Any]) -> None:
        nonlocal answered
        status = stack.post(body)
        while status == 0:  # the webhook itself is never the victim here; a retry is the sender's duty
            status = stack.post(body)
        with lock:
            answered += status == 200
            if answered >= KILL_AFTER and not killed.is_set():
                killed.set()
                stack.kill(victim)
                restart.start()

    with ThreadPoolExecutor(SENDERS) as pool:
        list(pool.map(send, bodies))
    restart.join()
    return answered


def settle(stack: Stack, sql: str) -> Any:
    """The value of `sql` once it stopped changing for QUIET_S seconds."""
    last, since = None, time.monotonic()
    deadline = since + DEADLINE_S
    while time.monotonic() < deadline:
        value = stack.query(sql)
        if value != last:
            last, since = value, time.monotonic()
        elif time.monotonic() - since >= QUIET_S:
            return value
        time.sleep(0.1)
    return last


def orders_kill(stack: Stack) -> dict[str, int]:
    first = stack.query("SELECT coalesce(max(id), 0) FROM signals")
    bodies = [signal_body(stack, price=str(50 + n / 100), id=f"ok-{n}") for n in range(BURST)]
    answered = burst(stack, "orders", bodies)
    with_orders = settle(stack, f"SELECT count(DISTINCT signal_id) FROM orders WHERE signal_id > {first}")
    stored = stack.query(f"SELECT count(*) FROM signals WHERE id > {first}")
    return {"answered_200": answered, "signals_stored": stored, "signals_with_orders": with_orders,
            "lost": stored - with_orders}


def positions_kill(stack: Stack) -> dict[str, float]:
    bodies = [signal_body(stack, order_type="MARKET", price="150", id=f"pk-{n}") for n in range(BURST)]
    answered = burst(stack, "positions", bodies)
    filled_sql = ("SELECT round(coalesce(sum(CASE side WHEN 'BUY' THEN filled_quantity ELSE -filled_quantity END), 0), 6)"
                  " FROM orders WHERE symbol = 'SOL/USDT' AND order_type = 'MARKET'")
    fills = settle(stack, "SELECT count(*) FROM orders WHERE order_type = 'MARKET' AND status = 'FILLED'")
    filled = stack.query(filled_sql)
    held = settle(stack, "SELECT round(coalesce(sum(quantity), 0), 6) FROM positions WHERE symbol = 'SOL/USDT'")
    per_fill = filled / fills if fills else 0
    return {"answered_200": answered, "fills": fills, "filled_quantity": filled, "position_quantity": held,
            "fills_missing_from_position": round((filled - held) / per_fill) if per_fill else 0}


def probe(checkout: Path, journal: bool, latency_count: int, kills: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="durability-probe-") as folder:
        stack = Stack(checkout, Path(folder), journal)
        try:
            result: dict[str, Any] = {"latency": measure_latency(stack, latency_count)}
            if kills:
                result.update(orders_kill=orders_kill(stack), positions_kill=positions_kill(stack))
            return result
        finally:
            stack.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="+", help="NAME=FOLDER, one per checkout to measure")
    parser.add_argument("--latency-count", type=int, default=200)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--latency-only", action="store_true", help="skip the SIGKILL measurements")
    parser.add_argument("--rounds", type=int, default=1, help="measure every checkout this many times, alternately")
    args = parser.parse_args()
    results: dict[str, list[dict[str, Any]]] = {}
    for round_number in range(args.rounds):
        for item in args.checkouts:
            name, _, spec = item.partition("=")
            folder, _, option = spec.partition(":")
            result = probe(Path(folder).resolve(), option != "nojournal", args.latency_count, not args.latency_only)
            results.setdefault(name, []).append(result)
            print(f"round {round_number + 1}", name, json.dumps(result), flush=True)
    for name, rounds in results.items():
        medians = {key: statistics.median(r["latency"][key] for r in rounds) for key in ("p50_ms", "p99_ms")}
        print("median of", len(rounds), "rounds", name, json.dumps(medians), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
