"""Hostile-client measurements (issue 11): descriptor exhaustion, a login flood and a JSON flood, as figures.

    python -m bench.hostile fd-flood --target streamer|webhook [--fd-limit 1024 --connections 1200 --seconds 3]
    python -m bench.hostile login-flood [--attempts 100 --seconds 10]
    python -m bench.hostile json-flood [--requests 200 --code-root DIR ...]   (bench/jsonflood.py)

fd-flood starts a broker and the target with RLIMIT_NOFILE lowered to `--fd-limit`, opens one
SSE stream (streamer) or one keep-alive connection (webhook), then holds `--connections` idle
TCP connections (more than the limit) for `--seconds`, and reports the target's CPU seconds and
log lines during that window, whether the old connection kept working, and how long after the
flood's end /healthz answers again. login-flood sends wrong passwords for one user, one at a
time (or --concurrency at once), and reports how many were answered 401 (checked) and 429 (refused) per second.
json-flood sends hostile 64 KiB JSON bodies to webhook processes and prints their CPU per request.
The processes are bench/targets.py's.
Not tests: figures for docs and reports; nothing here asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.jsonflood import flood_table, json_flood
from bench.procstat import cpu_seconds
from bench.stack import ROOT
from bench.targets import PROBE_TIMEOUT_S, hostile_stack, request, start_target
from bus.events import Account, OrderEvent, utc_now
from bus.publisher import Publisher
from store.db import make_engine, make_session_factory
from store.models import User

RECOVERY_TIMEOUT_S = 60.0
EXHAUST_TIMEOUT_S = 10.0
HELD_LIMIT_S = 30.0
FLOOD_BATCH = 64


class StreamCounter:
    """One SSE stream read in a thread: how many bus events it received."""

    def __init__(self, port: int, token: str, strategy_id: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(f"GET /api/events/stream?strategy_id={strategy_id} HTTP/1.1\r\nHost: x\r\n"
                          f"Authorization: Bearer {token}\r\n\r\n".encode())
        self.events = 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(65536):
                self.events += chunk.count(b"\nevent: order_update\n")

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def flood(port: int, connections: int, pid: int) -> Iterator[list[socket.socket]]:
    """`connections` idle TCP connections to `port`, paced to what the target accepts.

    Unpaced, connections beyond a full accept queue get a SYN cookie, look open to
    this side and never reach the server: they would not take its descriptors.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(0, connections, FLOOD_BATCH):
            before = _open_fds(pid)
            for _ in range(min(FLOOD_BATCH, connections - len(sockets))):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", port))
                sockets.append(sock)
            deadline = time.monotonic() + 1.0
            while _open_fds(pid) < before + FLOOD_BATCH // 2 and time.monotonic() < deadline:
                time.sleep(0.005)  # polling pace while the target accepts the batch
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _wait_exhausted(pid: int, fd_limit: int) -> None:
    """Until the target holds (nearly) all its descriptors: refused SYNs are retried after 1, 3, 7 s."""
    deadline = time.monotonic() + EXHAUST_TIMEOUT_S
    while _open_fds(pid) < fd_limit - 8 and time.monotonic() < deadline:
        time.sleep(0.05)  # polling pace while the connections come in


def _lines(path: Path) -> int:
    with open(path, "rb") as log:
        return sum(1 for _ in log)


def _order(user_id: int, strategy_id: int, number: int) -> OrderEvent:
    return OrderEvent(
        event_type="order_created", order_id=f"flood-{number}", symbol="BTC/USDT", strategy_id=strategy_id,
        user_id=user_id, side="BUY", quantity="1", price="100", status="NEW", timestamp=utc_now(),
        order_type="LIMIT", stop_price=None, account=Account(1, "acct", "paper"), suppress_toast=False,
    )


def _keepalive_status(connection: http.client.HTTPConnection) -> int:
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0


def _seconds_until_healthy(port: int, limit: float) -> float | None:
    """How long until a new connection's /healthz answers 200; None if not within `limit`."""
    start = time.monotonic()
    while request(port, "GET", "/healthz") != 200:
        if time.monotonic() - start > limit:
            return None
        time.sleep(0.05)  # polling pace while the server recovers
    return round(time.monotonic() - start, 2)


def _window(proc: subprocess.Popen[bytes], log_path: Path, seconds: float, tick: Callable[[int], None]) -> dict[str, Any]:
    """CPU seconds and log lines of the target over `seconds`, calling `tick` ten times a second."""
    cpu0, lines0, bytes0, start = cpu_seconds(proc.pid), _lines(log_path), log_path.stat().st_size, time.monotonic()
    ticks = 0
    while time.monotonic() - start < seconds:
        tick(ticks)
        ticks += 1
        time.sleep(0.1)  # the pace of the traffic on the old connections
    return {
        "open_fds": _open_fds(proc.pid), "cpu_s": round(cpu_seconds(proc.pid) - cpu0, 2),
        "log_lines": _lines(log_path) - lines0, "log_bytes": log_path.stat().st_size - bytes0,
    }


def fd_flood(target: str, fd_limit: int, connections: int, seconds: float) -> dict[str, Any]:
    """The figures of one descriptor-exhaustion run against `target`."""
    with hostile_stack() as (stack, workdir):
        proc, port, log_path = start_target(target, stack, workdir, fd_limit)
        key = stack.keys[0]
        stream = StreamCounter(port, stack.tokens[key.strategy_id], key.strategy_id) if target == "streamer" else None
        keepalive = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT_S)
        answered: list[int] = []

        def tick(number: int) -> None:
            publisher.publish(_order(key.user_id, key.strategy_id, number))
            if number % 5 == 0:  # twice a second on the connection opened before the flood
                answered.append(_keepalive_status(keepalive))

        _keepalive_status(keepalive)
        with Publisher(stack.ingress) as publisher, flood(port, connections, proc.pid):
            _wait_exhausted(proc.pid, fd_limit)
            result = _window(proc, log_path, seconds, tick)
            published = int(seconds * 10)
            result["healthz_new_connection"] = request(port, "GET", "/healthz")
            result["events_received_by_old_stream"] = f"{stream.events}/{published}" if stream else None
            result["healthz_old_connection"] = f"{answered.count(200)}/{len(answered)}"
            result["healthy_while_flood_held_after_s"] = _seconds_until_healthy(port, HELD_LIMIT_S)
        result["healthy_after_flood_closed_s"] = _seconds_until_healthy(port, RECOVERY_TIMEOUT_S)
        log_lines = log_path.read_text(errors="replace").splitlines()
        if stream:
            stream.close()
        return {
            "target": target, "fd_limit": fd_limit, "connections": connections, "window_s": seconds, **result,
            "tracebacks_in_run": sum(1 for line in log_lines if line.startswith("Traceback")),
            "log_sample": [line[:200] for line in log_lines if "web.server" in line][:3],
        }


def login_flood(attempts: int, seconds: float, concurrency: int, usernames: int) -> dict[str, Any]:
    """Wrong passwords from one address, `concurrency` at a time, over `usernames` names (the first one real)."""
    with hostile_stack() as (stack, workdir):
        proc, port, _ = start_target("streamer", stack, workdir)
        with make_session_factory(make_engine(stack.database_url))() as session:
            real = session.scalars(select(User.username).where(User.is_admin.is_(False))).one()
        names = [real, *(f"nobody-{n}" for n in range(1, usernames))]
        outcomes: list[tuple[float, int]] = []
        cpu0, start = cpu_seconds(proc.pid), time.monotonic()

        def attempt(number: int) -> None:
            if time.monotonic() - start < seconds:
                body = json.dumps({"username": names[number % len(names)], "password": "wrong"}).encode()
                status = request(port, "POST", "/api/login", body, {"Content-Type": "application/json"}, timeout=30)
                outcomes.append((time.monotonic() - start, status))

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(attempt, range(attempts)))
        elapsed = time.monotonic() - start
        statuses = [status for _, status in sorted(outcomes)]
        first_429 = statuses.index(429) if 429 in statuses else len(statuses)
        return {
            "attempts": len(statuses), "concurrency": concurrency, "usernames": usernames, "elapsed_s": round(elapsed, 2),
            "statuses": {str(code): statuses.count(code) for code in sorted(set(statuses))},
            "checked_before_first_429": first_429, "checked_per_s": round(statuses.count(401) / elapsed, 2),
            "streamer_cpu_s": round(cpu_seconds(proc.pid) - cpu0, 2),
        }


def main(argv: list[str] | None = None) -> int:
    """Run one measurement and print its JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fd = commands.add_parser("fd-flood", help="idle connections past the target's descriptor limit")
    fd.add_argument("--target", choices=["streamer", "webhook"], default="streamer")
    fd.add_argument("--fd-limit", type=int, default=1024)
    fd.add_argument("--connections", type=int, default=1200)
    fd.add_argument("--seconds", type=float, default=3.0)
    login = commands.add_parser("login-flood", help="wrong passwords for one user as fast as answers come")
    login.add_argument("--attempts", type=int, default=100)
    login.add_argument("--seconds", type=float, default=10.0)
    login.add_argument("--concurrency", type=int, default=1)
    login.add_argument("--usernames", type=int, default=1, help="cycle over this many names (the first one real)")
    flood = commands.add_parser("json-flood", help="hostile 64 KiB JSON bodies to webhooks: their CPU per request")
    flood.add_argument("--requests", type=int, default=200, help="per body kind and webhook")
    flood.add_argument("--code-root", type=Path, action="append", help="a tree a webhook runs (repeat: before first)")
    args = parser.parse_args(argv)
    if args.command == "json-flood":
        print(flood_table(json_flood(args.requests, args.code_root or [ROOT])))
        return 0
    if args.command == "fd-flood":
        result = fd_flood(args.target, args.fd_limit, args.connections, args.seconds)
    else:
        result = login_flood(args.attempts, args.seconds, args.concurrency, args.usernames)
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
