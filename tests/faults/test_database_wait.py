"""A process started while its database server is down waits for it (store/wait.py), as after a reboot.

PostgreSQL may come up after tradestream (a reboot, an outage during a deploy);
each process exited 1 at once (`cannot open database ...: Connection refused`),
and supervisord left it FATAL after its ten retries. Here the real processes start
on a private PostgreSQL cluster that is stopped (tests/faults/pgcluster.py): each
says once that it waits and stays alive, then the cluster starts, and each comes
up by itself and the pipeline works end to end (a few webhooks placed, filled and
streamed, the fault invariants). What waiting cannot mend (no such database, no
such role, a SQLite folder that does not exist) still exits 1 at once with one
line, and a SIGTERM while waiting is a clean stop, exit 0.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.faults import pgcluster
from tests.faults.pgcluster import Cluster
from tests.faults.stack import Stack, signal_bodies
from tests.faults.test_crashes import Pipeline
from tests.ports import reserved_ports
from tests.producers.conftest import World, world_of
from tests.waiting import PROCESS_START_S, wait_until

UNAVAILABLE = pgcluster.unavailable_reason()
NEEDS_CLUSTER = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"a private PostgreSQL cluster: {UNAVAILABLE}")
pytestmark = [pytest.mark.system]
WAITERS = ("orders", "positions", "webhook", "streamer")  # the broker has no database
WAITING = "; waiting for it (trying again after"
UP = "is up, after"
SIGNALS = 6
NO_DATABASE = {"users": [], "strategies": [], "accounts": []}  # a World for a database that is never reached


def log_of(stack: Stack, name: str) -> str:
    """What `name` logged since its last start."""
    return (stack.folder / f"{name}.log").read_text()[stack.offsets[name]:]


def wait_for_line(stack: Stack, name: str, text: str) -> None:
    """Until `name`'s log has `text`; fails the test if the process exited first."""
    def logged() -> bool:
        if text in log_of(stack, name):
            return True
        assert stack.procs[name].poll() is None, f"{name} exited {stack.procs[name].returncode}:\n{log_of(stack, name)}"
        return False
    wait_until(logged, timeout=PROCESS_START_S, what=f"{name} to log {text!r}", poll=0.02)


def exited(stack: Stack, name: str) -> int:
    """`name`'s exit status, once it has exited (a bound for a hang, not a measure of how fast)."""
    wait_until(lambda: stack.procs[name].poll() is not None, timeout=PROCESS_START_S, what=f"{name} to exit", poll=0.02)
    return stack.procs[name].returncode


@NEEDS_CLUSTER
def test_processes_started_while_the_database_is_down_wait_and_come_up_when_it_starts(
    cluster: Cluster, cluster_world: tuple[World, dict[str, Any]], stack_on: Any
) -> None:
    world, demo = cluster_world
    world.engine.dispose()
    cluster.stop()  # as at a reboot where PostgreSQL comes up after tradestream
    stack: Stack = stack_on(world)
    stack.start("broker")
    for name in WAITERS:
        stack.launch(name)
    for name in WAITERS:
        wait_for_line(stack, name, WAITING)
    assert {name: stack.procs[name].poll() for name in WAITERS} == {name: None for name in WAITERS}
    cluster.start()
    for name in WAITERS:
        stack.wait_ready(name)
    pipeline = Pipeline(stack, world, demo)
    try:
        deadline = time.monotonic() + 60
        for body in signal_bodies(world, "dbwait", SIGNALS):
            pipeline.sender.deliver(body, deadline)
        received = pipeline.settle()
    finally:
        for follower in pipeline.followers.values():
            follower.close()
    assert set(pipeline.sender.answered.values()) == {200}
    assert pipeline.violations(received) == []
    assert all(seen.events for seen in received.values())
    logs = {name: log_of(stack, name) for name in WAITERS}
    # One line that it waits (the driver's reason), one that the database is up; no traceback.
    assert {name: ("Connection refused" in text, UP in text, "Traceback" in text) for name, text in logs.items()} == {
        name: (True, True, False) for name in WAITERS}


@NEEDS_CLUSTER
def test_what_waiting_cannot_mend_still_exits_1_at_once_with_one_line(cluster: Cluster, stack_on: Any,
                                                                      tmp_path: Path) -> None:
    server = f"postgresql+psycopg://{pgcluster.SERVER_USER}@127.0.0.1:{cluster.port}"
    urls = {
        "orders": f"{server}/no_such_database",
        "positions": f"postgresql+psycopg://no_such_role@127.0.0.1:{cluster.port}/postgres",
        "webhook": f"sqlite:///{tmp_path}/no-such-folder/tradestream.db",
        "streamer": f"{server}/no_such_database",
    }
    reasons = {"orders": 'database "no_such_database" does not exist', "positions": 'role "no_such_role" does not exist',
               "webhook": "does not exist", "streamer": 'database "no_such_database" does not exist'}
    stack: Stack = stack_on(world_of(cluster.url, NO_DATABASE))
    for name in WAITERS:
        args = stack.args[name]
        args[args.index("--database-url") + 1] = urls[name]
        stack.launch(name)
    assert {name: exited(stack, name) for name in WAITERS} == {name: 1 for name in WAITERS}
    lines = {name: log_of(stack, name).splitlines() for name in WAITERS}
    assert {name: (len(found), " ERROR " in found[0], reasons[name] in found[0]) for name, found in lines.items()} == {
        name: (1, True, True) for name in WAITERS}, lines


def test_a_stop_signal_while_waiting_for_the_database_is_a_clean_stop(stack_on: Any) -> None:
    with reserved_ports(1) as (nothing_there,):  # a port nothing listens on: every connect is refused
        stack: Stack = stack_on(world_of(f"postgresql+psycopg://postgres@127.0.0.1:{nothing_there}/postgres",
                                         NO_DATABASE))
        for name in WAITERS:
            stack.launch(name)
        for name in WAITERS:
            wait_for_line(stack, name, WAITING)
        for name in WAITERS:
            stack.procs[name].send_signal(signal.SIGTERM)
        assert {name: exited(stack, name) for name in WAITERS} == {name: 0 for name in WAITERS}
    logs = {name: log_of(stack, name) for name in WAITERS}
    assert {name: ("Traceback" in text, " ERROR " in text) for name, text in logs.items()} == {
        name: (False, False) for name in WAITERS}, logs
