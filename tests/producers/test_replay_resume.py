"""tradestream-replay killed, stopped or failed mid-run, then run again: each line of the log in the inbox once, in order.

Real subprocesses of the console script on a real database (SQLite, and PostgreSQL
when configured) for every run that is killed, stopped by Ctrl-C or fed a pipe; the runs
to their end call `producers.replay.main` in this process (`replay`, tests/in_process.py),
since a process's start is ~1 s of CPU and the resume is what they test (the real script
also runs to its end after each Ctrl-C and on the redirected pipe). The kills are tests/faults/crashpoint.py's SIGKILLs at one exact
point: right before or after the N-th batch's commit (`InboxSink.store`,
producers/replay_sinks.py; after it also as the wake-up that follows,
`Publisher.send`), inside a batch's open
transaction (after the N-th `inbox.put`), and before any batch (after
`replay_runs.begin`). The log has more lines than two batches (INBOX_BATCH
each at --speed 0) and lines that are not inbox records (a comment, a blank line,
events of the other mode), so line numbers and record counts differ.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

import producers.replay
from producers import replay_runs
from producers.commands import SignalCommand, TickCommand, encode_body
from producers.errors import ReplayConflict
from producers.replay_progress import Start
from producers.replay_sinks import INBOX_BATCH
from producers.tradelog import LogRecord, read_jsonl
from store.db import make_engine, make_session_factory, open_database
from store.handoff import InboxCommand, ReplayRun
from tests.faults.crashpoint import ENV, LAUNCHER, CrashPoint
from tests.in_process import run_main
from tests.ports import refused_port
from tests.waiting import PROCESS_START_S, wait_until

BIN = Path(sys.executable).parent
RECORDS = 2 * INBOX_BATCH + 250  # three batches: 500, 500, 250
RUN_TIMEOUT_S = 120.0
EVENT = {
    "kind": "order_update", "event_type": "order_cancelled", "order_id": "logged-1", "symbol": "ETH/USDT",
    "strategy_id": 1, "user_id": 1, "side": "SELL", "quantity": "2", "price": "3100", "status": "CANCELLED",
    "timestamp": "2025-01-06T09:30:00.000000Z", "order_type": "LIMIT", "stop_price": None,
    "account": {"account_id": 1, "name": "alice paper", "exchange": "paper"}, "suppress_toast": False,
    "filled_quantity": "0", "average_price": None, "fill_quantity": None, "fill_price": None,
}


def write_log(path: Path, records: int = RECORDS, *, price: int = 90_000, ts: float = 0.0, gap: float = 0.0) -> None:
    """Ticks at rising prices, a signal every 100th record, and lines that are not inbox records."""
    lines = ["# a sample session\n", ""]
    for n in range(records):
        if n % 100 == 50:
            lines.append(json.dumps({"ts": ts + n * gap, "type": "signal", "group_name": "btc-trend", "symbol": "BTC/USDT",
                                     "side": "buy", "order_type": "MARKET", "qty_per": 1}))
        else:
            lines.append(json.dumps({"ts": ts + n * gap, "type": "tick", "symbol": "BTC/USDT", "price": price + n}))
        if n == 700:
            lines.append(json.dumps({"ts": ts + n * gap, "type": "event", "event": EVENT}))  # --raw's: passed over
    path.write_text("\n".join(lines) + "\n")


def inbox_records(path: Path) -> list[LogRecord]:
    """The records of the log that become inbox rows, in order."""
    with path.open(encoding="utf-8") as stream:
        return [r for r in read_jsonl(stream)
                if isinstance(r, LogRecord) and isinstance(r.item, (SignalCommand, TickCommand))]


def bodies(records: list[LogRecord]) -> list[str]:
    return [encode_body(r.item) for r in records]  # type: ignore[arg-type]  # inbox_records keeps only commands


def stored(url: str) -> list[str]:
    """The inbox rows' bodies, in arrival order."""
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return list(session.scalars(select(InboxCommand.body).order_by(InboxCommand.id)))
    finally:
        engine.dispose()


def command(url: str, log: Path, *args: str) -> list[str]:
    orders = f"tcp://127.0.0.1:{refused_port()}"  # nobody listens: the wake-up is best effort
    return [str(log), "--speed", "0", "--database-url", url, "--orders", orders, *args]


def environment(crash: CrashPoint | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESTREAM_")}
    return env if crash is None else {**env, ENV: crash.spec}


def replay(url: str, log: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A run to its end, of the console script's main in this process (no TRADESTREAM_* variables)."""
    return run_main(producers.replay.main, command(url, log, *args), cwd=log.parent)


def replay_killed_at(url: str, log: Path, crash: CrashPoint, *args: str) -> None:
    """A run that SIGKILLs itself at `crash`; fails unless it died there."""
    result = subprocess.run([sys.executable, str(LAUNCHER), "tradestream-replay", *command(url, log, *args)],
                            env=environment(crash), capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert result.returncode == -signal.SIGKILL and crash.line in result.stderr, result.stderr[-3000:]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


def crash(when: str, target: str, nth: int) -> CrashPoint:
    return CrashPoint("replay", when, target, nth)


# (where it dies, how many records were committed by then)
KILLS = [
    pytest.param(crash("after", "producers.replay_runs:begin", 1), 0, id="before-any-batch"),
    pytest.param(crash("before", "producers.replay_sinks:InboxSink.store", 2), INBOX_BATCH, id="right-before-batch-2"),
    pytest.param(crash("after", "producers.inbox:put", INBOX_BATCH + 250), INBOX_BATCH, id="inside-batch-2"),
    pytest.param(crash("after", "producers.replay_sinks:InboxSink.store", 2), 2 * INBOX_BATCH, id="right-after-batch-2"),
    pytest.param(crash("before", "bus.publisher:Publisher.send", 2), 2 * INBOX_BATCH, id="before-batch-2s-wake-up"),
    pytest.param(crash("before", "producers.replay_sinks:InboxSink.store", 3), 2 * INBOX_BATCH, id="right-before-the-last"),
]


@pytest.mark.parametrize(("kill", "committed"), KILLS)
def test_a_replay_killed_mid_run_then_run_again_stores_every_line_once_in_order(
    kill: CrashPoint, committed: int, database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "session.jsonl"
    write_log(log)
    records = inbox_records(log)
    replay_killed_at(database_url, log, kill)
    assert stored(database_url) == bodies(records[:committed])

    output = ok(replay(database_url, log))
    assert stored(database_url) == bodies(records)
    resumed_after = records[committed - 1].line if committed else 0
    assert f"resuming {log} after line {resumed_after} of a run started at " in output
    assert f"{RECORDS - committed} records sent to the order inbox" in output


def test_a_finished_log_run_again_is_replayed_anew_as_make_run_does(database_url: str, tmp_path: Path) -> None:
    log = tmp_path / "sample.jsonl"
    write_log(log, 30)
    assert "replaying" in ok(replay(database_url, log))
    again = ok(replay(database_url, log))
    assert f"replaying {log} anew from the first line (it was replayed in full at " in again
    assert stored(database_url) == bodies(inbox_records(log)) * 2


def test_restart_replays_from_the_first_line_although_a_run_did_not_finish(database_url: str, tmp_path: Path) -> None:
    log = tmp_path / "session.jsonl"
    write_log(log)
    records = inbox_records(log)
    replay_killed_at(database_url, log, crash("after", "producers.replay_sinks:InboxSink.store", 1))
    output = ok(replay(database_url, log, "--restart"))
    assert f"--restart: replaying {log} from the first line; the unfinished run started at " in output
    assert f"had stored up to line {records[INBOX_BATCH - 1].line}, which are stored again" in output
    assert stored(database_url) == bodies(records[:INBOX_BATCH] + records)
    assert "anew" in ok(replay(database_url, log))  # the restarted run finished


def test_a_changed_file_is_another_log_and_the_old_content_still_resumes(database_url: str, tmp_path: Path) -> None:
    log, keep = tmp_path / "session.jsonl", tmp_path / "first.jsonl"
    write_log(keep)
    first = inbox_records(keep)
    log.write_bytes(keep.read_bytes())
    replay_killed_at(database_url, log, crash("after", "producers.replay_sinks:InboxSink.store", 1))

    write_log(log, price=50_000)  # another log at the same path: its own run, from its first line
    output = ok(replay(database_url, log))
    assert f"{log} is not the log whose replay from this path stopped after line {first[INBOX_BATCH - 1].line}" in output
    assert f"replaying {log} from the first line" in output
    changed = inbox_records(log)
    assert stored(database_url) == bodies(first[:INBOX_BATCH] + changed)

    log.write_bytes(keep.read_bytes())  # the first content again: its unfinished run goes on
    assert f"resuming {log} after line {first[INBOX_BATCH - 1].line}" in ok(replay(database_url, log))
    assert stored(database_url) == bodies(first[:INBOX_BATCH] + changed + first[INBOX_BATCH:])


@pytest.mark.parametrize("restart", [False, True], ids=["resumes", "restart-starts-over"])
def test_ctrl_c_says_what_running_it_again_does_and_it_does_that(database_url: str, tmp_path: Path, restart: bool) -> None:
    log = tmp_path / "paced.jsonl"
    head, tail = tmp_path / "head.jsonl", tmp_path / "tail.jsonl"
    write_log(head, 10)  # ts 0: due at once, stored in one batch
    write_log(tail, 40, price=95_000, ts=3600.0)  # an hour later, all at once
    log.write_text(head.read_text() + tail.read_text())
    records = inbox_records(log)
    open_database(database_url).dispose()  # the schema there before it is polled
    args = command(database_url, log) + (["--restart"] if restart else [])
    args[args.index("--speed") + 1] = "1"
    proc = subprocess.Popen([str(BIN / "tradestream-replay"), *args], env=environment(),
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(stored(database_url)) == 10, timeout=PROCESS_START_S, what="the first batch")
        proc.send_signal(signal.SIGINT)  # it waits for the hour-later lines: stopped there
        _, output = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, output
    through = records[9].line
    if restart:  # under make run (--restart) "run it again to resume" would be false
        assert (f"(stopped early after line {through}; the same command without --restart resumes after it,"
                " with --restart (as this run and make run's demo) it starts from the first line again)") in output, output
        args.remove("--restart")  # the way the message names to resume (--restart starting over: test_restart_replays_from_the_first_line_although_a_run_did_not_finish)
    else:
        assert f"(stopped early after line {through}; the same command again resumes after it)" in output, output

    # At --speed 1 the hour's gap would keep it waiting (and time out) if its pace began at the log's first line.
    again = subprocess.run([str(BIN / "tradestream-replay"), *args], env=environment(),
                           capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert f"resuming {log} after line {through}" in ok(again)
    assert stored(database_url) == bodies(records)


def test_a_bad_line_stops_every_run_at_it_until_skipped_and_nothing_is_stored_twice(database_url: str, tmp_path: Path) -> None:
    log = tmp_path / "bad.jsonl"
    write_log(log)
    lines = log.read_text().splitlines(keepends=True)
    lines.insert(702, "{not json\n")  # line 703, in the second batch
    log.write_text("".join(lines))
    records = inbox_records(log)
    before = [r for r in records if r.line < 703]

    for _ in range(2):
        result = replay(database_url, log)
        assert result.returncode == 1 and f"{log}:703: not valid JSON" in result.stderr, result.stderr
        assert stored(database_url) == bodies(before)
    assert f"resuming {log} after line {before[-1].line}" in result.stderr
    assert "1 bad lines skipped" in ok(replay(database_url, log, "--on-error", "skip"))
    assert stored(database_url) == bodies(records)


def test_two_runs_of_one_log_cannot_both_store_a_batch(database_url: str) -> None:
    engine = open_database(database_url)
    sessions = make_session_factory(engine)
    identity = replay_runs.LogIdentity("ab" * 32, 123)
    try:
        plan, first = replay_runs.begin(sessions, identity, "/logs/a.jsonl", restart=False)
        assert (plan.start, first.runs, first.last_line) == (Start.NEW, 1, 0)
        resumed_plan, resumed = replay_runs.begin(sessions, identity, "/logs/a.jsonl", restart=False)
        assert (resumed_plan.start, resumed) == (Start.RESUME, first)
        with sessions() as session:  # the resumed one stores first
            replay_runs.advance(session, resumed, 500)
            session.commit()
        with sessions() as session, pytest.raises(ReplayConflict):  # the first one's batch would repeat it
            replay_runs.advance(session, first, 500)
        restarted_plan, restarted = replay_runs.begin(sessions, identity, "/logs/a.jsonl", restart=True)
        assert (restarted_plan.start, restarted.runs) == (Start.RESTART, 2)
        with sessions() as session, pytest.raises(ReplayConflict):  # a run superseded by --restart stops
            replay_runs.advance(session, resumed.at(500), 1000)
        with sessions() as session:
            replay_runs.advance(session, restarted, 20, finished=True)
            session.commit()
            row = session.scalars(select(ReplayRun)).one()
            assert (row.runs, row.last_line, row.finished_at is not None) == (2, 20, True)
    finally:
        engine.dispose()


def test_a_log_on_a_pipe_is_refused_in_one_line_not_replayed_as_empty(database_url: str, tmp_path: Path) -> None:
    # `tradestream-replay <(grep ...)` or `cat log | tradestream-replay /dev/stdin`: a pipe is read once, by the scan
    # that knows the log, and the replay then found no line and exited 0 having sent nothing.
    log = tmp_path / "sample.jsonl"
    write_log(log, 30)
    piped = subprocess.run([str(BIN / "tradestream-replay"), *command(database_url, Path("/dev/stdin"))], env=environment(),
                           input=log.read_text(), capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert piped.returncode == 1 and "cannot replay /dev/stdin: not a regular file" in piped.stderr, piped.stderr
    assert "Traceback" not in piped.stderr  # refused before the database is opened: the run below stores the log once
    with log.open() as stdin:  # the same log redirected from its file is a regular file: replayed
        redirected = subprocess.run([str(BIN / "tradestream-replay"), *command(database_url, Path("/dev/stdin"))],
                                    env=environment(), stdin=stdin, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    ok(redirected)
    assert stored(database_url) == bodies(inbox_records(log))
