"""The system under test: broker and streamer subprocesses on free ports, a temp DB, users and tokens."""

from __future__ import annotations

import http.client
import math
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import zmq

from bus import codec, protocol
from bus.process import ENV_PREFIX
from bus.topics import StreamKey
from store import actions, migrate
from store.db import make_engine, make_session_factory

BIN = Path(sys.executable).parent
# The project root, so the console scripts import this checkout whatever the install mapped.
ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"listening ingress=(\S+) publish=(\S+) replay=(\S+)")
READY_TIMEOUT_S = 30.0


class StackError(Exception):
    """A process of the stack did not start or answer."""


@dataclass
class Stack:
    """Where the broker and streamer listen, their pids when known, and the benchmark's credentials."""

    ingress: str
    publish: str
    replay: str
    host: str = "127.0.0.1"
    port: int = 0
    database_url: str = ""
    broker_pid: int | None = None
    streamer_pid: int | None = None
    keys: list[StreamKey] = field(default_factory=list)
    tokens: dict[int, str] = field(default_factory=dict)  # strategy id → token of its owner
    admin_token: str = ""
    workdir: Path | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stop(self) -> None:
        """SIGTERM every process started here; SIGKILL what is still alive after 5 s."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def child_env(root: Path = ROOT) -> dict[str, str]:
    """The environment of a process the bench starts: it imports the checkout at `root` first.

    None of the caller's TRADESTREAM_* variables: a started process's settings are the
    bench's flags alone (an exported TRADESTREAM_JOURNAL would give a broker measured
    "without a journal" the caller's journal file, TRADESTREAM_LOG_LEVEL=DEBUG would slow it).
    """
    env = {name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)}
    path = env.get("PYTHONPATH", "")
    return {**env, "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else str(root), "PYTHONUNBUFFERED": "1"}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _wait_for_log(path: Path, proc: subprocess.Popen[bytes], pattern: re.Pattern[str]) -> re.Match[str]:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        match = pattern.search(path.read_text(errors="replace"))
        if match:
            return match
        if proc.poll() is not None:
            break
        time.sleep(0.02)  # polling pace while the process starts
    program = proc.args[0] if isinstance(proc.args, list) else proc.args
    raise StackError(f"{program!r} not ready; log tail:\n{path.read_text(errors='replace')[-2000:]}")


def start_broker(stack_dir: Path, history: int, procs: list[subprocess.Popen[bytes]], journal: bool = False,
                 root: Path = ROOT, transport: str = "tcp") -> tuple[subprocess.Popen[bytes], re.Match[str]]:
    """Start `tradestream-broker` on ephemeral ports (with a journal in `stack_dir`); its process and the listening line.

    tcp (loopback, the bench's default: its clients may be anywhere) or ipc (unix sockets in `stack_dir`/bus).
    """
    log_path = stack_dir / "broker.log"
    args = [str(BIN / "tradestream-broker"), "--history", str(history)]
    for name in ("ingress", "publish", "replay", "ack-ingress"):
        args += [f"--{name}", f"ipc://{stack_dir}/bus/{name}" if transport == "ipc" else "tcp://127.0.0.1:*"]
    if journal:
        args += ["--journal", str(stack_dir / "broker-journal.db")]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stderr=log, stdin=subprocess.DEVNULL, cwd=stack_dir, start_new_session=True, env=child_env(root))
    procs.append(proc)
    return proc, _wait_for_log(log_path, proc, _LISTENING)


def create_credentials(database_url: str, keys: int, streams_per_key: int, per_user_limit: int) -> tuple[list[StreamKey], dict[int, str], str]:
    """Users owning `keys` strategies (no user over its stream limit) and an admin; keys, tokens, admin token."""
    if streams_per_key > per_user_limit:
        raise StackError(f"{streams_per_key} streams per key exceed the per-user limit {per_user_limit}")
    per_user = max(1, per_user_limit // streams_per_key)
    engine = make_engine(database_url)
    migrate.ensure_head(engine)  # the database may be an operator's own: migrated, never just stamped
    suffix = secrets.token_hex(3)
    password = secrets.token_urlsafe(12)
    stream_keys: list[StreamKey] = []
    tokens: dict[int, str] = {}
    with make_session_factory(engine)() as session:
        admin = actions.create_user(session, None, f"bench-admin-{suffix}", password, is_admin=True)
        for index in range(math.ceil(keys / per_user)):
            user = actions.create_user(session, None, f"bench-{suffix}-{index}", password)
            for _ in range(min(per_user, keys - len(stream_keys))):
                number = len(stream_keys)
                strategy = actions.create_strategy(session, None, user.user.username, f"bench {number}", f"bench-{suffix}-{number}")
                stream_keys.append(StreamKey(user.user.id, strategy.strategy.id))
                tokens[strategy.strategy.id] = user.api_token
    engine.dispose()
    return stream_keys, tokens, admin.api_token


def start_streamer(stack: Stack, stack_dir: Path, max_streams_per_user: int, extra: list[str], root: Path = ROOT) -> subprocess.Popen[bytes]:
    """Start `tradestream-streamer` on a free port and wait until /healthz sees the broker."""
    stack.port = free_port(stack.host)
    args = [str(BIN / "tradestream-streamer"), "--database-url", stack.database_url, "--publish", stack.publish,
            "--replay", stack.replay, "--ingress", stack.ingress, "--host", stack.host, "--port", str(stack.port),
            "--max-streams-per-user", str(max_streams_per_user), "--secret", secrets.token_hex(16), *extra]
    log_path = stack_dir / "streamer.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stderr=log, stdin=subprocess.DEVNULL, cwd=stack_dir, start_new_session=True, env=child_env(root))
    stack.procs.append(proc)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        status, body = http_get(stack, "/healthz")
        if status == 200 and body.get("broker") == "up":
            return proc
        time.sleep(0.05)  # polling pace while the streamer starts
    raise StackError(f"streamer not ready; log tail:\n{log_path.read_text(errors='replace')[-2000:]}")


def http_get(stack: Stack, path: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    """GET a JSON endpoint of the streamer; (0, {}) when it does not answer."""
    connection = http.client.HTTPConnection(stack.host, stack.port, timeout=5)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = connection.getresponse()
        body = response.read()
        return response.status, orjson.loads(body) if body.startswith(b"{") else {}
    except (OSError, ValueError):
        return 0, {}
    finally:
        connection.close()


def streamer_stats(stack: Stack) -> dict[str, Any]:
    """The streamer's /api/events/stats ({} when unavailable)."""
    status, body = http_get(stack, "/api/events/stats", stack.admin_token)
    return body if status == 200 else {}


def broker_stats(replay_endpoint: str) -> dict[str, Any]:
    """The broker's counters, asked on its ROUTER with a `stats` request."""
    sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    sock.connect(replay_endpoint)
    try:
        sock.send_multipart([protocol.STATS])
        frames = sock.recv_multipart()
        return codec.unpack_map(frames[1]) if frames[0] == protocol.STATS else {}
    except zmq.Again:
        return {}
    finally:
        sock.close()


def start_stack(keys: int, streams_per_key: int, history: int, streamer_args: list[str], journal: bool = False,
                root: Path = ROOT, transport: str = "tcp") -> Stack:
    """A broker, a temp SQLite DB with the benchmark's users, and a streamer (both of the checkout at `root`).

    The bus is loopback `tcp` or `ipc` (unix sockets in the stack's folder, as a one-host deployment has it).
    """
    workdir = Path(tempfile.mkdtemp(prefix="tradestream-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        broker, match = start_broker(workdir, history, procs, journal, root, transport)
        stack = Stack(ingress=match[1], publish=match[2], replay=match[3], broker_pid=broker.pid,
                      database_url=f"sqlite:///{workdir / 'bench.db'}", workdir=workdir, procs=procs)
        limit = keys * streams_per_key + 10
        stack.keys, stack.tokens, stack.admin_token = create_credentials(stack.database_url, keys, streams_per_key, limit)
        stack.streamer_pid = start_streamer(stack, workdir, limit, streamer_args, root).pid
        return stack
    except BaseException:
        Stack("", "", "", procs=procs).stop()
        raise


def attach_stack(ingress: str, publish: str, replay: str, host: str, port: int, database_url: str,
                 streamer_pid: int | None, keys: int, streams_per_key: int, per_user_limit: int) -> Stack:
    """Credentials in a running stack's database; nothing is started or stopped."""
    stack = Stack(ingress=ingress, publish=publish, replay=replay, host=host, port=port,
                  database_url=database_url, streamer_pid=streamer_pid)
    stack.keys, stack.tokens, stack.admin_token = create_credentials(database_url, keys, streams_per_key, per_user_limit)
    return stack


def broker_only_stack(journal: bool = False, root: Path = ROOT, transport: str = "tcp") -> Stack:
    """Just a broker on ephemeral ports or unix sockets (with a journal, or not), for --broker-only."""
    workdir = Path(tempfile.mkdtemp(prefix="tradestream-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    broker, match = start_broker(workdir, 100, procs, journal, root, transport)
    return Stack(ingress=match[1], publish=match[2], replay=match[3], broker_pid=broker.pid, workdir=workdir, procs=procs)
