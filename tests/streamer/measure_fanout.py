"""A rough fan-out measurement of a real streamer process (not a test; tradestream-bench is the real harness).

    .venv/bin/python -m tests.streamer.measure_fanout --clients 1000 --keys 100 --rate 2000 --duration 10
    .venv/bin/python -m tests.streamer.measure_fanout --idle 10000

Starts a broker and a streamer as subprocesses on a fresh SQLite database, opens
the clients from a separate process (so their cost is not counted), publishes
at a steady rate, and reports deliveries/s, streamer CPU µs per delivery and
RSS per idle connection (from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TICK = os.sysconf("SC_CLK_TCK")


def wait_for(pattern: str, path: Path, timeout: float = 20) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, path.read_text())
        if match:
            return match
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {pattern!r} in {path}:\n{path.read_text()[-2000:]}")


def cpu_seconds(pid: int) -> float:
    user, system = cpu_split(pid)
    return user + system


def cpu_split(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def seed(url: str, keys: int) -> tuple[int, str]:
    from store import actions
    from store.db import init_db, make_engine, make_session_factory

    engine = make_engine(url)
    init_db(engine)
    with make_session_factory(engine)() as session:
        user, token = actions.create_user(session, None, "bench", "bench-pw", is_admin=True)
        for n in range(keys):
            actions.create_strategy(session, None, "bench", f"S{n}", f"s{n}")
    engine.dispose()
    return user.id, token


# -- the client process ---------------------------------------------------------


async def client_main(port: int, token: str, keys: int, count: int, concurrency: int) -> None:
    frames = 0
    connected = 0

    async def one(n: int, gate: asyncio.Semaphore) -> None:
        nonlocal frames, connected
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            strategy_id = n % keys + 1
            writer.write(f"GET /api/events/stream?strategy_id={strategy_id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            await reader.readuntil(b"event: connection")
        connected += 1
        while chunk := await reader.read(65536):
            frames += chunk.count(b"\nid: ") + chunk.startswith(b"id: ")

    gate = asyncio.Semaphore(concurrency)
    tasks = [asyncio.ensure_future(one(n, gate)) for n in range(count)]
    while connected < count:
        await asyncio.sleep(0.05)
        for task in tasks:
            if task.done() and task.exception():
                raise task.exception()  # type: ignore[misc]
    print(json.dumps({"connected": connected}), flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        print(json.dumps({"frames": frames}), flush=True)


# -- the orchestrator -----------------------------------------------------------


def start(args: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, *args], stderr=out, cwd=cwd, env=env)


def stats(port: int, token: str) -> dict[str, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/events/stats", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


class Clients:
    def __init__(self, port: int, token: str, keys: int, count: int, work: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.streamer.measure_fanout", "client", str(port), token, str(keys), str(count)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
        )
        assert self.proc.stdout is not None
        self.started = time.monotonic()
        json.loads(self.proc.stdout.readline())
        self.connect_s = time.monotonic() - self.started

    def frames(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("?\n")
        self.proc.stdin.flush()
        return int(json.loads(self.proc.stdout.readline())["frames"])

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def run(opts: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="fanout-"))
    url = f"sqlite:///{work / 'bench.db'}"
    user_id, token = seed(url, opts.keys)
    broker = start(["-m", "bus.broker", "--ingress", "tcp://127.0.0.1:*", "--publish", "tcp://127.0.0.1:*", "--replay", "tcp://127.0.0.1:*"], work / "broker.log", work)
    ingress, publish, replay = wait_for(r"ingress=(\S+) publish=(\S+) replay=(\S+)", work / "broker.log").groups()
    streamer = start(
        ["-m", "streamer.server", "--database-url", url, "--ingress", ingress, "--publish", publish, "--replay", replay,
         "--port", "0", "--max-streams-per-user", "100000", "--client-buffer", "500", "--log-level", "WARNING"],
        work / "streamer.log", work,
    )
    try:
        port = _port_of(streamer, work)
        return measure(opts, port, token, user_id, ingress, streamer.pid, work)
    finally:
        for proc in (streamer, broker):
            proc.terminate()
            proc.wait(timeout=10)


def _port_of(streamer: subprocess.Popen[bytes], work: Path) -> int:
    # At WARNING the listening line is not logged: find the port from /proc instead.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
        for line in found.splitlines():
            if f"pid={streamer.pid}," in line:
                return int(line.split()[3].rsplit(":", 1)[1])
        time.sleep(0.1)
    raise SystemExit("the streamer did not listen")


def measure(opts: argparse.Namespace, port: int, token: str, user_id: int, ingress: str, pid: int, work: Path) -> dict[str, Any]:
    from bus.events import Account, OrderEvent, utc_now
    from bus.publisher import Publisher

    time.sleep(1.0)  # let the freshly started process settle before the baseline
    base_rss = rss_kib(pid)
    if opts.idle:
        clients = Clients(port, token, opts.keys, opts.idle, work)
        time.sleep(2.0)
        idle = rss_kib(pid)
        result = {"connections": opts.idle, "connect_s": round(clients.connect_s, 2),
                  "rss_base_kib": base_rss, "rss_kib": idle, "rss_kib_per_connection": round((idle - base_rss) / opts.idle, 2)}
        clients.close()
        return result
    clients = Clients(port, token, opts.keys, opts.clients, work)
    with Publisher(ingress) as pub:
        start_frames, start_split, start = clients.frames(), cpu_split(pid), time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - start) < opts.duration:
            due = int(elapsed * opts.rate)
            while sent < due:
                strategy_id = sent % opts.keys + 1
                pub.publish(OrderEvent("order_created", f"o{sent}", "BTC/USDT", strategy_id, user_id, "BUY", 1.0, 100.0, "NEW",
                                       utc_now(), "LIMIT", None, Account(1, "bench", "paper")))
                sent += 1
            # One event at a time, like a steady market (batches would hide per-event costs).
            time.sleep(max(0.0, (sent + 1) / opts.rate - (time.monotonic() - start)))
        expected = sent * opts.clients // opts.keys
        deadline = time.monotonic() + 10
        while (got := clients.frames() - start_frames) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        wall = time.monotonic() - start
        user, system = (b - a for a, b in zip(start_split, cpu_split(pid)))
        cpu = user + system
    snapshot = stats(port, token)
    clients.close()
    return {
        "clients": opts.clients, "keys": opts.keys, "rate": opts.rate, "sent": sent, "expected_deliveries": expected,
        "deliveries": got, "deliveries_per_s": round(got / wall), "streamer_cpu_s": round(cpu, 2), "user_s": round(user, 2), "system_s": round(system, 2),
        "streamer_cpu_us_per_delivery": round(cpu / max(got, 1) * 1e6, 2), "latency_ms": snapshot["latency_ms"],
        "slow_consumer_disconnects": snapshot["slow_consumer_disconnects"], "rss_kib": rss_kib(pid), "connect_s": round(clients.connect_s, 2),
    }


def main() -> None:
    if sys.argv[1:2] == ["client"]:
        port, token, keys, count = sys.argv[2:6]
        asyncio.run(client_main(int(port), token, int(keys), int(count), concurrency=100))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--rate", type=int, default=2000, help="events/s published, spread over the keys")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--idle", type=int, default=0, help="only open this many idle connections and report RSS")
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
