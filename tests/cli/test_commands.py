"""Every console script as users start it: --version, --help, bad values, an unusable database, --port 0.

Real subprocesses, with none of the caller's TRADESTREAM_* variables, for --version, --help, --port 0
and each command's first row of the bad-value and unusable-database tables. The other rows run the
command's own parser (`PARSERS`) or `main` in this process (tests/in_process.py), since a process per
row was ~1 s of CPU for its start alone. Each table row is one case: adding a case is one line.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

import bench.harness
import bus.broker_config
import producers.orders
import producers.positions
import producers.replay
import producers.webhook
import store.admin
import streamer.config
import streamer.server
from bench.run import BenchConfig
from bus.broker_config import BrokerConfig
from bus.process import declared_settings, env_name
from producers.orders import OrdersConfig
from producers.positions import PositionsConfig
from producers.replay import ReplayConfig
from producers.webhook import WebhookConfig
from store.admin import AdminConfig
from streamer.config import StreamerConfig
from tests.in_process import run_main
from tests.store.test_store_db import UNAVAILABLE
from tests.waiting import PROCESS_START_S, wait_until

BIN = Path(sys.executable).parent
RUN_DEADLINE_S = 30  # a process that should have exited at once but serves instead fails, not hangs

CONFIGS: dict[str, type[Any]] = {
    "broker": BrokerConfig, "streamer": StreamerConfig, "webhook": WebhookConfig, "orders": OrdersConfig,
    "positions": PositionsConfig, "replay": ReplayConfig, "admin": AdminConfig, "bench": BenchConfig,
}


# What each command's `main` reads its flags and variables with, first of all (the admin's main parses
# its subcommand's arguments too, and only then opens the database). Each returns when it accepts the values.
PARSERS: dict[str, Callable[[list[str]], Any]] = {
    "broker": bus.broker_config.parse_config, "streamer": streamer.config.parse_config,
    "webhook": producers.webhook.parse_config, "orders": producers.orders.parse_config,
    "positions": producers.positions.parse_config, "replay": producers.replay.parse_config,
    "admin": store.admin.main, "bench": bench.harness.parse_config,
}
MAINS: dict[str, Callable[[list[str]], int]] = {
    "streamer": streamer.server.main, "webhook": producers.webhook.main, "orders": producers.orders.main,
    "positions": producers.positions.main, "admin": store.admin.main,
}


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESTREAM_")}
    return {**env, **(extra or {})}


def run(command: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / f"tradestream-{command}"), *args], cwd=cwd, env=environment(env),
        capture_output=True, text=True, timeout=RUN_DEADLINE_S, check=False,
    )


def parse_in_process(command: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`run`'s exit code and output for values the command's parser refuses: 2 and its one line (0: accepted)."""
    def parse(argv: list[str]) -> int:
        PARSERS[command](argv)
        return 0
    return run_main(parse, list(args), cwd=cwd, env=env)


def main_in_process(command: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`run`'s exit code and output from the command's `main` in this process."""
    return run_main(MAINS[command], list(args), cwd=cwd, env=env)


def first_rows(table: list[Any], command_of: Callable[[Any], str]) -> set[int]:
    """The index of each command's first row: that row runs the real console script."""
    firsts: dict[str, int] = {}
    for index, row in enumerate(table):
        firsts.setdefault(command_of(row), index)
    return set(firsts.values())


@pytest.mark.parametrize("command", CONFIGS)
def test_version_prints_the_package_version(command: str, tmp_path: Path) -> None:
    done = run(command, "--version", cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"tradestream-{command} {metadata.version('tradestream')}\n", "")


@pytest.mark.parametrize("command", CONFIGS)
def test_help_names_every_setting_with_its_variable(command: str, tmp_path: Path) -> None:
    done = run(command, "--help", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith(f"usage: tradestream-{command}")
    text = " ".join(done.stdout.split())  # argparse wraps lines
    for declared in declared_settings(CONFIGS[command]):
        assert f"--{declared.name.replace('_', '-')}" in text
        assert f"env {env_name(declared.name)};" in text
    assert not list(tmp_path.iterdir()), "--help wrote files"


ENDPOINT = "a ZeroMQ endpoint (tcp://HOST:PORT or ipc://PATH)"
DATABASE_URL = "a database URL of a known dialect (sqlite:///FILE, postgresql+psycopg://USER@HOST/DB)"
# (command, argv, environment, the one line on stderr after "tradestream-<command>: error: ")
BAD_VALUES: list[tuple[str, list[str], dict[str, str], str]] = [
    ("broker", ["--history", "0"], {}, "--history: expected an integer >= 1, got '0'"),
    ("broker", [], {"TRADESTREAM_INGRESS": "localhost:5557"}, f"TRADESTREAM_INGRESS: expected {ENDPOINT}, got 'localhost:5557'"),
    ("streamer", ["--port", "abc"], {}, "--port: expected an integer 0..65535, got 'abc'"),
    ("streamer", [], {"TRADESTREAM_PORT": "abc"}, "TRADESTREAM_PORT: expected an integer 0..65535, got 'abc'"),
    ("streamer", [], {"TRADESTREAM_HEARTBEAT": "0"}, "TRADESTREAM_HEARTBEAT: expected a finite number > 0, got '0'"),
    ("streamer", ["--reuse-port=yes"], {}, "--reuse-port: ignored explicit argument 'yes'"),
    ("streamer", [], {"TRADESTREAM_REUSE_PORT": "perhaps"}, "TRADESTREAM_REUSE_PORT: expected one of 1, true, yes, on, 0, false, no, off, got 'perhaps'"),
    ("webhook", ["--port", "70000"], {}, "--port: expected an integer 0..65535, got '70000'"),
    ("webhook", [], {"TRADESTREAM_RATE_LIMIT": "-1"}, "TRADESTREAM_RATE_LIMIT: expected a finite number > 0, got '-1'"),
    ("webhook", ["--auth-failures", "-1"], {}, "--auth-failures: expected an integer >= 0, got '-1'"),
    ("webhook", [], {"TRADESTREAM_AUTH_FAILURES": "lots"}, "TRADESTREAM_AUTH_FAILURES: expected an integer >= 0, got 'lots'"),
    ("webhook", ["--auth-failure-window", "0"], {}, "--auth-failure-window: expected a number 1..86400, got '0'"),
    ("webhook", [], {"TRADESTREAM_AUTH_FAILURE_WINDOW": "1e9"}, "TRADESTREAM_AUTH_FAILURE_WINDOW: expected a number 1..86400, got '1e9'"),
    ("webhook", [], {"TRADESTREAM_TRUST_PROXY": "maybe"}, "TRADESTREAM_TRUST_PROXY: expected one of 1, true, yes, on, 0, false, no, off, got 'maybe'"),
    ("orders", ["--fills", "nonsense"], {}, f"--fills: expected {ENDPOINT}, got 'nonsense'"),
    ("orders", [], {"TRADESTREAM_DATABASE_URL": "not a url"}, f"TRADESTREAM_DATABASE_URL: expected {DATABASE_URL}, got 'not a url'"),
    ("positions", [], {"TRADESTREAM_LOG_LEVEL": "LOUD"}, "TRADESTREAM_LOG_LEVEL: expected one of DEBUG, INFO, WARNING, ERROR, got 'LOUD'"),
    ("positions", ["--database-url", "foo://me:hunter2@db/x"], {}, f"--database-url: expected {DATABASE_URL}, got 'foo://me:***@db/x'"),
    ("replay", ["log.jsonl", "--speed", "fast"], {}, "--speed: expected a finite number >= 0, got 'fast'"),
    ("replay", ["log.jsonl"], {"TRADESTREAM_ON_ERROR": "ignore"}, "TRADESTREAM_ON_ERROR: expected one of stop, skip, got 'ignore'"),
    ("replay", [], {}, "the following arguments are required: file"),
    ("admin", ["--database-url", "mysql+nodriver://x/y", "init-db"], {}, f"--database-url: expected {DATABASE_URL}, got 'mysql+nodriver://x/y'"),
    ("admin", ["init-db"], {"TRADESTREAM_INGRESS": "127.0.0.1:5557"}, f"TRADESTREAM_INGRESS: expected {ENDPOINT}, got '127.0.0.1:5557'"),
    ("bench", ["--connections", "0"], {}, "--connections: expected an integer >= 1, got '0'"),
    ("bench", [], {"TRADESTREAM_STREAMER_PID": "me"}, "TRADESTREAM_STREAMER_PID: expected an integer >= 1, got 'me'"),
    # Digits int(), float() and Decimal() read but nobody types: other scripts' digits, underscores (Python's literals).
    ("streamer", ["--port", "٨٠٨٠"], {}, "--port: expected an integer 0..65535, got '٨٠٨٠'"),
    ("broker", [], {"TRADESTREAM_HISTORY": "1_000"}, "TRADESTREAM_HISTORY: expected an integer >= 1, got '1_000'"),
    ("webhook", ["--rate-limit", "２０"], {}, "--rate-limit: expected a finite number > 0, got '２０'"),
]


SCRIPT_BAD_VALUES = first_rows(BAD_VALUES, lambda row: row[0])


@pytest.mark.parametrize(("index", "command", "argv", "env", "line"), [(i, *row) for i, row in enumerate(BAD_VALUES)])
def test_a_bad_value_exits_2_with_one_line_naming_the_flag_or_variable(
    index: int, command: str, argv: list[str], env: dict[str, str], line: str, tmp_path: Path
) -> None:
    runner = run if index in SCRIPT_BAD_VALUES else parse_in_process
    done = runner(command, *argv, cwd=tmp_path, env=env)
    assert (done.returncode, done.stderr) == (2, f"tradestream-{command}: error: {line}\n")


def test_an_admin_subcommand_value_is_one_line_too(tmp_path: Path) -> None:
    done = parse_in_process("admin", "link", "--strategy", "abc", "--account", "1", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, "tradestream-admin link: error: --strategy: expected an integer, got 'abc'\n")


CAPITAL = "a decimal number > 0, below 10^21, with at most 24 decimals"
# An id or an amount an admin action would otherwise read as another: `delete-strategy --strategy 0_3` deleted strategy 3.
ADMIN_BAD_NUMBERS = [
    (["delete-strategy", "--strategy", "0_3"], "tradestream-admin delete-strategy: error: --strategy: expected an integer, got '0_3'"),
    (["link", "--strategy", "٣", "--account", "1"], "tradestream-admin link: error: --strategy: expected an integer, got '٣'"),
    (["create-account", "--user", "u", "--name", "n", "--exchange", "x", "--capital", "1_000"],
     f"tradestream-admin create-account: error: --capital: expected {CAPITAL}, got '1_000'"),
    (["create-account", "--user", "u", "--name", "n", "--exchange", "x", "--capital", "١٠٠"],
     f"tradestream-admin create-account: error: --capital: expected {CAPITAL}, got '١٠٠'"),
    # Out of the contract's range (section 6) is a bad flag value too (exit 2, before any database work), not
    # an error of the action (exit 1): it said "tradestream-admin: error: capital: ..." after migrating the database.
    (["create-account", "--user", "u", "--name", "n", "--exchange", "x", "--capital", "1e-25"],
     f"tradestream-admin create-account: error: --capital: expected {CAPITAL}, got '1e-25'"),
    (["create-account", "--user", "u", "--name", "n", "--exchange", "x", "--capital", "1e21"],
     f"tradestream-admin create-account: error: --capital: expected {CAPITAL}, got '1e21'"),
]


@pytest.mark.parametrize(("argv", "line"), ADMIN_BAD_NUMBERS)
def test_an_admin_number_in_other_digits_or_with_underscores_is_refused(tmp_path: Path, argv: list[str], line: str) -> None:
    done = parse_in_process("admin", *argv, cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, line + "\n")
    assert not list(tmp_path.iterdir()), "a bad flag value touched the database"


# How each process that uses the database is started, on ports that cannot collide if it wrongly starts.
DATABASE_USERS: dict[str, list[str]] = {
    "streamer": ["--port", "0"],
    "webhook": ["--port", "0"],
    "orders": ["--orders", "tcp://127.0.0.1:*"],
    "positions": ["--fills", "tcp://127.0.0.1:*"],
    "admin": ["init-db"],
}


# The permanent ones: a server not there yet (refused) is waited for (store/wait.py, tests/faults/test_database_wait.py).
PERMANENT = [(make_url, words) for make_url, words, waits in UNAVAILABLE if not waits]


@pytest.mark.parametrize(("index", "make_url", "words"), [(i, *row) for i, row in enumerate(PERMANENT)])
@pytest.mark.parametrize("command", DATABASE_USERS)
def test_an_unusable_database_stops_the_process_at_start_with_one_line(
    command: str, index: int, make_url: Callable[[Path], str], words: str, tmp_path: Path
) -> None:
    url = make_url(tmp_path)
    args = ["--database-url", url, *DATABASE_USERS[command]] if command == "admin" else [*DATABASE_USERS[command], "--database-url", url]
    runner = run if index == 0 else main_in_process  # the first unusable database through each real script
    done = runner(command, *args, cwd=tmp_path)
    lines = done.stderr.splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1 and words in lines[0] and "cannot " in lines[0], done.stderr
    assert "hunter2" not in done.stderr and not (tmp_path / "missing").exists()


_LISTENING = re.compile(r"(streamer|webhook) listening on http://127\.0\.0\.1:(\d+)")


@pytest.mark.parametrize("command", ["streamer", "webhook"])
def test_port_0_listens_on_a_free_port_and_logs_it(command: str, tmp_path: Path) -> None:
    log_path = tmp_path / f"{command}.log"
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    if command == "streamer":  # it does not migrate: it waits for the schema a writer brings to head
        assert run("admin", "--database-url", url, "migrate", cwd=tmp_path).returncode == 0
    args = ["--port", "0", "--host", "127.0.0.1", "--database-url", url]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(BIN / f"tradestream-{command}"), *args], cwd=tmp_path, env=environment(), stderr=log)
    try:
        match = wait_until(lambda: _LISTENING.search(log_path.read_text()), timeout=PROCESS_START_S, what=f"{command} to log its port")
        port = int(match[2])
        assert port != 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=5) as response:  # no broker here
            assert response.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log_path.read_text()


# Variables several commands read with different kinds of value, and why that is right.
SHARED_APART = {"port": "the bench's --port names a running streamer to attach to: never 0 (any free port)"}


def test_a_variable_two_commands_read_takes_one_kind_of_value() -> None:
    """An exported TRADESTREAM_X is read by every command that has --x: it must mean one kind of value to all.

    (The bench's switch was once `--journal`, so the broker's TRADESTREAM_JOURNAL path, which
    `make run` exports, made `tradestream-bench` exit 2.)
    """
    kinds: dict[str, dict[str, str]] = {}
    for command, config_type in CONFIGS.items():
        for declared in declared_settings(config_type):
            kind = declared.setting.kind
            kinds.setdefault(declared.name, {})[command] = getattr(kind, "expected", getattr(kind, "__name__", repr(kind)))
    mixed = {env_name(name): by for name, by in kinds.items() if len(set(by.values())) > 1 and name not in SHARED_APART}
    assert not mixed


def test_the_readme_settings_table_names_every_flag_of_every_command() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    missing = {
        f"{command}: --{declared.name.replace('_', '-')}"
        for command, config_type in CONFIGS.items()
        for declared in declared_settings(config_type)
        if f"`--{declared.name.replace('_', '-')}`" not in table
    }
    assert not missing, f"README's Configuration table lacks {sorted(missing)}"
