"""Who is asking: the signed session cookie or an `Authorization: Bearer` API token.

The cookie carries the user id, signed with the process secret (Tornado's
signed cookies: HMAC-SHA256 and a timestamp). Lookups run in the database
executor behind a small cache with a short TTL: a dashboard opening a stream,
two snapshots and a strategy list costs one query, not four, and a thousand
clients connecting with one token at once share a single lookup.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from store.auth import token_hash
from streamer import queries
from streamer.queries import Database, Viewer

SESSION_COOKIE = "tradestream_session"
SESSION_DAYS = 7
CACHE_TTL_S = 5.0
CACHE_MAX_ENTRIES = 10_000


class Authenticator:
    """Resolves cookies' user ids and API tokens to Viewers, cached for CACHE_TTL_S."""

    def __init__(self, database: Database, ttl: float = CACHE_TTL_S) -> None:
        self.database = database
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Viewer | None]] = {}
        self._inflight: dict[str, asyncio.Future[Viewer | None]] = {}

    async def by_token(self, token: str) -> Viewer | None:
        """The holder of an API token, or None."""
        if not token:
            return None
        # Keyed by the token's hash: the cache holds no usable secret.
        return await self._cached("t" + token_hash(token), lambda: self.database.run(queries.viewer_by_token, token))

    async def by_user_id(self, user_id: int) -> Viewer | None:
        """The user of a session cookie, or None when it no longer exists."""
        return await self._cached(f"u{user_id}", lambda: self.database.run(queries.viewer_by_id, user_id))

    async def login(self, username: str, password: str) -> Viewer | None:
        """Check credentials (never cached)."""
        return await self.database.run(queries.login, username, password)

    async def _cached(self, name: str, lookup: Callable[[], Awaitable[Viewer | None]]) -> Viewer | None:
        hit = self._cache.get(name)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        pending = self._inflight.get(name)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Viewer | None] = asyncio.get_running_loop().create_future()
        self._inflight[name] = future
        try:
            viewer = await lookup()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # marked retrieved: nobody else need be waiting
            raise
        finally:
            del self._inflight[name]
        future.set_result(viewer)
        if len(self._cache) >= CACHE_MAX_ENTRIES:
            self._cache.clear()
        self._cache[name] = (now + self.ttl, viewer)
        return viewer


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def cookie_user_id(value: bytes | None) -> int | None:
    """The user id a verified session cookie carries."""
    if value is None or not value.isdigit():
        return None
    user_id = int(value)
    return user_id if user_id > 0 else None
