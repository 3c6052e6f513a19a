"""scripts/run.sh (what `make run` runs) as a person uses it: start, look, Ctrl-C, again."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from store import revisions, schema_status
from store.db import make_engine
from tests.deploy.stack import PROGRAMS, PROJECT, STACK_PORTS, Stack, make_project_copy, stack_environment
from tests.ports import reserved_ports
from tests.store.legacy import release_0001
from tests.waiting import wait_until

SAMPLE = Path("producers/samples/sample-trades.jsonl")
READY = "tradestream is running"


class RunScript:
    """scripts/run.sh in its own process group, as a terminal runs it; output collected."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            ["bash", str(root / "scripts" / "run.sh")], cwd=root, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.output = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in iter(self.process.stdout.readline, b""):
            self.output += line.decode(errors="replace")

    def wait_output(self, text: str, timeout: float = 90) -> None:
        def seen() -> bool:
            if text in self.output:
                return True
            if self.process.poll() is not None:
                self._reader.join(timeout=5)
                raise AssertionError(f"run.sh exited {self.process.returncode}:\n{self.output}")
            return False
        wait_until(seen, timeout=timeout, what=f"{text!r} from run.sh", poll=0.1)

    def ctrl_c(self, timeout: float = 60) -> int:
        """SIGINT to the whole process group, as Ctrl-C in a terminal does."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout: float) -> int:
        """Its exit code, once it ended (by itself, or after ctrl_c), with all its output read."""
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A checkout-like folder with run.sh, supervisord.conf, the sample log and the venv; its environment.

    Its ports stay reserved until the test's end (each test stops what run.sh started before that).
    """
    root = tmp_path / "checkout"
    make_project_copy(root)
    (root / "scripts").mkdir()
    for script in ("run.sh", "wait_ready.py"):
        shutil.copy(PROJECT / "scripts" / script, root / "scripts" / script)
    (root / SAMPLE.parent).mkdir(parents=True)
    shutil.copy(PROJECT / SAMPLE, root / SAMPLE)
    with reserved_ports(STACK_PORTS) as ports:
        env = stack_environment(root, ports)
        env["TRADESTREAM_SPEED"] = "0"  # replay as fast as it goes, not at run.sh's 10x demo pace
        yield root, env


def api_token(output: str, username: str) -> str:
    match = re.search(rf"^\s+{username}\s+password \S+\s+API token (\S+)", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def strategy_id(output: str, group_name: str) -> int:
    match = re.search(rf"^\s+id (\d+)\s+{group_name}\s", output, re.MULTILINE)
    assert match, output
    return int(match.group(1))


def rows_of(stack: Stack, what: str, token: str, strategy: int) -> list[object]:
    """Orders or positions of a strategy, from the REST snapshot the dashboard loads."""
    status, body = stack.request("GET", f"/api/{what}?strategy_id={strategy}", token=token)
    assert status == 200, (status, body)
    return body[what]


def test_run_script_starts_replays_stops_on_ctrl_c_and_runs_again(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    stack = Stack(root, env)  # not started here: run.sh starts it; used for supervisorctl and HTTP

    for attempt in (1, 2):
        logged = stack.log_sizes()
        run = RunScript(root, env)
        try:
            run.wait_output(READY)
            # The banner waits for all six to listen (their stop signals are clean exits from then on).
            assert stack.listening(since=logged), run.output
            assert "Logins:" in run.output and "alice" in run.output
            assert "warning" not in run.output.lower(), run.output
            # The replayed sample reaches the dashboard: alice has orders and positions.
            token, btc_trend = api_token(run.output, "alice"), strategy_id(run.output, "btc-trend")
            for what in ("orders", "positions"):
                wait_until(lambda: rows_of(stack, what, token, btc_trend), timeout=30, what=f"replayed {what}", poll=0.2)  # noqa: B023 (called before the loop moves on)

            if attempt == 1:
                # A second run next to a live one says so instead of fighting over ports.
                second = subprocess.run(["bash", "scripts/run.sh"], cwd=root, env=env,
                                        capture_output=True, text=True, timeout=60)
                assert second.returncode == 1 and "already running" in second.stderr

            pids = [pid for _, pid in stack.status().values()]
            assert len(pids) == 6 and all(pids)
        finally:
            code = run.ctrl_c()
        # Ctrl-C is the normal way out: every program stopped, exit 0, no CRIT line, no traceback.
        assert code == 0, run.output
        assert "CRIT" not in run.output and "Traceback" not in run.output, run.output
        assert "stopped: webhook (exit status 0)" in run.output, run.output
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert not (root / "var" / "supervisor.sock").exists()


def port_held(port: int) -> socket.socket:
    """Something else listening on `port` (what keeps the webhook from starting) until it is closed."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    return holder


def webhook_retried(stack: Stack) -> bool:
    """supervisord saw the webhook exit while starting: its log says so for good, where BACKOFF is a moment between
    two tries that polls of a loaded machine can miss (a start that takes seconds to fail, its pause of one)."""
    log = stack.root / "var" / "log" / "supervisord.log"
    return log.exists() and "exited: webhook " in log.read_text(errors="replace")


def test_run_script_shows_its_banner_only_once_every_program_is_up(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    stack = Stack(root, env)
    held = port_held(int(env["TRADESTREAM_WEBHOOK_PORT"]))
    run = RunScript(root, env)
    try:
        # The streamers are healthy, the webhook cannot bind its port and supervisord retries it: not running yet.
        stack.wait_healthy()
        wait_until(lambda: webhook_retried(stack), timeout=60, what="supervisord to see the webhook exit while starting", poll=0.1)
        assert READY not in run.output, run.output
        held.close()
        run.wait_output(READY)
        # At the banner, at once: every program runs and listens, both services answer /healthz.
        states = stack.status()
        assert sorted(states) == sorted(PROGRAMS) and all(state == "RUNNING" for state, _ in states.values()), states
        assert stack.listening(), run.output
        assert stack.request("GET", "/healthz", base_url=stack.webhook_url)[0] == 200
        assert stack.request("GET", "/healthz")[0] == 200
        assert "webhook exited while starting; supervisord tries again (see var/log/webhook.log)" in run.output
    finally:
        held.close()
        code = run.ctrl_c()
    assert code == 0, run.output


def test_run_script_fails_naming_a_program_that_cannot_start(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    env["TRADESTREAM_STARTUP_TIMEOUT"] = "20"  # not run.sh's minute: the webhook keeps failing anyway
    stack = Stack(root, env)
    with port_held(int(env["TRADESTREAM_WEBHOOK_PORT"])):  # closed at the block's end
        run = RunScript(root, env)
        try:
            code = run.wait_exit(timeout=120)
        finally:
            if run.process.poll() is None:
                run.ctrl_c()
    # Non-zero, the program and its log named, the log's end quoted, no banner, and nothing left running.
    assert code == 1, run.output
    assert READY not in run.output, run.output
    # Whatever the webhook's state at the deadline (BACKOFF, STARTING, RUNNING for a moment before it exits):
    assert re.search(r"^tradestream did not start: not up in time: webhook ", run.output, re.MULTILINE), run.output
    assert "see var/log/webhook.log" in run.output and "var/log/webhook.log ends:" in run.output, run.output
    assert "stopping tradestream..." in run.output, run.output
    assert stack.status() == {} and not (root / "var" / "supervisor.sock").exists()


def test_run_script_upgrades_an_older_release_database_in_var(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    (root / "var").mkdir()
    engine = make_engine(env["TRADESTREAM_DATABASE_URL"])
    try:
        release_0001.Base.metadata.create_all(engine)  # what `make run` of that release left in var/
        with engine.begin() as connection:
            connection.execute(release_0001.User.__table__.insert(), [{
                "username": "olduser", "password_hash": "x", "is_admin": False,
                "api_token_hash": "a" * 64, "created_at": datetime.now(UTC),
            }])
    finally:
        engine.dispose()
    stack = Stack(root, env)

    run = RunScript(root, env)
    try:
        run.wait_output(READY)
        assert f"Database migrated from an older release's schema (0001, stamped) to revision {revisions.head()}." in run.output
        assert "warning" not in run.output.lower(), run.output
        token, btc_trend = api_token(run.output, "alice"), strategy_id(run.output, "btc-trend")
        wait_until(lambda: rows_of(stack, "positions", token, btc_trend), timeout=30, what="replayed positions", poll=0.2)
    finally:
        code = run.ctrl_c()
    assert code == 0, run.output
    engine = make_engine(env["TRADESTREAM_DATABASE_URL"])
    try:
        assert schema_status.status(engine).at_head
        with engine.connect() as connection:
            assert connection.execute(text("SELECT username, is_active FROM users WHERE username = 'olduser'")).one() == ("olduser", True)
    finally:
        engine.dispose()
