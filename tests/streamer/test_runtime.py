"""Start-up tuning: the event loop runs the app's coroutine; gc.freeze() leaves start-up's objects out of the GC."""

from __future__ import annotations

import asyncio
import gc

from streamer.runtime import run, tune_gc


def test_run_returns_the_coroutines_value_on_asyncios_loop() -> None:
    async def main() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run(main(), "asyncio").startswith("asyncio")


def test_tune_gc_sets_the_threshold_and_freezes_what_is_alive() -> None:
    before = gc.get_threshold()
    try:
        tune_gc(5000, freeze=True)
        assert gc.get_threshold()[0] == 5000
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
