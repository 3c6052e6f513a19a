"""The whole pipeline as real processes on free ports, and the clients the fault tests drive it with.

`Stack` runs broker (with --journal), orders, positions, webhook and one
streamer as console scripts on a copy of the demo database; each can be
SIGKILLed and restarted on the same ports, as supervisord would, or started
armed with a crash point (tests/faults/crashpoint.py) to kill itself. `Sender`
posts a burst of webhooks from a few threads, retrying each one with the same
`id` until it is answered (a webhook killed mid-request gives no answer; a
status of its `retry`, such as the 503 of a database that is down, is retried
too), and keeps the ids answered. `Follower` is a real SSE client of one stream key
that reconnects with its last event id whenever its stream ends.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.faults.crashpoint import ENV, LAUNCHER, CrashPoint
from tests.ports import reserved_ports
from tests.producers.conftest import World
from tests.waiting import wait_until

BIN = Path(sys.executable).parent
# The checkout under test: its console scripts (BIN) import the package installed in the venv (an editable
# install of another checkout, perhaps); PYTHONPATH puts this one first, as setup.cfg does for pytest.
ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0
READY = {
    "broker": r"listening",
    "orders": r"orders listening on",
    "positions": r"positions listening on",
    "webhook": r"webhook listening on",
    "streamer": r"streamer listening on",
}
ORDER = ("broker", "orders", "positions", "webhook", "streamer")
HTTP_PORT_ATTRIBUTE = {"webhook": "webhook_port", "streamer": "http_port"}
# Larger than a test's burst, so that a client catching up never meets the end of the history: these
# tests are about crashes, not about the documented resync of a client that fell 100 events behind.
HISTORY = 2000
CLIENT_BUFFER = 2000


class Stack:
    """The five processes, their logs in `folder`, restartable on the same ports (the bus's reserved until `close()`)."""

    def __init__(self, world: World, folder: Path) -> None:
        self.world, self.folder = world, folder
        self.ports = reserved_ports(6)
        ingress, ack, publish, replay, orders, fills = self.ports.ports
        bus = {name: f"tcp://127.0.0.1:{port}" for name, port in
               (("ingress", ingress), ("ack", ack), ("publish", publish), ("replay", replay), ("orders", orders), ("fills", fills))}
        self.bus = bus
        db = ["--database-url", world.url]
        self.args = {
            "broker": ["--ingress", bus["ingress"], "--ack-ingress", bus["ack"], "--publish", bus["publish"],
                       "--replay", bus["replay"], "--journal", str(folder / "journal.db"), "--history", str(HISTORY),
                       "--history-bytes", str(HISTORY * 4096)],
            "orders": [*db, "--ack-ingress", bus["ack"], "--orders", bus["orders"], "--fills", bus["fills"]],
            "positions": [*db, "--ack-ingress", bus["ack"], "--fills", bus["fills"]],
            "webhook": [*db, "--orders", bus["orders"], "--port", "0", "--rate-limit", "100000"],
            "streamer": [*db, "--ingress", bus["ingress"], "--publish", bus["publish"], "--replay", bus["replay"],
                         "--port", "0", "--secret", "faults", "--client-buffer", str(CLIENT_BUFFER)],
        }
        # The HTTP ports: 0 (any free one) at the first start, then the one it took (its `listening on` line),
        # so that no other process can take a port picked here before the server binds it.
        self.webhook_port, self.http_port = 0, 0
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.offsets: dict[str, int] = {}  # where each process's last start begins in its log
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESTREAM_")}
        self.env["PYTHONUNBUFFERED"] = "1"
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)

    def start(self, *names: str, armed: CrashPoint | None = None) -> None:
        """Start the named processes (all, in dependency order, by default) and wait until each is ready.

        The process `armed` names runs under the crash-point launcher: it SIGKILLs itself at that point.
        """
        for name in names or ORDER:
            self._start(name, armed if armed is not None and armed.process == name else None)

    def _start(self, name: str, armed: CrashPoint | None = None) -> None:
        self.launch(name, armed)
        self.wait_ready(name)

    def launch(self, name: str, armed: CrashPoint | None = None) -> None:
        """Start the process `name` without waiting for it to be ready (`wait_ready`)."""
        log_path = self.folder / f"{name}.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        command = [str(BIN / f"tradestream-{name}"), *self.args[name]]
        env = self.env
        if armed is not None:
            command = [sys.executable, str(LAUNCHER), f"tradestream-{name}", *self.args[name]]
            env = {**env, ENV: armed.spec}
        with open(log_path, "ab") as log:
            self.procs[name] = subprocess.Popen(command, cwd=self.folder, env=env, stdout=subprocess.DEVNULL, stderr=log)
        self.offsets[name] = offset

    def wait_ready(self, name: str) -> None:
        """Wait until the process `name` of the last `launch` says it listens (fails the test if it exited)."""
        log_path, offset = self.folder / f"{name}.log", self.offsets[name]
        pattern = re.compile(READY[name])
        try:
            wait_until(lambda: pattern.search(log_path.read_text()[offset:]) or self._died(name),
                       timeout=START_TIMEOUT_S, what=f"{name} to start", poll=0.02)
        except AssertionError:
            raise AssertionError(f"{name} did not start:\n{log_path.read_text()[offset:][-3000:]}") from None
        if name in HTTP_PORT_ATTRIBUTE and getattr(self, HTTP_PORT_ATTRIBUTE[name]) == 0:
            found = re.search(r"listening on http://[^\s]+:(\d+)", log_path.read_text()[offset:])
            assert found is not None, f"{name} did not say its port"
            setattr(self, HTTP_PORT_ATTRIBUTE[name], int(found[1]))
            args = self.args[name]
            args[args.index("--port") + 1] = found[1]  # its restarts bind the same port

    def _died(self, name: str) -> bool:
        code = self.procs[name].poll()
        if code is not None:
            raise AssertionError(f"{name} exited {code}:\n{(self.folder / f'{name}.log').read_text()[-3000:]}")
        return False

    def kill(self, *names: str) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        for name in names:
            self.procs[name].send_signal(signal.SIGKILL)
        for name in names:
            self.procs[name].wait()

    def crashed_at(self, point: CrashPoint, timeout: float = 20.0) -> None:
        """Wait until the armed process killed itself at `point`: SIGKILLed, and its log says where."""
        proc, log_path = self.procs[point.process], self.folder / f"{point.process}.log"
        try:
            wait_until(lambda: proc.poll() is not None, timeout=timeout, what=f"{point.process} to reach {point.spec}", poll=0.02)
        except AssertionError:
            raise AssertionError(f"{point.process} never reached {point.spec}:\n{log_path.read_text()[-3000:]}") from None
        log = log_path.read_text()[self.offsets[point.process]:]
        assert proc.returncode == -signal.SIGKILL and point.line in log, f"{point.process} died otherwise:\n{log[-3000:]}"

    def crash_and_restart(self, *names: str) -> None:
        self.kill(*names)
        self.start(*[name for name in ORDER if name in names])

    def close(self) -> None:
        """Kill what still runs, then release the ports."""
        try:
            for proc in self.procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        finally:
            self.ports.close()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(self.folder.glob("*.log")))


def signal_bodies(world: World, tag: str, count: int) -> list[dict[str, Any]]:
    """btc-trend signals: MARKET fills (both sides, so positions open, grow, shrink, flip) and resting LIMITs."""
    def body(n: int) -> dict[str, Any]:
        market = n % 4 != 3
        return {"group_name": "btc-trend", "token": world.tokens["btc-trend"], "symbol": "BTC/USDT",
                "side": "buy" if n % 3 else "sell", "order_type": "MARKET" if market else "LIMIT",
                "price": str(90_000 + n if market else 50_000 + n), "qty_per": 1 + n % 3, "id": f"{tag}-{n}"}
    return [body(n) for n in range(count)]


@dataclass
class Sender:
    """Posts webhooks from a few threads; each is retried with its `id` until answered."""

    port: int
    retry: frozenset[int] = frozenset()  # statuses that are no answer yet: sent again, as a sender's retry policy
    answered: dict[str, int] = field(default_factory=dict)  # id → status
    attempts: int = 0
    retried: Counter[int] = field(default_factory=Counter)  # answers of `retry` statuses, by status
    lock: threading.Lock = field(default_factory=threading.Lock)

    def post(self, body: dict[str, Any]) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("POST", "/api/webhook", json.dumps(body), {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def deliver(self, body: dict[str, Any], deadline: float) -> None:
        """Until an answer: a refused connection or a reset (the webhook restarting) is retried, and `retry` statuses."""
        while True:
            with self.lock:
                self.attempts += 1
            try:
                status = self.post(body)
            except (OSError, http.client.HTTPException):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)  # the pace of retrying a restarting webhook
                continue
            if status in self.retry and time.monotonic() <= deadline:
                with self.lock:
                    self.retried[status] += 1
                time.sleep(0.02)  # the pace of a sender's retries
                continue
            with self.lock:
                self.answered[body["id"]] = status
            return

    def burst(self, bodies: list[dict[str, Any]], during: Callable[[], None], after: int, threads: int = 4) -> None:
        """Send `bodies`; call `during()` once `after` of them are answered."""
        deadline = time.monotonic() + 60
        fired = threading.Event()

        def send(body: dict[str, Any]) -> None:
            self.deliver(body, deadline)
            with self.lock:
                due = len(self.answered) >= after and not fired.is_set()
                if due:
                    fired.set()
            if due:
                during()

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(send, bodies))
        assert fired.is_set(), "the burst ended before the fault was injected"


@dataclass
class Received:
    """What a follower saw: key events as (id, event, data), resyncs, and how many connections it made."""

    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    resyncs: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0


class Follower:
    """A real SSE client of one key that resumes with its last event id whenever its stream ends."""

    def __init__(self, port: int, strategy_id: int, token: str) -> None:
        self.port, self.strategy_id, self.token = port, strategy_id, token
        self.received = Received()
        self.last_event_id: str | None = None
        self._stop = threading.Event()
        self._socket: socket.socket | None = None
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sse-follower", daemon=True)
        self._thread.start()
        wait_until(self._connected.is_set, timeout=10, what="the follower's first stream")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except (OSError, ValueError, http.client.HTTPException):
                pass  # the streamer is restarting: reconnect
            time.sleep(0.05)  # the pace of reconnecting, as a browser's retry

    def _follow(self) -> None:
        query: dict[str, Any] = {"strategy_id": self.strategy_id}
        if self.last_event_id is not None:
            query["last_event_id"] = self.last_event_id
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        connection.connect()
        self._socket = connection.sock
        connection.request("GET", f"/api/events/stream?{urlencode(query)}", headers={"Authorization": f"Bearer {self.token}"})
        response = connection.getresponse()
        if response.status != 200:
            connection.close()
            return
        self.received.connections += 1
        self._connected.set()
        for event_id, event, data in _frames(response):
            if event == "resync":
                self.received.resyncs.append(data)
            elif event == "connection" and self.last_event_id is None and isinstance(data, dict):
                # Nothing received yet: resume from the head this stream started at, as the page does.
                # Without it a streamer killed before the first event left the next stream starting at a
                # later head, and the events between were never on this follower's stream.
                self.last_event_id = data.get("last_event_id")
            elif event_id is not None:
                self.received.events.append((event_id, event, data))
                self.last_event_id = event_id
        connection.close()

    def close(self) -> Received:
        self._stop.set()
        if self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)
        return self.received


def _frames(response: http.client.HTTPResponse) -> Iterable[tuple[str | None, str, Any]]:
    fields: dict[str, str] = {}
    for raw in iter(response.readline, b""):
        line = raw.decode().rstrip("\r\n")
        if line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        elif "event" in fields:
            yield fields.get("id"), fields["event"], json.loads(fields.get("data") or "null")
            fields = {}
