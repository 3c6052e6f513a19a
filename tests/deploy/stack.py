"""The real supervisord stack on free ports, and a small SSE client, for deploy tests.

`Stack` runs the repository's own supervisord.conf, unedited, from a copy in a
temporary folder next to a link to the project's .venv: supervisord expands
%(here)s to that folder, so the socket, logs, database and secret all live
there and a developer's running stack is never touched. Ports come in through
the TRADESTREAM_* variables every process reads (TRADESTREAM_WEBHOOK_PORT for
the webhook), which also proves that the environment passes through.
"""

from __future__ import annotations

import configparser
import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import xmlrpc.client
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from supervisor.xmlrpc import SupervisorTransport  # type: ignore[import-untyped]

from tests.ports import PortReservation, reserved_ports
from tests.waiting import wait_until

PROJECT = Path(__file__).resolve().parents[2]
BIN = PROJECT / ".venv" / "bin"
PROGRAMS = ("broker", "orders", "positions", "streamer:streamer-0", "streamer:streamer-1", "webhook")
START_TIMEOUT_S = 45.0
STOP_TIMEOUT_S = 60.0
STACK_PORTS = 8  # the broker's six endpoints, the streamers' HTTP port (shared, SO_REUSEPORT), the webhook's
LOGS = ("broker", "orders", "positions", "streamer-0", "streamer-1", "webhook")  # var/log/<name>.log of PROGRAMS  # supervisord stops four priority groups one after the other


def stack_environment(root: Path, ports: Sequence[int]) -> dict[str, str]:
    """The caller's environment without its TRADESTREAM_* settings, plus this stack's on `ports` (STACK_PORTS of them).

    The caller reserves them (tests/ports.py) for as long as the stack may run: supervisord restarts
    a program on the same port, so a port 0 would not do.
    """
    env = {name: value for name, value in os.environ.items() if not name.startswith("TRADESTREAM_")}
    ingress, publish, replay, acks, orders, fills, http_port, webhook_port = ports
    env.update(
        PYTHONUNBUFFERED="1",
        TRADESTREAM_DATABASE_URL=f"sqlite:///{root / 'var' / 'tradestream.db'}",
        TRADESTREAM_INGRESS=f"tcp://127.0.0.1:{ingress}",
        TRADESTREAM_PUBLISH=f"tcp://127.0.0.1:{publish}",
        TRADESTREAM_REPLAY=f"tcp://127.0.0.1:{replay}",
        TRADESTREAM_ACK_INGRESS=f"tcp://127.0.0.1:{acks}",
        TRADESTREAM_ORDERS=f"tcp://127.0.0.1:{orders}",
        TRADESTREAM_FILLS=f"tcp://127.0.0.1:{fills}",
        TRADESTREAM_HOST="127.0.0.1",
        TRADESTREAM_PORT=str(http_port),
        TRADESTREAM_WEBHOOK_PORT=str(webhook_port),
        # supervisord.conf's fixed metrics ports (9101, 9102, 9110-9111) would collide across stacks: any free one
        TRADESTREAM_ORDERS_METRICS_PORT="0",
        TRADESTREAM_POSITIONS_METRICS_PORT="0",
        TRADESTREAM_STREAMER_METRICS_PORT="0",
    )
    return env


# The broker's --journal and its value (quoted or not) in supervisord.conf's command line.
JOURNAL_ARGUMENT = re.compile(r'\s--journal(?:[= ](?:"[^"]*"|\S+))?')


def make_project_copy(root: Path, *, journal: bool = True) -> Path:
    """A folder that looks like a checkout to supervisord.conf; returns the config's path.

    `journal=False` runs the broker without its journal, so that a restart starts a
    new epoch (what a resync test needs); the rest of the config is the repository's.
    """
    root.mkdir(parents=True, exist_ok=True)
    config = (PROJECT / "supervisord.conf").read_text()
    if not journal:
        config = JOURNAL_ARGUMENT.sub("", config)
        assert re.search(r"tradestream-broker[^\n]*--journal", config) is None
    (root / "supervisord.conf").write_text(config)
    (root / ".venv").symlink_to(PROJECT / ".venv")
    return root / "supervisord.conf"


class Stack:
    """supervisord running the whole tradestream stack from `root`; `ports`, when given, released by `stop()`."""

    def __init__(self, root: Path, env: dict[str, str], ports: PortReservation | None = None) -> None:
        self.root = root
        self.ports = ports
        self.config = root / "supervisord.conf"
        self.env = env
        self.base_url = f"http://127.0.0.1:{self.env['TRADESTREAM_PORT']}"
        self.webhook_url = f"http://127.0.0.1:{self.env['TRADESTREAM_WEBHOOK_PORT']}"
        self.process: subprocess.Popen[bytes] | None = None
        self.demo: dict[str, Any] = {}
        # The [supervisorctl] section's server and credentials: supervisord.conf is the one place for them.
        parser = configparser.RawConfigParser()
        parser.read(self.config)
        self._ctl_section = dict(parser["supervisorctl"])
        self.socket = Path(self._ctl_section["serverurl"].removeprefix("unix://").replace("%(here)s", str(root)))

    @classmethod
    def in_new_folder(cls, root: Path, *, journal: bool = True) -> Stack:
        """A stack in a new checkout-like folder, on reserved ports (`journal=False`: a broker that forgets on restart)."""
        make_project_copy(root, journal=journal)
        ports = reserved_ports(STACK_PORTS)
        return cls(root, stack_environment(root, ports.ports), ports)

    # ---- life cycle ----

    def start(self) -> Stack:
        """Seed the demo data, start supervisord, wait until every program runs and /healthz is up."""
        (self.root / "var" / "log").mkdir(parents=True, exist_ok=True)
        self.demo = json.loads(self.run_bin("tradestream-admin", "demo", "--json").stdout)
        with open(self.root / "var" / "supervisord.out", "wb") as out:
            self.process = subprocess.Popen(
                [str(BIN / "supervisord"), "-n", "-c", str(self.config), "-u", str(os.getuid())],
                cwd=self.root, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )
        try:
            self.wait_running(PROGRAMS)
            self.wait_healthy()
            self.wait_listening()
        except BaseException:
            self.stop()  # a failed start must not leave supervisord and its programs behind
            raise
        return self

    def stop(self) -> int:
        """SIGTERM to supervisord (what Ctrl-C and systemd do); its exit code. Then the ports are released."""
        try:
            return self._stop()
        finally:
            if self.ports is not None:
                self.ports.close()

    def _stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    # ---- supervisorctl ----

    def run_bin(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a console script of the venv in this stack's folder and environment."""
        return subprocess.run(
            [str(BIN / name), *args], cwd=self.root, env=self.env,
            capture_output=True, text=True, timeout=60, check=check,
        )

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`supervisorctl -c <config> ARGS`; its exit code is not checked (status exits 3 when one is down)."""
        return self.run_bin("supervisorctl", "-c", str(self.config), *args, check=False)

    def status(self) -> dict[str, tuple[str, int]]:
        """Program name → (state, pid); pid 0 when it is not running. Asked over supervisord's XML-RPC socket.

        What `supervisorctl status` shows (`ctl_status`, same names and states), without a Python
        process per poll: the waits below ask several times a second.
        """
        if not self.socket.exists():
            return {}  # supervisord not started yet, or gone
        # A connection per call, closed at once: a stack stopped by someone else (run.sh) leaves none open.
        section = self._ctl_section
        transport = SupervisorTransport(section["username"], section["password"], f"unix://{self.socket}")
        try:
            infos = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor.getAllProcessInfo()
        except (OSError, xmlrpc.client.Fault, xmlrpc.client.ProtocolError, http.client.HTTPException):
            return {}  # starting or stopping: the caller asks again
        finally:
            transport.close()
        return {
            (info["name"] if info["group"] == info["name"] else f"{info['group']}:{info['name']}"):
                (info["statename"], info["pid"] if info["statename"] == "RUNNING" else 0)
            for info in infos
        }

    def ctl_status(self) -> dict[str, tuple[str, int]]:
        """`status()` as `supervisorctl status` prints it (what a person runs)."""
        states = {}
        for line in self.ctl("status").stdout.splitlines():
            fields = line.split()
            if len(fields) >= 2:
                pid = int(fields[3].rstrip(",")) if fields[1] == "RUNNING" else 0
                states[fields[0]] = (fields[1], pid)
        return states

    def pid(self, program: str) -> int:
        """The pid of a RUNNING program (fails the test otherwise)."""
        state, pid = self.status()[program]
        assert state == "RUNNING", f"{program} is {state}"
        return pid

    def sigkill(self, program: str) -> int:
        """SIGKILL a program's process, as a crash would; the pid supervisord restarted it with."""
        old_pid = self.pid(program)
        os.kill(old_pid, signal.SIGKILL)

        def restarted() -> int:
            state, pid = self.status()[program]
            return pid if state == "RUNNING" and pid != old_pid else 0

        return wait_until(restarted, timeout=30, what=f"{program} restarted by supervisord", poll=0.1)

    def wait_running(self, programs: tuple[str, ...], timeout: float = START_TIMEOUT_S) -> dict[str, tuple[str, int]]:
        """Wait until every one of `programs` is RUNNING."""
        def all_running() -> dict[str, tuple[str, int]] | None:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"supervisord exited {self.process.returncode}: {self.log_tail()}")
            states = self.status()
            return states if all(states.get(p, ("", 0))[0] == "RUNNING" for p in programs) else None
        try:
            return wait_until(all_running, timeout=timeout, what=f"{', '.join(programs)} RUNNING", poll=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.ctl('status').stdout}\n{self.log_tail()}") from None

    def wait_healthy(self, timeout: float = START_TIMEOUT_S) -> None:
        """Wait until a streamer answers /healthz with the broker up."""
        def healthy() -> bool:
            try:
                status, body = self.request("GET", "/healthz")
            except OSError:
                return False
            return status == 200 and body.get("broker") == "up"
        wait_until(healthy, timeout=timeout, what="/healthz with the broker up", poll=0.1)

    def wait_listening(self, timeout: float = START_TIMEOUT_S, since: dict[str, int] | None = None) -> None:
        """Wait until every program has logged its `listening` line, which each logs once its SIGTERM handler is set.

        RUNNING only means alive for startsecs (1 s): on a loaded machine a process may still be
        importing then, and a SIGTERM before its handler is set kills it (`terminated by SIGTERM`,
        not `exit status 0`: the cause of a flake of test_sigterm_stops_every_program_cleanly).
        `since` (`log_sizes()` before a start) skips what earlier starts logged in the same files.
        """
        wait_until(lambda: self.listening(since), timeout=timeout, what="every program's 'listening' log line", poll=0.1)

    def listening(self, since: dict[str, int] | None = None) -> bool:
        """Whether every program has logged its `listening` line (since `log_sizes()` when given)."""
        return all(
            (path := self.root / "var" / "log" / f"{name}.log").exists()
            and " listening " in path.read_text()[(since or {}).get(name, 0):]
            for name in LOGS
        )

    def log_sizes(self) -> dict[str, int]:
        """How long each program's log is now (0 when it has none yet): `since` for `wait_listening`."""
        return {name: path.stat().st_size if (path := self.root / "var" / "log" / f"{name}.log").exists() else 0
                for name in LOGS}

    def log_tail(self, name: str = "supervisord.log", lines: int = 30) -> str:
        path = self.root / "var" / "log" / name
        return "\n".join(path.read_text().splitlines()[-lines:]) if path.exists() else "(no log)"

    # ---- HTTP ----

    def user(self, username: str) -> dict[str, Any]:
        return next(u for u in self.demo["users"] if u["username"] == username)

    def strategy(self, group_name: str) -> dict[str, Any]:
        return next(s for s in self.demo["strategies"] if s["group_name"] == group_name)

    def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                base_url: str | None = None) -> tuple[int, Any]:
        """One HTTP request on a new connection: (status, JSON body or None)."""
        host, port = (base_url or self.base_url).removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            connection.request(method, path, None if body is None else json.dumps(body), headers)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, raw.decode(errors="replace")

    def post_signal(self, group_name: str, **fields: Any) -> dict[str, Any]:
        """POST a webhook signal for a demo strategy; fails unless it is accepted."""
        body = {"group_name": group_name, "token": self.strategy(group_name)["webhook_token"],
                "symbol": "BTC/USDT", "side": "buy", "order_type": "LIMIT", "qty_per": 1, **fields}
        status, answer = self.request("POST", "/api/webhook", body, base_url=self.webhook_url)
        assert status == 200, (status, answer)
        return answer


class EventStream:
    """An SSE client on a real connection; a thread parses events into a queue."""

    CLOSED = None

    def __init__(self, base_url: str, strategy_id: int, token: str, last_event_id: str | None = None) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        query = {"strategy_id": strategy_id}
        if last_event_id:
            query["last_event_id"] = last_event_id
        self.connection = http.client.HTTPConnection(host, int(port), timeout=60)
        self.connection.connect()
        # Kept: http.client hands a response without keep-alive its socket and forgets it.
        self._socket = self.connection.sock
        self.connection.request("GET", f"/api/events/stream?{urlencode(query)}",
                                headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"})
        self.response = self.connection.getresponse()
        if self.response.status != 200:
            body = self.response.read()
            self.connection.close()
            raise AssertionError(f"stream answered {self.response.status}: {body!r}")
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.last_event_id = last_event_id
        self._thread = threading.Thread(target=self._read, name="sse-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            for raw in iter(self.response.readline, b""):
                line = raw.decode().rstrip("\r\n")
                if line:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "data" and "data" in fields:
                        value = f"{fields['data']}\n{value}"
                    fields[name] = value
                elif "event" in fields:
                    self.events.put({"id": fields.get("id"), "event": fields["event"],
                                     "data": json.loads(fields.get("data") or "null")})
                    fields = {}
        except (OSError, ValueError, http.client.HTTPException):
            pass  # a closed or killed connection simply ends the stream
        self.events.put(self.CLOSED)

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 20.0) -> dict[str, Any]:
        """The first event matching `predicate`; fails on timeout or when the stream ends first."""
        def matching() -> dict[str, Any] | None:
            try:
                event = self.events.get(timeout=0.1)
            except queue.Empty:
                return None
            if event is self.CLOSED:
                raise AssertionError(f"the stream ended while waiting for {what}")
            if event["id"]:
                self.last_event_id = event["id"]
            return event if predicate(event) else None
        return wait_until(matching, timeout=timeout, what=what, poll=0)

    def wait_closed(self, timeout: float = 20.0) -> None:
        """Wait until the server ends the stream (events before that are consumed)."""
        def closed() -> bool:
            try:
                event = self.events.get(timeout=0.1)
            except queue.Empty:
                return False
            if event is not self.CLOSED and event["id"]:
                self.last_event_id = event["id"]
            return event is self.CLOSED
        wait_until(closed, timeout=timeout, what="the stream to end", poll=0)

    def close(self) -> None:
        # shutdown() wakes the reader thread blocked in recv(); close() alone would not.
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by the server
        self._thread.join(timeout=5)
        self.response.close()
        self.connection.close()


def order_with_price(price: float) -> Callable[[dict[str, Any]], bool]:
    """Predicate: an order_update whose price identifies the test's own signal."""
    def matches(event: dict[str, Any]) -> bool:
        price_text = event["data"].get("price") if event["event"] == "order_update" else None
        return price_text is not None and Decimal(price_text) == Decimal(price)  # a decimal string (CONTRACT §4)

    return matches
