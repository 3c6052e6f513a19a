"""Liveness and readiness of both apps: `GET /livez` and `GET /healthz` (CONTRACT §3, §5).

    /livez    200 {"status": "ok"} while the process serves requests: restart it if this fails
    /healthz  readiness: 200 {"status": "ok", <dependency>: "up", ...} when every dependency is up,
              503 {"status": "unavailable", <dependency>: "up"|"down", ...} naming what is down

A load balancer sends traffic only where /healthz is 200; the broker's state
comes from its heartbeats (bus/subscriber.py), the database's from a Probe.

A Probe runs its check every PROBE_INTERVAL_S in a thread of its own (not the
request threads, which a slow database fills first) and also hears what real
work met: a query that found the database gone marks it down at once, one that
succeeded marks it up. A check that has not answered within PROBE_TIMEOUT_S
counts as down. Each change is one log line, never one per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

import tornado.web
from tornado.ioloop import PeriodicCallback

from web.errors import JsonErrors
from web.replies import send_json

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 2.0
PROBE_TIMEOUT_S = 5.0
UP, DOWN = "up", "down"


class Probe:
    """Whether one dependency answers: a periodic check in its own thread, and what real work found."""

    def __init__(self, name: str, check: Callable[[], None], interval: float = PROBE_INTERVAL_S, timeout: float = PROBE_TIMEOUT_S) -> None:
        self.name = name
        self.check = check
        self.interval = interval
        self.timeout = timeout
        self.up = True  # a process checks its database once before it listens (store.db.open_database)
        self.failures = 0  # checks and real work that found it down
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"{name}-probe")
        self._pending: asyncio.Future[None] | None = None
        self._pending_since = 0.0
        self._timer: PeriodicCallback | None = None

    def start(self) -> None:
        """Check now and every `interval` seconds (on the running loop)."""
        self._timer = PeriodicCallback(self._probe, self.interval * 1000)
        self._timer.start()
        self._probe()

    def stop(self) -> None:
        """Stop checking; a check still running is left to finish in its thread."""
        if self._timer is not None:
            self._timer.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def failed(self, reason: str) -> None:
        """Real work (or a check) found the dependency unusable."""
        self.failures += 1
        if self.up:
            self.up = False
            log.warning("%s down: %s", self.name, reason)

    def succeeded(self) -> None:
        """Real work (or a check) used the dependency."""
        if not self.up:
            self.up = True
            log.info("%s up again", self.name)

    def _probe(self) -> None:
        if self._pending is not None:
            if time.monotonic() - self._pending_since > self.timeout:
                self.failed(f"no answer to a check within {self.timeout:g} s")
            return
        self._pending_since = time.monotonic()
        self._pending = asyncio.get_running_loop().run_in_executor(self._executor, self.check)
        self._pending.add_done_callback(self._checked)

    def _checked(self, future: asyncio.Future[None]) -> None:
        self._pending = None
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            self.succeeded()
        else:
            lines = str(exc).strip().splitlines()
            self.failed(lines[0] if lines else type(exc).__name__)


def readiness(states: Mapping[str, bool]) -> tuple[int, dict[str, str]]:
    """The status and body of /healthz for these dependencies (name → up)."""
    ready = all(states.values())
    body = {"status": "ok" if ready else "unavailable", **{name: UP if up else DOWN for name, up in states.items()}}
    return (200 if ready else 503), body


class LivenessHandler(JsonErrors, tornado.web.RequestHandler):
    """`GET /livez` (and HEAD, as load balancers probe): the process serves requests."""

    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        send_json(self, {"status": "ok"})

    head = get  # the same status and headers; Tornado sends no body for HEAD


class ReadinessHandler(JsonErrors, tornado.web.RequestHandler):
    """`GET /healthz` (and HEAD): 200 when every dependency is up, else 503 naming what is down."""

    def initialize(self, states: Callable[[], Mapping[str, bool]]) -> None:
        self.states = states

    def get(self) -> None:
        status, body = readiness(self.states())
        self.set_header("Cache-Control", "no-store")
        send_json(self, body, status)

    head = get
