"""The PostgreSQL server SIGKILLed during a burst, then restarted: nothing accepted is lost, nothing restarted by hand.

The whole pipeline runs as real processes (tests/faults/stack.py) on a private
PostgreSQL cluster (tests/faults/pgcluster.py: its own folder and port, never the
machine's shared server). Once a third of a burst of webhooks is answered, the
postmaster is SIGKILLed (its backends exit with it: a crash, recovered from the
WAL at the next start). While it is down the webhook answers 503
`store_unavailable`, which the sender retries with the same `id`, `/healthz` of
the webhook and the streamer say the database is down (`/livez` stays 200), and
`/api/orders` answers 503 `database_unavailable`; then the cluster starts again on the same folder and
port. Every process must carry on by itself (none exits, none is restarted by the
test), the invariants of tests/faults/invariants.py must hold, and the outage
must be a few lines in each log: no traceback (the order and position handlers
logged one per 30 s, 70 lines each), no line per request or per retry.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.faults import pgcluster
from tests.faults.pgcluster import Cluster
from tests.faults.stack import ORDER, Sender, Stack, signal_bodies
from tests.faults.test_crashes import BURST, KILL_AFTER, Pipeline
from tests.producers.conftest import World
from tests.waiting import wait_until

UNAVAILABLE = pgcluster.unavailable_reason()
pytestmark = [pytest.mark.system, pytest.mark.skipif(UNAVAILABLE is not None, reason=f"a private PostgreSQL cluster: {UNAVAILABLE}")]
LOG_LINES = 20  # in each process's log over the whole test: what it says at start and of the outage
DOWN_S = 15.0  # how long the processes may take to see the database gone (the probes run every 2 s)


@pytest.fixture
def crash_stack(cluster_world: tuple[World, dict[str, Any]], stack_on: Callable[..., Stack], cluster: Cluster) -> Stack:
    """Every process started on the private cluster; on failure the cluster's log follows the processes' logs."""
    stack = stack_on(cluster_world[0], also=lambda: "--- postgresql\n" + cluster.server_log()[-3000:])
    stack.start()
    return stack


def get(port: int, path: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def test_the_database_server_killed_during_a_burst_and_restarted_loses_nothing_accepted(
    crash_stack: Stack, cluster_world: tuple[World, dict[str, Any]], cluster: Cluster
) -> None:
    world, demo = cluster_world
    stack = crash_stack
    pipeline = Pipeline(stack, world, demo)
    pipeline.sender = Sender(stack.webhook_port, retry=frozenset({503}))
    alice = {u["username"]: u["api_token"] for u in demo["users"]}["alice"]
    strategy = world.strategy_ids["btc-trend"]
    pids = {name: stack.procs[name].pid for name in ORDER}
    seen_down: dict[str, Any] = {}

    def crash_and_restart() -> None:
        world.engine.dispose()
        cluster.crash()
        seen_down["webhook"] = wait_until(lambda: (r := get(stack.webhook_port, "/healthz"))[0] == 503 and r,
                                          timeout=DOWN_S, what="the webhook's readiness to say the database is down")
        seen_down["streamer"] = wait_until(lambda: (r := get(stack.http_port, "/healthz"))[0] == 503 and r,
                                           timeout=DOWN_S, what="the streamer's readiness to say the database is down")
        seen_down["orders"] = get(stack.http_port, f"/api/orders?strategy_id={strategy}", alice)
        seen_down["livez"] = [get(port, "/livez")[0] for port in (stack.webhook_port, stack.http_port)]
        wait_until(lambda: pipeline.sender.retried[503] > 0, timeout=DOWN_S, what="a webhook answered 503 while down")
        cluster.start()

    pipeline.sender.burst(signal_bodies(world, "dbcrash", BURST), during=crash_and_restart, after=KILL_AFTER)
    received = pipeline.settle()
    assert pipeline.violations(received) == []
    assert len(pipeline.sender.answered) == BURST
    assert all(seen.events for seen in received.values())
    assert seen_down["webhook"] == (503, {"status": "unavailable", "database": "down"})
    assert seen_down["streamer"][1]["database"] == "down"
    assert seen_down["orders"][0] == 503 and seen_down["orders"][1]["error"] == "database_unavailable"
    assert seen_down["livez"] == [200, 200]  # alive: nothing to restart
    assert {name: (stack.procs[name].pid, stack.procs[name].poll()) for name in ORDER} == {
        name: (pid, None) for name, pid in pids.items()}
    assert "automatic recovery in progress" in cluster.server_log()
    logs = {name: (stack.folder / f"{name}.log").read_text() for name in ORDER}
    # An outage is a few lines per process (it went, it came back), never a traceback or a line per request.
    assert {name: "Traceback" in text or len(text.splitlines()) > LOG_LINES for name, text in logs.items()} == {
        name: False for name in ORDER}
