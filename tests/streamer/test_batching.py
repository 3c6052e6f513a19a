"""BatchLookup: keys asked while a batch runs are answered by the next one; failures reach every waiter."""

from __future__ import annotations

import asyncio

from streamer.batching import BatchLookup


def test_keys_asked_while_a_batch_runs_share_the_next_one() -> None:
    calls: list[list[int]] = []
    async def main() -> list[int]:
        gate = asyncio.Event()

        async def lookup(keys: list[int]) -> dict[int, int]:
            calls.append(keys)
            await gate.wait()
            return {key: key * 10 for key in keys}

        batches = BatchLookup(lookup)
        first = asyncio.ensure_future(batches.get(1))
        await asyncio.sleep(0)  # the first batch starts: one key
        rest = [asyncio.ensure_future(batches.get(k)) for k in (2, 3, 2, 4)]
        await asyncio.sleep(0)
        gate.set()
        return [await first, *[await r for r in rest]]

    assert asyncio.run(main()) == [10, 20, 30, 20, 40]
    assert calls == [[1], [2, 3, 4]]


def test_a_failed_batch_fails_each_of_its_waiters_and_the_next_batch_runs() -> None:
    async def main() -> tuple[list[BaseException | int], int]:
        attempts = 0

        async def lookup(keys: list[int]) -> dict[int, int]:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                raise RuntimeError("database down")
            return {key: key for key in keys if key != 9}

        batches = BatchLookup(lookup)
        failed = await asyncio.gather(batches.get(1), batches.get(2), return_exceptions=True)
        later = await asyncio.gather(batches.get(3), batches.get(9), return_exceptions=True)
        return [*failed, *later], batches.batches

    results, batches = asyncio.run(main())
    assert [type(r).__name__ if isinstance(r, BaseException) else r for r in results] == ["RuntimeError", "RuntimeError", 3, "KeyError"]
    assert batches == 2


def test_batches_are_bounded() -> None:
    sizes: list[int] = []

    async def main() -> None:
        async def lookup(keys: list[int]) -> dict[int, int]:
            sizes.append(len(keys))
            return {key: 0 for key in keys}

        batches = BatchLookup(lookup, max_batch=3)
        await asyncio.gather(*(batches.get(k) for k in range(8)))

    asyncio.run(main())
    assert sizes == [3, 3, 2]
