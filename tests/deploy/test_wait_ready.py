"""scripts/wait_ready.py's decision (`make run`'s banner): what supervisord and the health URLs say → ready, waiting, failed."""

from __future__ import annotations

import pytest

from scripts.wait_ready import Program, Verdict, retrying, verdict

HEALTH = "http://127.0.0.1:8080/healthz"


def up(name: str) -> Program:
    return Program(name, "RUNNING", "pid 1, uptime 0:00:02", f"var/log/{name.split(':')[-1]}.log", listening=True)


def in_state(name: str, state: str, detail: str = "", *, listening: bool = False) -> Program:
    return Program(name, state, detail, f"var/log/{name.split(':')[-1]}.log", listening=listening)


STACK = [up("broker"), up("orders"), up("positions"), up("streamer:streamer-0"), up("streamer:streamer-1"), up("webhook")]
EXITED = "Exited too quickly (process log may have details)"


@pytest.mark.parametrize(("programs", "unhealthy", "out_of_time", "expected"), [
    pytest.param(STACK, [], False, Verdict(ready=True), id="all-running-listening-healthy"),
    pytest.param(STACK, [], True, Verdict(ready=True), id="ready-at-the-deadline-is-ready"),
    pytest.param([], [HEALTH], False, Verdict(waiting="supervisord to answer"), id="supervisord-not-answering"),
    pytest.param([], [HEALTH], True, Verdict(failed="supervisord answered no programs", waiting="supervisord to answer"),
                 id="supervisord-never-answered"),
    pytest.param(STACK, [HEALTH], False, Verdict(waiting=f"{HEALTH} not answering 200"), id="a-service-not-healthy-yet"),
    pytest.param([*STACK[:5], in_state("webhook", "STARTING")], [], False, Verdict(waiting="webhook STARTING"),
                 id="one-program-still-starting"),
    pytest.param([*STACK[:4], in_state("streamer:streamer-1", "RUNNING")], [], False,
                 Verdict(waiting="streamer:streamer-1 not listening yet"), id="running-but-not-listening-yet"),
    pytest.param([*STACK[:5], in_state("webhook", "BACKOFF", EXITED)], [], False,
                 Verdict(waiting=f"webhook BACKOFF ({EXITED})"), id="exited-while-starting-is-retried"),
    pytest.param([*STACK[:5], in_state("webhook", "BACKOFF", EXITED)], ["http://127.0.0.1:8081/healthz"], True,
                 Verdict(failed=f"not up in time: webhook BACKOFF ({EXITED}), http://127.0.0.1:8081/healthz not answering 200;"
                                " see var/log/webhook.log"), id="still-retrying-at-the-deadline"),
    pytest.param(STACK, [HEALTH], True, Verdict(failed=f"not up in time: {HEALTH} not answering 200; see var/log/"),
                 id="unhealthy-at-the-deadline"),
    pytest.param([*STACK[:5], in_state("webhook", "FATAL", EXITED)], [], False,
                 Verdict(failed=f"webhook could not start (FATAL: {EXITED}), see var/log/webhook.log"), id="fatal-fails-at-once"),
    pytest.param([in_state("broker", "FATAL", "can't find command"), *STACK[1:5], in_state("webhook", "STOPPED", "Not started")],
                 [HEALTH], False,
                 Verdict(failed="broker could not start (FATAL: can't find command), see var/log/broker.log; "
                                "webhook could not start (STOPPED: Not started), see var/log/webhook.log"),
                 id="every-given-up-program-named"),
])
def test_verdict_is_ready_only_when_every_program_runs_listens_and_every_service_is_healthy(
        programs: list[Program], unhealthy: list[str], out_of_time: bool, expected: Verdict) -> None:
    assert verdict(programs, unhealthy, out_of_time=out_of_time) == expected


def test_retrying_names_the_programs_in_backoff() -> None:
    programs = [*STACK[:5], in_state("webhook", "BACKOFF", EXITED)]
    assert [p.name for p in retrying(programs, {})] == ["webhook"]
    assert retrying(STACK, {}) == []


def running(name: str, pid: int, *, listening: bool = False) -> Program:
    return Program(name, "RUNNING", f"pid {pid}", f"var/log/{name}.log", listening=listening, pid=pid)


@pytest.mark.parametrize(("program", "first_pids", "retried"), [
    # A start that took longer than startsecs to fail: RUNNING, then EXITED for a moment, then another pid.
    (in_state("webhook", "EXITED", "Dec 07 03:00 PM"), {"webhook": 41}, True),
    (running("webhook", 57), {"webhook": 41}, True),
    # The same pid as first seen, or the first sight of it: still its first start.
    (running("webhook", 41), {"webhook": 41}, False),
    (running("webhook", 41), {}, False),
    # Another pid once it listened: it started (a later crash is not the start's business).
    (running("webhook", 57, listening=True), {"webhook": 41}, False),
], ids=["exited", "another-pid-not-listening", "same-pid", "first-sight", "another-pid-listening"])
def test_retrying_names_a_program_that_exited_after_startsecs(
        program: Program, first_pids: dict[str, int], retried: bool) -> None:
    assert (retrying([program], first_pids) == [program]) is retried
