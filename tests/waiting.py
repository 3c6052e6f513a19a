"""Waiting for a condition with a named deadline, instead of sleeping and hoping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# The deadline for a subprocess to start (import, open its database, bind): ~1 s on a quiet machine,
# over 10 s seen with the machine's two cores shared by a full suite and a benchmark.
PROCESS_START_S = 30.0


def wait_until(condition: Callable[[], T], *, timeout: float = 10.0, what: str = "condition", poll: float = 0.01) -> T:
    """Return the first truthy value of `condition()`; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)  # the pace of polling, not a stand-in for the condition


async def async_wait_until(condition: Callable[[], T], *, timeout: float = 10.0, what: str = "condition") -> T:
    """`wait_until` for coroutines: polls between event-loop turns."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)
