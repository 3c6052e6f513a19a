"""A deployment across "hosts": network namespaces joined by veth pairs and a bridge, tcp:// and CURVE between them.

    root namespace (the browser, the webhook's caller): the bridge, 10.A.B.254
      ts-<id>-h1 ─ broker       10.A.B.1   tcp://…:5556-5559, server key
      ts-<id>-h2 ─ trading      10.A.B.2   orders (PULL :5560) and positions (PULL :5561), server + publisher keys
      ts-<id>-h3 ─ webhook      10.A.B.3   HTTP :8081, publisher key (wakes orders across hosts)
      ts-<id>-h4 ─ web1         10.A.B.4   streamer HTTP :8080, subscriber + control key
      ts-<id>-h5 ─ web2         10.A.B.5   streamer HTTP :8080, subscriber + control key
      ts-<id>-h6 ─ rogue        10.A.B.6   no key at all
      ts-<id>-h7 ─ client       10.A.B.7   a trader's browser (`Network.launcher`), no key

Every name starts with `ts-` and a random suffix; `Network.close` removes them
all, on failure too. The SQLite database is one file: namespaces share the
file system, only the network is apart. Fixed ports are fine here: each
namespace has ports of its own. Needs root (`ip netns add`); `available()` says
why not. Also run as a script for the latency figures (`python -m
tests.deploy.multihost`): webhook POST → SSE frame with and without CURVE.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shlex
import signal
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from bus.curvekeys import make_deployment
from tests.deploy.stack import PROJECT, EventStream
from tests.waiting import wait_until

HOSTS = ("broker", "trading", "webhook", "web1", "web2", "rogue", "client")
KEY_PLAN = {
    "broker": frozenset({"server"}),
    "trading": frozenset({"server", "publisher"}),
    "webhook": frozenset({"publisher"}),
    "web1": frozenset({"subscriber", "control"}),
    "web2": frozenset({"subscriber", "control"}),
    "watcher": frozenset({"subscriber"}),  # the test's own stats client, in the root namespace
}
PYTHON = sys.executable


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


def available() -> str | None:
    """None when network namespaces can be made here; else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"ts-{secrets.token_hex(3)}-p"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


class Network:
    """The namespaces, veths and bridge of one run."""

    def __init__(self) -> None:
        self.id = secrets.token_hex(3)
        self.subnet = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
        self.bridge = f"ts-{self.id}-br"
        self.namespaces: dict[str, str] = {}
        self.links: dict[str, str] = {}  # host → its veth end on the bridge (where netem goes)

    def address(self, host: str) -> str:
        return f"{self.subnet}.{HOSTS.index(host) + 1}"

    def open(self) -> Network:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.subnet}.254/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for number, host in enumerate(HOSTS, start=1):
            namespace, outside, inside = f"ts-{self.id}-{host}", f"ts-{self.id}-h{number}", f"ts-{self.id}-n{number}"
            _ip("netns", "add", namespace)
            self.namespaces[host] = namespace
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            self.links[host] = outside
            _ip("link", "set", inside, "netns", namespace)
            _ip("link", "set", outside, "master", self.bridge)
            _ip("link", "set", outside, "up")
            for args in (("link", "set", "lo", "up"), ("addr", "add", f"{self.address(host)}/24", "dev", inside),
                         ("link", "set", inside, "up")):
                _ip("netns", "exec", namespace, "ip", *args)
        return self

    def netem(self, host: str, *spec: str) -> str | None:
        """Delay/loss on the host's link; None when applied, else the reason it cannot be here."""
        done = subprocess.run(["tc", "qdisc", "add", "dev", self.links[host], "root", "netem", *spec],
                              capture_output=True, text=True, timeout=20)
        return None if done.returncode == 0 else f"tc netem unavailable here: {done.stderr.strip()}"

    def launcher(self, host: str, program: str, folder: Path) -> Path:
        """A script that runs `program` (with its arguments) inside the host's namespace and writes its pid to
        `<script>.pid` first: an `executable_path` for Playwright, whose pipes to the browser pass through."""
        script = folder / f"in-{host}.sh"
        pidfile = shlex.quote(str(script) + ".pid")
        script.write_text(f'#!/bin/sh\necho $$ > {pidfile}\n'
                          f'exec ip netns exec {shlex.quote(self.namespaces[host])} {shlex.quote(program)} "$@"\n')
        script.chmod(0o755)
        return script

    def holds(self, host: str, pid: int) -> bool:
        """Whether process `pid` runs in the host's network namespace."""
        inode = os.stat(f"/run/netns/{self.namespaces[host]}").st_ino
        return os.readlink(f"/proc/{pid}/ns/net") == f"net:[{inode}]"

    def close(self) -> None:
        for namespace in self.namespaces.values():
            _ip("netns", "del", namespace, check=False)  # its veth end goes with it, and so does the pair
        _ip("link", "del", self.bridge, check=False)


class Deployment:
    """The stack on the network: `start()`, then HTTP from the root namespace; `stop()` always."""

    def __init__(self, root: Path, net: Network, curve: bool) -> None:
        self.root, self.net, self.curve = root, net, curve
        self.database_url = f"sqlite:///{root / 'tradestream.db'}"
        self.secret = secrets.token_hex(16)
        self.keys = root / "keys" / "hosts"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.demo: dict[str, Any] = {}

    def endpoint(self, host: str, port: int) -> str:
        return f"tcp://{self.net.address(host)}:{port}"

    def url(self, host: str, port: int) -> str:
        return f"http://{self.net.address(host)}:{port}"

    def run_in(self, host: str, name: str, *args: str) -> subprocess.Popen[bytes]:
        keys = ["--bus-keys", str(self.keys / host)] if self.curve else []
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESTREAM_")} | {"PYTHONUNBUFFERED": "1"}
        with open(self.root / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(["ip", "netns", "exec", self.net.namespaces[host], PYTHON, "-m", *args, *keys],
                                    stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root, start_new_session=True)
        self.procs[name] = proc
        return proc

    def start(self) -> Deployment:
        make_deployment(str(self.root / "keys"), dict(KEY_PLAN))
        done = subprocess.run([PYTHON, "-m", "store.admin", "--database-url", self.database_url, "demo", "--json"],
                              capture_output=True, text=True, check=True, timeout=60, cwd=self.root)
        self.demo = json.loads(done.stdout)
        broker = {f"--{n}": self.endpoint("broker", p) for n, p in (("ack-ingress", 5556), ("ingress", 5557),
                                                                      ("publish", 5558), ("replay", 5559))}
        orders, fills = self.endpoint("trading", 5560), self.endpoint("trading", 5561)
        db = ("--database-url", self.database_url)
        self.run_in("broker", "broker", "bus.broker", *_flat(broker), "--bus-heartbeat", "0.2")
        self.run_in("trading", "orders", "producers.orders", *db, "--orders", orders, "--fills", fills,
                    "--ack-ingress", broker["--ack-ingress"])
        self.run_in("trading", "positions", "producers.positions", *db, "--fills", fills, "--ack-ingress", broker["--ack-ingress"])
        self.run_in("webhook", "webhook", "producers.webhook", *db, "--host", self.net.address("webhook"), "--port", "8081",
                    "--orders", orders)
        for web in ("web1", "web2"):
            self.run_in(web, web, "streamer.server", *db, "--host", self.net.address(web), "--port", "8080",
                        "--secret", self.secret, "--ingress", broker["--ingress"], "--publish", broker["--publish"],
                        "--replay", broker["--replay"])
        for web in ("web1", "web2"):
            wait_until(lambda web=web: self.ready(self.url(web, 8080)), timeout=40, what=f"{web} to be ready")
        wait_until(lambda: self.ready(self.url("webhook", 8081)), timeout=40, what="the webhook to be ready")
        return self

    def ready(self, base_url: str) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited {proc.returncode}:\n{self.log(name)}")
        status, _ = request("GET", base_url + "/healthz")
        return status == 200

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"

    def in_host(self, host: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.net.namespaces[host], *args],
                              capture_output=True, text=True, timeout=timeout, cwd=PROJECT)

    def owner(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The first demo strategy and its owner."""
        strategy = self.demo["strategies"][0]
        return strategy, next(u for u in self.demo["users"] if u["id"] == strategy["owner_id"])

    def stream(self, web: str) -> EventStream:
        strategy, user = self.owner()
        return EventStream(self.url(web, 8080), strategy["id"], user["api_token"])

    def post_signal(self, price: str) -> None:
        strategy, _ = self.owner()
        body = {"group_name": strategy["group_name"], "token": strategy["webhook_token"], "symbol": "BTC/USDT",
                "side": "buy", "order_type": "LIMIT", "price": price, "qty_per": 1}
        status, answer = request("POST", self.url("webhook", 8081) + "/api/webhook", body)
        assert status == 200, (status, answer)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _flat(flags: dict[str, str]) -> list[str]:
    return [part for pair in flags.items() for part in pair]


def request(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    import http.client
    host, _, rest = url.removeprefix("http://").partition("/")
    name, port = host.split(":")
    connection = http.client.HTTPConnection(name, int(port), timeout=5)
    try:
        connection.request(method, "/" + rest, None if body is None else json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        raw = response.read()
    except OSError:
        return 0, None
    finally:
        connection.close()
    return response.status, json.loads(raw) if raw else None


def order_priced(price: str) -> Any:
    """Predicate: an order_update at `price` (its price a decimal string, "201.00": CONTRACT §4)."""
    def matches(event: dict[str, Any]) -> bool:
        found = event["data"].get("price") if event["event"] == "order_update" else None
        return found is not None and Decimal(str(found)) == Decimal(price)

    return matches


def latencies(deployment: Deployment, web: str, count: int) -> list[float]:
    """Webhook POST → the SSE frame on `web`, in ms, one signal at a time (within the webhook's rate limit)."""
    stream = deployment.stream(web)
    found = []
    try:
        for number in range(count):
            price = str(1000 + number)
            began = time.perf_counter()
            deployment.post_signal(price)
            stream.wait_for(order_priced(price), what=f"the order at {price}")
            found.append((time.perf_counter() - began) * 1000)
            time.sleep(0.1)  # the webhook's limit is 20/s per token: pace, not a wait for a condition
    finally:
        stream.close()
    return found


def main() -> int:
    """Print webhook POST → SSE latency p50/p99 across namespaces, without and with CURVE, from one run."""
    import tempfile
    reason = available()
    if reason:
        print(reason)
        return 1
    for curve in (False, True):
        net = Network().open()
        root = Path(tempfile.mkdtemp(prefix="ts-multihost-"))
        deployment = Deployment(root, net, curve)
        try:
            found = sorted(latencies(deployment.start(), "web1", 60))
        finally:
            deployment.stop()
            net.close()
        p99 = found[min(len(found) - 1, int(len(found) * 0.99))]
        print(f"curve={curve}: n={len(found)} p50={statistics.median(found):.2f} ms p99={p99:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
