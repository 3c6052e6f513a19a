"""Readiness from dependency states (a table), and a Probe's checks in a real thread on a real loop."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from tests.waiting import async_wait_until
from web.health import Probe, readiness

READINESS = [
    ({}, 200, {"status": "ok"}),
    ({"database": True}, 200, {"status": "ok", "database": "up"}),
    ({"database": False}, 503, {"status": "unavailable", "database": "down"}),
    ({"broker": True, "database": True}, 200, {"status": "ok", "broker": "up", "database": "up"}),
    ({"broker": False, "database": True}, 503, {"status": "unavailable", "broker": "down", "database": "up"}),
    ({"broker": False, "database": False}, 503, {"status": "unavailable", "broker": "down", "database": "down"}),
]


@pytest.mark.parametrize(("states", "status", "body"), READINESS)
def test_readiness_is_200_only_when_every_dependency_is_up_and_names_each(states: dict[str, bool], status: int, body: dict[str, str]) -> None:
    assert readiness(states) == (status, body)


@pytest.mark.expect_log("database down: refused")
def test_a_probe_follows_its_checks_and_logs_each_change_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "web.health")
    answers = iter([OSError("refused")] * 3 + [None] * 1000)

    def check() -> None:
        answer = next(answers)
        if answer is not None:
            raise answer

    async def scenario() -> None:
        probe = Probe("database", check, interval=0.01)
        probe.start()
        await async_wait_until(lambda: not probe.up, what="the failed check")
        await async_wait_until(lambda: probe.up, what="a check that succeeds")
        probe.stop()
        assert probe.failures == 3

    asyncio.run(scenario())
    assert [r.getMessage() for r in caplog.records if r.name == "web.health"] == ["database down: refused", "database up again"]


@pytest.mark.expect_log("no answer to a check within", "a query met a closed connection")
def test_a_check_that_hangs_counts_as_down_and_real_work_is_heard_at_once() -> None:
    release = threading.Event()

    async def scenario() -> None:
        probe = Probe("database", lambda: release.wait(10) and None, interval=0.01, timeout=0.05)
        probe.start()
        await async_wait_until(lambda: not probe.up, what="the hung check to count as down")
        release.set()
        await async_wait_until(lambda: probe.up, what="the check to come back")
        probe.failed("a query met a closed connection")
        assert not probe.up
        probe.succeeded()
        assert probe.up
        probe.stop()

    asyncio.run(scenario())
