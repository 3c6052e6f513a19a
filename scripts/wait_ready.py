"""`make run`'s start-up wait: the banner only once the whole stack is up, or a clear failure naming who is not.

    .venv/bin/python scripts/wait_ready.py CONFIG SUPERVISORD_PID TIMEOUT_S --health URL... [--since LOG=BYTES...]

Ready is: every program supervisord runs is RUNNING and has logged its ` listening ` line since this
start (each logs it once its signal handlers are set: RUNNING alone only means alive for `startsecs`,
and a Ctrl-C before that line kills a program uncleanly), and every `--health` URL answers 200 (the
streamer's /healthz: broker and database up; the webhook's: database up). `--since` gives each log's
size before supervisord started, so a previous run's lines do not count.

A program supervisord gave up on (FATAL), or one that stopped, fails the wait at once; one that exits
while starting is said once (supervisord retries it: a transient cause heals) and fails it only at the
deadline. Either way the answer names the program and its log under var/log/ and quotes the log's end.
Exit 0 ready, 1 failed or not ready in time, 130 on Ctrl-C (run.sh's trap stops the stack).

The decision (`verdict`) is pure, table-tested in tests/deploy/test_wait_ready.py; the rest is polling.
"""

from __future__ import annotations

import argparse
import configparser
import http.client
import os
import sys
import time
import urllib.request
import xmlrpc.client
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

POLL_S = 0.2  # the polling pace, not a guess at readiness
LOG_LINES = 5  # of a failed program's log, quoted
GAVE_UP = frozenset({"FATAL", "STOPPED", "UNKNOWN"})  # supervisord will not start these again by itself


@dataclass(frozen=True)
class Program:
    """One program as supervisord reports it, and whether its log says it listens since this start."""

    name: str  # supervisorctl's name: "broker", "streamer:streamer-0"
    state: str  # supervisord's statename
    detail: str  # supervisord's description or spawn error ("Exited too quickly ...")
    log: str  # its log file, as a person would open it (var/log/webhook.log)
    listening: bool = False
    pid: int = 0  # 0 while it has none (BACKOFF, EXITED, FATAL)


@dataclass(frozen=True)
class Verdict:
    """`ready`, or `failed` with a message; neither: still starting, `waiting` says on what."""

    ready: bool = False
    failed: str = ""
    waiting: str = ""


def verdict(programs: Sequence[Program], unhealthy: Sequence[str], *, out_of_time: bool = False) -> Verdict:
    """Whether the stack is up, given supervisord's programs and the health URLs that did not answer 200."""
    if not programs:
        return Verdict(failed="supervisord answered no programs" if out_of_time else "",
                       waiting="supervisord to answer")
    gave_up = [p for p in programs if p.state in GAVE_UP]
    if gave_up:
        return Verdict(failed="; ".join(f"{p.name} could not start ({p.state}: {p.detail}), see {p.log}" for p in gave_up))
    pending = [f"{p.name} {p.state}" + (f" ({p.detail})" if p.state != "RUNNING" and p.detail else "")
               for p in programs if p.state != "RUNNING"]
    pending += [f"{p.name} not listening yet" for p in programs if p.state == "RUNNING" and not p.listening]
    pending += [f"{url} not answering 200" for url in unhealthy]
    if not pending:
        return Verdict(ready=True)
    if not out_of_time:
        return Verdict(waiting=", ".join(pending))
    logs = ", ".join(p.log for p in programs if p.state != "RUNNING" or not p.listening) or "var/log/"
    return Verdict(failed=f"not up in time: {', '.join(pending)}; see {logs}")


def retrying(programs: Sequence[Program], first_pids: Mapping[str, int]) -> list[Program]:
    """Programs that exited while starting and that supervisord is about to start again.

    BACKOFF is one that exited within `startsecs`; one that took longer to fail (a loaded machine: imports, the
    schema check, then the bind that fails) was RUNNING and is EXITED for a moment, then runs under another pid
    than the one first seen (`first_pids`), without ever having said it listens.
    """
    return [p for p in programs if p.state in ("BACKOFF", "EXITED")
            or (not p.listening and p.pid and first_pids.get(p.name, p.pid) != p.pid)]


# ---- polling: supervisord over XML-RPC, the logs, the health URLs ----


class Supervisor:
    """supervisord's XML-RPC socket, as supervisorctl reaches it (the config's [supervisorctl] section)."""

    def __init__(self, config: Path) -> None:
        parser = configparser.RawConfigParser()
        parser.read(config)
        section = dict(parser["supervisorctl"])
        self.url = section["serverurl"].replace("%(here)s", str(config.resolve().parent))
        self.username, self.password = section.get("username", ""), section.get("password", "")

    def processes(self) -> list[dict[str, object]]:
        """getAllProcessInfo, or [] while supervisord is not answering yet."""
        from supervisor.xmlrpc import SupervisorTransport  # type: ignore[import-untyped]  # untyped

        transport = SupervisorTransport(self.username, self.password, self.url)
        try:
            infos = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor.getAllProcessInfo()
        except (OSError, xmlrpc.client.Fault, xmlrpc.client.ProtocolError, http.client.HTTPException):
            return []
        finally:
            transport.close()
        return list(infos) if isinstance(infos, list) else []


def log_since(path: str, since: Mapping[str, int]) -> str:
    """What `path` logged after the size it had before this start (all of it if it rotated since)."""
    try:
        text = Path(path).read_bytes()
    except OSError:
        return ""
    offset = since.get(os.path.realpath(path), 0)
    return text[offset if offset <= len(text) else 0:].decode(errors="replace")


def program_of(info: Mapping[str, object], since: Mapping[str, int]) -> Program:
    """A Program from one getAllProcessInfo entry."""
    name, group, log = str(info["name"]), str(info["group"]), str(info["stdout_logfile"])
    state = str(info["statename"])
    return Program(
        name=name if name == group else f"{group}:{name}", state=state,
        detail=str(info.get("spawnerr") or info.get("description") or ""), log=os.path.relpath(log),
        listening=state == "RUNNING" and " listening " in log_since(log, since), pid=int(str(info.get("pid") or 0)),
    )


def answers_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False  # refused, 503 (HTTPError), or not HTTP yet


def log_tail(program: Program, since: Mapping[str, int]) -> str:
    lines = log_since(program.log, since).splitlines()[-LOG_LINES:]
    return "".join(f"    {line}\n" for line in lines) or "    (nothing logged)\n"


def wait(config: Path, supervisord_pid: int, timeout: float, health: Sequence[str], since: Mapping[str, int]) -> int:
    supervisor = Supervisor(config)
    deadline = time.monotonic() + timeout
    said: set[str] = set()
    first_pids: dict[str, int] = {}
    while True:
        out_of_time = time.monotonic() >= deadline
        try:
            os.kill(supervisord_pid, 0)
        except ProcessLookupError:
            print("supervisord exited; see var/log/supervisord.log", file=sys.stderr)
            return 1
        programs = [program_of(info, since) for info in supervisor.processes()]
        for program in retrying(programs, first_pids):
            if program.name not in said:
                said.add(program.name)
                print(f"{program.name} exited while starting; supervisord tries again (see {program.log})", file=sys.stderr)
        first_pids.update((p.name, p.pid) for p in programs if p.pid and p.name not in first_pids)
        unhealthy = [url for url in health if not answers_200(url)]
        result = verdict(programs, unhealthy, out_of_time=out_of_time)
        if result.ready:
            return 0
        if result.failed:
            print(f"tradestream did not start: {result.failed}", file=sys.stderr)
            for program in programs:
                if program.state != "RUNNING" or not program.listening:
                    print(f"  {program.log} ends:\n{log_tail(program, since)}", end="", file=sys.stderr)
            return 1
        time.sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wait_ready.py", description=__doc__.split("\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("supervisord_pid", type=int)
    parser.add_argument("timeout", type=float)
    parser.add_argument("--health", nargs="*", default=[], help="URLs that must answer 200")
    parser.add_argument("--since", nargs="*", default=[], help="LOG=BYTES: each log's size before this start")
    args = parser.parse_args(argv)
    since = {os.path.realpath(path): int(size) for path, _, size in (item.rpartition("=") for item in args.since)}
    try:
        return wait(args.config, args.supervisord_pid, args.timeout, args.health, since)
    except KeyboardInterrupt:  # Ctrl-C while starting: run.sh's trap stops the stack
        return 130


if __name__ == "__main__":
    sys.exit(main())
