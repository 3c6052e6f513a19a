"""TtlCache: one lookup for a burst of identical questions, answers kept only when asked to."""

from __future__ import annotations

import asyncio

from streamer.cache import TtlCache


def test_concurrent_gets_share_one_lookup_and_later_gets_hit_the_cache() -> None:
    async def main() -> None:
        cache: TtlCache[str, int] = TtlCache(ttl=60)
        calls = 0
        release = asyncio.Event()

        async def lookup() -> int:
            nonlocal calls
            calls += 1
            await release.wait()
            return 42

        waiting = [asyncio.ensure_future(cache.get("k", lookup)) for _ in range(50)]
        await asyncio.sleep(0)  # let every get reach its await: a scheduling step, not a wait for a condition
        release.set()
        answers = await asyncio.gather(*waiting)
        assert calls == 1 and {value for value, _ in answers} == {42}
        assert len({looked_up_at for _, looked_up_at in answers}) == 1
        assert (await cache.get("k", lookup))[0] == 42 and calls == 1

    asyncio.run(main())


def test_answers_are_kept_only_when_keep_says_so_and_can_be_forgotten() -> None:
    async def main() -> None:
        cache: TtlCache[tuple[int, int], str | None] = TtlCache(ttl=60)
        answers = iter(["forbidden", None, "later"])
        calls = 0

        async def lookup() -> str | None:
            nonlocal calls
            calls += 1
            return next(answers)

        keep = lambda refusal: refusal is None  # noqa: E731
        assert (await cache.get((1, 2), lookup, keep))[0] == "forbidden"
        assert (await cache.get((1, 2), lookup, keep))[0] is None
        assert (await cache.get((1, 2), lookup, keep))[0] is None and calls == 2
        cache.forget_where(lambda key: key[1] == 2)
        assert (await cache.get((1, 2), lookup, keep))[0] == "later" and calls == 3

    asyncio.run(main())


def test_a_failed_lookup_reaches_every_waiter_and_is_not_kept() -> None:
    async def main() -> None:
        cache: TtlCache[str, int] = TtlCache(ttl=60)

        async def broken() -> int:
            await asyncio.sleep(0)
            raise LookupError("database down")

        results = await asyncio.gather(*(cache.get("k", broken) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, LookupError) for r in results)

        async def fine() -> int:
            return 7

        assert (await cache.get("k", fine))[0] == 7

    asyncio.run(main())


def test_expired_answers_are_looked_up_again() -> None:
    async def main() -> None:
        cache: TtlCache[str, int] = TtlCache(ttl=0)
        values = iter([1, 2])

        async def lookup() -> int:
            return next(values)

        assert (await cache.get("k", lookup))[0] == 1
        assert (await cache.get("k", lookup))[0] == 2

    asyncio.run(main())
