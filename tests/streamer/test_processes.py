"""Real `tradestream-streamer` processes: a shared port, control messages across processes, SIGTERM, bad flags."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from store import migrate
from store.db import make_engine
from streamer.config import parse_config
from tests.limits import fd_limited
from tests.streamer.conftest import BrokerThread, World, url_of
from tests.streamer.test_stream import open_stream
from tests.waiting import PROCESS_START_S, wait_until

REPO = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"streamer listening on http://[^:]+:(\d+)")
_SCRIPT = Path(sys.executable).with_name("tradestream-streamer")


def streamer_command() -> list[str]:
    """The console script when installed, else the same `main` through -m."""
    return [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "streamer.server"]


class StreamerProcess:
    """One streamer subprocess on the test's broker and database, logging to a file."""

    def __init__(self, workdir: Path, name: str, world: World, broker: BrokerThread, *extra: str, fd_limit: int | None = None) -> None:
        self.log_path = workdir / f"{name}.log"
        args = [
            *streamer_command(), "--database-url", url_of(world),
            "--ingress", broker.endpoints["ingress"], "--publish", broker.endpoints["publish"],
            "--replay", broker.endpoints["replay"], "--host", "127.0.0.1",
            *(() if "--port" in extra else ("--port", "0")),  # never the default 8080: `make run` may hold it
            *extra,
        ]
        if fd_limit is not None:
            args = fd_limited(args, fd_limit)
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, stderr=log, cwd=workdir, env=env)
        match = wait_until(lambda: _LISTENING.search(self.log()), timeout=PROCESS_START_S, what=f"{name} to listen")
        assert match is not None  # wait_until returns only a truthy value
        self.port = int(match[1])

    def log(self) -> str:
        return self.log_path.read_text()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def spawn(tmp_path: Path, world: World, broker: BrokerThread) -> Iterator[list[StreamerProcess]]:
    started: list[StreamerProcess] = []
    yield started
    for process in started:
        process.kill()


def start(spawn: list[StreamerProcess], tmp_path: Path, world: World, broker: BrokerThread, *extra: str) -> StreamerProcess:
    process = StreamerProcess(tmp_path, f"streamer-{len(spawn) + 1}", world, broker, *extra)
    spawn.append(process)
    return process


def request(port: int, method: str, path: str, headers: dict[str, str]) -> int:
    """A blocking request with an empty body (the streams it affects wait in their socket buffers)."""
    sent = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=b"", headers=headers, method=method)
    with urllib.request.urlopen(sent, timeout=5) as response:
        return int(response.status)


@pytest.mark.parametrize(
    ("method", "path", "strategy_id", "viewers", "reason"),
    [
        ("POST", "/api/admin/strategies/10/deactivate", 10, ("u10", "u11", "root"), "strategy_inactive"),
        ("DELETE", "/api/admin/strategies/11", 11, ("u10", "u11", "root"), "strategy_deleted"),
        ("DELETE", "/api/admin/links?strategy_id=4&account_id=2", 4, ("u10",), "permission_revoked"),
    ],
)
def test_two_streamers_share_a_port_and_both_end_streams_on_each_admin_action(
    tmp_path: Path, world: World, broker: BrokerThread, spawn: list[StreamerProcess],
    method: str, path: str, strategy_id: int, viewers: tuple[str, ...], reason: str,
) -> None:
    first = start(spawn, tmp_path, world, broker, "--port", "0", "--reuse-port")
    second = start(spawn, tmp_path, world, broker, "--port", str(first.port), "--reuse-port")

    async def scenario() -> None:
        streams = [await open_stream(first.port, world.users[viewers[n % len(viewers)]], strategy_id) for n in range(16)]
        for process in (first, second):
            assert "stream opened" in process.log(), "SO_REUSEPORT sent every connection to one process"
        # Whichever process takes the request, the control message reaches both through the broker.
        assert request(first.port, method, path, world.users["root"].bearer) == 200
        for stream in streams:
            frame = await stream.next_event()
            assert frame is not None and frame.event == "force_disconnect"
            assert frame.json()["reason"] == reason
            assert await stream.rest() == []
            await stream.close()

    asyncio.run(scenario())
    assert first.terminate() == 0 and second.terminate() == 0


def connections_of(port: int) -> int:
    """`tradestream_streamer_connections` of the /metrics on `port`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        found = re.search(r"^tradestream_streamer_connections (\S+)$", response.read().decode(), re.MULTILINE)
    assert found is not None
    return int(float(found[1]))


def test_behind_reuse_port_each_streamer_serves_its_own_metrics_on_its_metrics_port(
    tmp_path: Path, world: World, broker: BrokerThread, spawn: list[StreamerProcess]
) -> None:
    first = start(spawn, tmp_path, world, broker, "--port", "0", "--reuse-port", "--metrics-port", "0")
    second = start(spawn, tmp_path, world, broker, "--port", str(first.port), "--reuse-port", "--metrics-port", "0")
    ports = []
    for process in (first, second):
        found = re.search(r"metrics_port=(\d+)", process.log())
        assert found is not None
        ports.append(int(found[1]))
    assert len({first.port, *ports}) == 3

    async def scenario() -> None:
        streams = [await open_stream(first.port, world.users["u10"], 1) for _ in range(16)]
        counts = wait_until(lambda: (lambda c: c if sum(c) == 16 else None)([connections_of(p) for p in ports]),
                            what="both streamers' metrics to count the 16 streams")
        assert all(counts), f"SO_REUSEPORT sent every connection to one process: {counts}"
        assert connections_of(first.port) in counts  # the shared port's /metrics: whichever process answers
        for stream in streams:
            await stream.close()

    asyncio.run(scenario())
    assert first.terminate() == 0 and second.terminate() == 0


def test_sigterm_sends_server_shutdown_to_every_stream_and_exits_0_within_5_seconds(
    tmp_path: Path, world: World, broker: BrokerThread, spawn: list[StreamerProcess]
) -> None:
    process = start(spawn, tmp_path, world, broker, "--port", "0")

    async def scenario() -> float:
        streams = [await open_stream(process.port, world.users["u10"], strategy_id) for strategy_id in (1, 10)]
        process.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        for stream in streams:
            frame = await stream.next_event()
            assert frame is not None and frame.event == "force_disconnect"
            assert frame.json()["reason"] == "server_shutdown"
            assert await stream.rest() == []
            await stream.close()
        return signalled

    signalled = asyncio.run(scenario())
    assert process.proc.wait(timeout=5) == 0
    assert time.monotonic() - signalled < 5
    assert "streamer stopped" in process.log() and "Traceback" not in process.log()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--heartbeat", "0"], "--heartbeat"),
        (["--ingress", "nonsense"], "--ingress"),
        (["--no-such-flag"], "unrecognized"),
    ],
)
def test_bad_flags_exit_2_with_a_reason_and_no_traceback(tmp_path: Path, args: list[str], reason: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([*streamer_command(), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert reason in done.stderr and "Traceback" not in done.stderr


def test_settings_come_from_the_environment_and_the_secret_is_generated_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # var/secret is relative to the working directory
    config = parse_config([], {"TRADESTREAM_HEARTBEAT": "2.5", "TRADESTREAM_REUSE_PORT": "1"})
    again = parse_config(["--heartbeat", "3", "--client-buffer", "7"], {"TRADESTREAM_HEARTBEAT": "2.5"})
    given = parse_config([], {"TRADESTREAM_SECRET": "from-env"})
    assert (config.heartbeat, config.reuse_port, again.heartbeat, again.client_buffer) == (2.5, True, 3.0, 7)
    assert config.secret == again.secret == (tmp_path / "var" / "secret").read_text().strip()
    assert len(config.secret) >= 32 and given.secret == "from-env"
    assert (config.port, config.client_buffer, config.max_streams_per_user, config.recheck) == (8080, 50, 20, 60.0)


def _streamer_on(database_url: str, broker: BrokerThread, workdir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = workdir / "streamer.log"
    args = [*streamer_command(), "--database-url", database_url, "--ingress", broker.endpoints["ingress"],
            "--publish", broker.endpoints["publish"], "--replay", broker.endpoints["replay"], "--host", "127.0.0.1",
            "--port", "0"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stderr=log, cwd=workdir, env={**os.environ, "PYTHONPATH": str(REPO)})
    return proc, log_path


def test_a_streamer_on_an_older_schema_waits_for_the_migration_and_then_serves(tmp_path: Path, broker: BrokerThread) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine, "0002")  # before the sessions table the streamer writes
    proc, log_path = _streamer_on(url, broker, tmp_path)
    try:
        wait_until(lambda: "Waiting up to 30 s" in log_path.read_text(), timeout=PROCESS_START_S, what="the streamer to say it waits")
        assert "at revision 0002" in log_path.read_text() and proc.poll() is None
        migrate.upgrade(engine)  # as the webhook or `tradestream-admin migrate` does
        wait_until(lambda: _LISTENING.search(log_path.read_text()), timeout=PROCESS_START_S,
                   what="the streamer to listen after the migration")
    finally:
        proc.kill()
        proc.wait()
        engine.dispose()


def test_a_streamer_stopped_while_it_waits_for_the_schema_exits_0_at_once(tmp_path: Path, broker: BrokerThread) -> None:
    # Still starting (before its stop handler): SIGTERM is a clean stop, not death by the signal (-15),
    # which supervisord logs as `terminated by SIGTERM` (a Ctrl-C of make run on a busy machine).
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine, "0002")
    engine.dispose()
    proc, log_path = _streamer_on(url, broker, tmp_path)
    try:
        wait_until(lambda: "Waiting up to 30 s" in log_path.read_text(), timeout=PROCESS_START_S, what="the streamer to say it waits")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0  # a deadline below the 30 s wait it would otherwise finish
    finally:
        proc.kill()
        proc.wait()
    assert "Traceback" not in log_path.read_text()


def test_a_streamer_on_a_newer_releases_schema_exits_1_at_once_saying_so(tmp_path: Path, broker: BrokerThread) -> None:
    url = f"sqlite:///{tmp_path / 'newer.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    proc, log_path = _streamer_on(url, broker, tmp_path)
    assert proc.wait(timeout=20) == 1
    text_of_log = log_path.read_text()
    assert "revision 9999, unknown to this release" in text_of_log and "does not start" in text_of_log
    assert "Traceback" not in text_of_log and "Waiting" not in text_of_log


def test_bus_coalesce_is_a_setting_of_seconds_that_reaches_the_bus_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamer.hub import Hub
    from streamer.stats import StreamerStats

    monkeypatch.chdir(tmp_path)
    given = parse_config(["--bus-coalesce", "0.002"], {"TRADESTREAM_BUS_COALESCE": "0.005"})
    from_env = parse_config([], {"TRADESTREAM_BUS_COALESCE": "0"})
    assert (given.bus_coalesce, from_env.bus_coalesce) == (0.002, 0.0)
    with pytest.raises(SystemExit) as exit_info:
        parse_config(["--bus-coalesce", "-1"], {})
    assert exit_info.value.code == 2
    hub = Hub(given, StreamerStats())
    assert hub.subscriber._reader.coalesce_s == 0.002  # the flag is what the SUB reader rests
