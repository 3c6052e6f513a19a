"""How the streamer process runs: its event loop and its garbage collector (start-up tuning, issue 13).

The event loop: uvloop (libuv, in C) when `--event-loop uvloop`, asyncio's own
otherwise; Tornado runs on either. The cyclic GC: `gc.freeze()` once start-up
is over, so the modules, the app and the database engine are never scanned again,
and a first-generation threshold of `--gc-threshold` (Python's default is 700); `--no-gc-freeze` leaves start-up to the GC.
The measurements that chose the defaults are in docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

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
