"""How the streamer process runs: its event loop and its garbage collector (start-up tuning, issue 13).

The event loop: uvloop (libuv, in C) when `--event-loop uvloop`, asyncio's own
otherwise; Tornado runs on either. The cyclic GC: `gc.freeze()` once start-up
is over, so the modules, the app and the database engine are never scanned again,
and a first-generation threshold of `--gc-threshold` (Python's default is 700); `--no-gc-freeze` leaves start-up to the GC.
Later, `Refreezer` freezes again what the streams opened since (when
streamer/gcpolicy.py says so): their objects are not scanned by every full
collection either. The measurements that chose the defaults are in docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from tornado.ioloop import PeriodicCallback

from streamer.gcpolicy import TICK_S, Action, FreezePolicy

log = logging.getLogger(__name__)

T = TypeVar("T")
LOOPS = ("uvloop", "asyncio")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The constructor of the named event loop (uvloop falls back to asyncio's, logged, if missing)."""
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:  # an optional speed-up: the default loop serves the same
            log.warning("uvloop is not installed: running on asyncio's own event loop")
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return factory
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], loop_name: str) -> T:
    """`asyncio.run(main)` on the named event loop."""
    with asyncio.Runner(loop_factory=loop_factory(loop_name)) as runner:
        return runner.run(main)


def tune_gc(threshold: int, freeze: bool) -> None:
    """After start-up: the first generation's threshold, and everything alive now moved out of the GC's sight."""
    _, second, third = gc.get_threshold()
    gc.set_threshold(threshold, second, third)
    if freeze:
        gc.collect()  # what start-up left as garbage goes first: frozen objects are never collected
        gc.freeze()
    log.info("gc threshold %d, %d objects frozen", threshold, gc.get_freeze_count())


def apply_gc(action: Action) -> None:
    """Do what the freeze policy decided: freeze the heap again, or collect all of it once and freeze it."""
    if action is Action.FREEZE:
        gc.collect(1)  # the young generations' garbage first: what is frozen is never collected
        gc.freeze()
    elif action is Action.FULL:
        gc.unfreeze()
        gc.collect()
        gc.freeze()


class Refreezer:
    """Samples the streams opened and closed every TICK_S and applies the freeze policy's answer."""

    def __init__(self, counts: Callable[[], tuple[int, int, int]], policy: FreezePolicy | None = None) -> None:
        self.counts = counts  # (opened so far, closed so far, open now)
        self.policy = policy or FreezePolicy()
        self._timer = PeriodicCallback(self._on_timer, TICK_S * 1000)

    def start(self) -> None:
        """Start ticking (on the running loop); start-up's own freeze counts as the last one."""
        self.policy.started = time.monotonic()
        self._timer.start()

    def stop(self) -> None:
        """Stop ticking."""
        self._timer.stop()

    def _on_timer(self) -> None:
        self.tick()

    def tick(self) -> Action:
        """One sample: freeze, collect fully, or nothing."""
        action = self.policy.tick(time.monotonic(), *self.counts())
        if action is Action.NOTHING:
            return action
        started = time.perf_counter()
        apply_gc(action)
        if action is Action.FULL:  # rare, and a long pause already: the frozen count (a walk of them all) adds little
            log.info("gc full collection in %.1f ms: %d objects frozen", (time.perf_counter() - started) * 1000,
                     gc.get_freeze_count())
        else:
            log.debug("gc freeze in %.1f ms", (time.perf_counter() - started) * 1000)
        return action
