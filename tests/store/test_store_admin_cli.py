"""`tradestream-admin` as users run it: its exit codes and its output.

Most cases call `store.admin.main` in this process (tests/in_process.py: its own working directory,
TRADESTREAM_* variables, stdout and stderr; the exit code of its return or SystemExit), since a real
process per call was ~0.5 s of CPU each, most of this file's two minutes. The installed console script
itself runs as a real subprocess for every subcommand (on SQLite: `admin_script`, `script_or_main`), for
exit codes 0, 1 and 2, the environment, the default database in the working directory and a closed pipe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bus.events import CleanupStrategyMessage, DisconnectMessage, EndSessionsMessage
from store import actions, admin
from store.db import make_engine
from store.models import User
from tests.in_process import run_main
from tests.ports import refused_port
from tests.store.conftest import ControlInbox

ADMIN = Path(sys.executable).with_name("tradestream-admin")
# Generous: a hang (the contract allows ~2 s for a down broker) fails instead of blocking.
RUN_DEADLINE_S = 30

Run = Callable[..., subprocess.CompletedProcess[str]]


def run_script(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed command with only the TRADESTREAM_* variables given in `env`."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TRADESTREAM_")}
    environ.update(env or {})
    return subprocess.run(
        [str(ADMIN), *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=RUN_DEADLINE_S,
        check=False,
    )


def run_admin(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`run_script`'s result from `store.admin.main` in this process."""
    return run_main(admin.main, list(args), cwd=cwd, env=env)


def script_or_main(database_url: str) -> Run:
    """The real console script on SQLite; `main` in process on PostgreSQL, where the SQL is what differs."""
    return run_script if database_url.startswith("sqlite") else run_admin


def on_test_database(runner: Run, database_url: str, control_inbox: ControlInbox, cwd: Path) -> Run:
    env = {"TRADESTREAM_DATABASE_URL": database_url, "TRADESTREAM_INGRESS": control_inbox.endpoint}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return runner(*args, cwd=cwd, env=env)

    return run


@pytest.fixture(name="admin")
def admin_fixture(database_url: str, control_inbox: ControlInbox, tmp_path: Path) -> Run:
    """Runs the command (in process) on the test database, its control messages going to the test's inbox."""
    return on_test_database(run_admin, database_url, control_inbox, tmp_path)


@pytest.fixture
def admin_script(database_url: str, control_inbox: ControlInbox, tmp_path: Path) -> Run:
    """`admin`, as the real console script on SQLite (`script_or_main`)."""
    return on_test_database(script_or_main(database_url), database_url, control_inbox, tmp_path)


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a successful run printed."""
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_demo_json_has_the_contract_keys_and_runs_twice(admin: Run) -> None:
    # --json after the subcommand or before it, as a global option: the same output.
    first, second = ok_json(admin("demo", "--json")), ok_json(admin("--json", "demo"))
    assert set(first) == {"users", "strategies", "accounts"}
    assert all(set(u) == {"id", "username", "password", "api_token"} for u in first["users"])
    assert all(
        set(s) == {"id", "owner_id", "name", "group_name", "webhook_token", "is_active"}
        for s in first["strategies"]
    )
    assert all(
        set(a) == {"id", "user_id", "name", "exchange", "capital"} for a in first["accounts"]
    )
    assert [u["id"] for u in first["users"]] == [u["id"] for u in second["users"]]
    assert first["users"][0]["api_token"] != second["users"][0]["api_token"]


def test_demo_prints_the_logins_for_people(admin: Run) -> None:
    result = admin("demo")
    assert result.returncode == 0, result.stderr
    assert "alice" in result.stdout and "alice-demo" in result.stdout
    assert "btc-trend" in result.stdout and "token" in result.stdout


def test_create_user_json_has_the_contract_keys(admin: Run) -> None:
    user = ok_json(admin("create-user", "dana", "--password", "pw", "--admin", "--json"))
    assert set(user) == {"id", "username", "is_admin", "api_token"}
    assert (user["username"], user["is_admin"]) == ("dana", True)
    result = admin("create-user", "eve", "--password", "pw")
    assert result.returncode == 0 and "API token" in result.stdout


def test_every_subcommand_prints_its_contract_keys_and_publishes_its_messages(
    admin_script: Run, control_inbox: ControlInbox
) -> None:
    for name in ("alice", "bob"):
        ok_json(admin_script("create-user", name, "--password", "pw", "--json"))
    account = ok_json(admin_script(*ACCOUNT, "--user", "bob", "--capital", "2500.5", "--json"))
    assert set(account) == {"id", "user_id", "name", "exchange", "capital"}
    assert account["capital"] == "2500.5"
    group = ("--name", "BTC Trend", "--group", "btc-trend", "--json")
    strategy = ok_json(admin_script("create-strategy", "--owner", "alice", *group))
    assert set(strategy) == {"id", "owner_id", "name", "group_name", "webhook_token", "is_active"}
    ids = ("--strategy", str(strategy["id"]), "--account", str(account["id"]))
    expected_link = {"strategy_id": strategy["id"], "account_id": account["id"]}
    assert ok_json(admin_script("link", *ids, "--json")) == expected_link
    assert ok_json(admin_script("unlink", *ids, "--json")) == expected_link
    revoked = control_inbox.receive()
    assert isinstance(revoked, DisconnectMessage)
    assert (revoked.user_id, revoked.reason) == (account["user_id"], "permission_revoked")
    by_strategy = ("--strategy", str(strategy["id"]))
    assert ok_json(admin_script("deactivate", *by_strategy, "--json"))["is_active"] is False
    assert control_inbox.receive().reason == "strategy_inactive"  # type: ignore[attr-defined]
    assert ok_json(admin_script("activate", *by_strategy, "--json"))["is_active"] is True
    deletion = ok_json(admin_script("delete-strategy", *by_strategy, "--json"))
    assert deletion == {"strategy_id": strategy["id"]}
    deleted = control_inbox.receive()
    assert isinstance(deleted, CleanupStrategyMessage) and deleted.reason == "strategy_deleted"


def test_user_subcommands_print_the_user_and_end_its_sessions(admin_script: Run, control_inbox: ControlInbox) -> None:
    user = ok_json(admin_script("create-user", "dana", "--password", "pw", "--json"))
    expected = {"id": user["id"], "username": "dana", "is_admin": False}
    assert ok_json(admin_script("set-password", "dana", "--password", "new-pw", "--json")) == {**expected, "is_active": True}
    changed = control_inbox.receive()
    assert isinstance(changed, EndSessionsMessage)
    assert (changed.user_id, changed.session_id, changed.api_token, changed.reason) == (user["id"], None, False, "session_ended")
    assert ok_json(admin_script("deactivate-user", "dana", "--json")) == {**expected, "is_active": False}
    deactivated = control_inbox.receive()
    assert isinstance(deactivated, EndSessionsMessage) and (deactivated.api_token, deactivated.reason) == (True, "user_deactivated")
    assert ok_json(admin_script("activate-user", "dana", "--json")) == {**expected, "is_active": True}
    result = admin_script("deactivate-user", "dana")
    assert result.returncode == 0 and "Deactivated user 'dana'" in result.stdout


ACCOUNT = ["create-account", "--name", "Main", "--exchange", "paper"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([*ACCOUNT, "--user", "nobody", "--capital", "1"], "no user named 'nobody'"),
        ([*ACCOUNT, "--user", "alice", "--capital", "1"], "already has an account"),
        (["create-user", "alice", "--password", "again"], "already exists"),
        (["create-user", "al ice", "--password", "pw"], "username"),
        (["create-strategy", "--owner", "alice", "--name", "X", "--group", "btc-trend"], "taken"),
        (["link", "--strategy", "424242", "--account", "1"], "no strategy with id 424242"),
        (["link", "--strategy", "1", "--account", "1"], "already linked"),
        (["unlink", "--strategy", "1", "--account", "2"], "no account with id 2"),
        (["delete-strategy", "--strategy", "0"], "no strategy with id 0"),
        (["activate", "--strategy", str(2**64)], "no strategy"),
        (["set-password", "nobody", "--password", "pw"], "no user named 'nobody'"),
        (["deactivate-user", "nobody"], "no user named 'nobody'"),
        (["activate-user", "nobody"], "no user named 'nobody'"),
    ],
)
def test_errors_exit_1_with_one_line_and_no_traceback(
    admin: Run, session: Session, args: list[str], words: str
) -> None:
    actions.create_user(session, None, "alice", "pw")
    account = actions.create_account(session, None, "alice", "Main", "paper", 10)
    strategy = actions.create_strategy(session, None, "alice", "B", "btc-trend").strategy
    actions.link(session, None, strategy.id, account.id)
    assert (strategy.id, account.id) == (1, 1)
    result = admin(*args)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tradestream-admin: error: ")
    assert words in lines[0]


def test_database_errors_exit_1_with_one_line(tmp_path: Path) -> None:
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    result = run_script("--database-url", unreachable, "demo", cwd=tmp_path)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["create-user", "bob", "--pasword", "x"], {}),
        (["create-user", "bob"], {}),
        (["link", "--strategy", "abc", "--account", "1"], {}),
        ([*ACCOUNT, "--user", "a", "--capital", "lots"], {}),
        ([*ACCOUNT, "--user", "a", "--capital", "-5"], {}),
        ([*ACCOUNT, "--user", "a", "--capital", "0"], {}),
        ([*ACCOUNT, "--user", "a", "--capital", "NaN"], {}),
        (["frobnicate"], {}),
        ([], {}),
        (["--jsn", "demo"], {}),
        (["--database-url", "not a url", "init-db"], {}),
        (["--ingress", "127.0.0.1:5557", "init-db"], {}),
        (["init-db"], {"TRADESTREAM_LOG_LEVEL": "LOUD"}),
    ],
)
def test_bad_flags_exit_2_with_a_reason(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    result = run_admin(*args, cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "error:" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "var").exists()



@pytest.mark.parametrize("capital", ["-5", "0", "Infinity", "lots"])
def test_a_capital_that_is_not_a_positive_amount_is_named_as_typed(tmp_path: Path, capital: str) -> None:
    """It once said `capital Decimal('-5'): ...` (exit 1): the flag is named and the value shown as typed."""
    result = run_admin(*ACCOUNT, "--user", "a", "--capital", capital, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "tradestream-admin create-account: error: --capital: expected a decimal number > 0, below 10^21,"
        f" with at most 24 decimals, got {capital!r}")


def test_a_reader_that_closes_the_output_gets_one_line_and_the_change_is_kept(tmp_path: Path) -> None:
    """`tradestream-admin demo | head` printed a BrokenPipeError traceback. A pipe whose reader is gone
    before the command writes makes every write fail (EPIPE), as `head` does once it has its lines."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("TRADESTREAM_")}
        result = subprocess.run([str(ADMIN), "demo"], cwd=tmp_path, env=environ, stdout=write_end,
                                stderr=subprocess.PIPE, text=True, timeout=RUN_DEADLINE_S, check=False)
    finally:
        os.close(write_end)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (  # after the log line of the new database's migration
        "tradestream-admin: error: the output's reader closed it before it was all written (the change is saved)")
    assert "Traceback" not in result.stderr
    listed = run_admin("demo", "--json", cwd=tmp_path)  # the demo rows were made: running again reuses them
    assert listed.returncode == 0 and len(json.loads(listed.stdout)["users"]) == 3

SUBCOMMANDS = [
    *("init-db", "demo", "create-user", "create-account", "create-strategy"),
    *("link", "unlink", "deactivate", "activate", "delete-strategy"),
    *("set-password", "deactivate-user", "activate-user"),
]


@pytest.mark.parametrize("args", [[], *([name] for name in SUBCOMMANDS)])
def test_help_works_at_every_level(tmp_path: Path, args: list[str]) -> None:
    result = run_admin(*args, "--help", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("usage: tradestream-admin")


def test_the_console_script_exits_0_on_help_and_2_on_a_bad_flag(tmp_path: Path) -> None:
    """The installed command's exit codes are main's, argparse's SystemExit included (the cases above run main)."""
    helped = run_script("create-user", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: tradestream-admin create-user")
    refused = run_script("create-user", "bob", "--pasword", "x", cwd=tmp_path)
    assert refused.returncode == 2
    assert "error:" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "var").exists()


def test_database_url_comes_from_the_environment_and_a_flag_wins(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    env, run = {"TRADESTREAM_DATABASE_URL": database_url}, script_or_main(database_url)
    from_env = run("create-user", "from-env", "--password", "pw", cwd=tmp_path, env=env)
    assert from_env.returncode == 0, from_env.stderr
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    args = ("--database-url", elsewhere, "create-user", "from-flag", "--password", "pw")
    flagged = run(*args, cwd=tmp_path, env=env)
    assert flagged.returncode == 0, flagged.stderr
    with Session(engine) as session:
        assert session.scalars(select(User.username)).all() == ["from-env"]
    other = make_engine(elsewhere)
    try:
        with Session(other) as session:
            assert session.scalars(select(User.username)).all() == ["from-flag"]
    finally:
        other.dispose()


def test_default_database_is_var_tradestream_db_in_the_working_directory(
    tmp_path: Path,
) -> None:
    assert run_script("init-db", cwd=tmp_path).returncode == 0
    assert (tmp_path / "var" / "tradestream.db").is_file()


def test_a_down_broker_does_not_stop_the_command(database_url: str, tmp_path: Path) -> None:
    env, run = {"TRADESTREAM_DATABASE_URL": database_url}, script_or_main(database_url)
    strategy = ok_json(run("demo", "--json", cwd=tmp_path, env=env))["strategies"][0]
    ingress = f"tcp://127.0.0.1:{refused_port()}"
    args = ("--ingress", ingress, "deactivate", "--strategy", str(strategy["id"]), "--json")
    result = run(*args, cwd=tmp_path, env=env)
    assert ok_json(result)["is_active"] is False
