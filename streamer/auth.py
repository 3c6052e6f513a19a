"""Who is asking: the signed session cookie or an `Authorization: Bearer` API token.

The cookie carries the user id, signed with the process secret (Tornado's
signed cookies: HMAC-SHA256 and a timestamp). Lookups run in the database
executor behind a small cache with a short TTL: a dashboard opening a stream,
two snapshots and a strategy list costs one query, not four, and a thousand
clients connecting with one token at once share a single lookup.
"""

from __future__ import annotations

from store.auth import token_hash
from streamer import queries
from streamer.cache import TtlCache
from streamer.queries import Database, Viewer

SESSION_COOKIE = "tradestream_session"
SESSION_DAYS = 7
CACHE_TTL_S = 5.0


class Authenticator:
    """Resolves cookies' user ids and API tokens to Viewers, cached for CACHE_TTL_S."""

    def __init__(self, database: Database, ttl: float = CACHE_TTL_S) -> None:
        self.database = database
        self._viewers: TtlCache[str, Viewer | None] = TtlCache(ttl)

    async def by_token(self, token: str) -> Viewer | None:
        """The holder of an API token, or None."""
        if not token:
            return None
        # Keyed by the token's hash: the cache holds no usable secret.
        viewer, _ = await self._viewers.get("t" + token_hash(token), lambda: self.database.run(queries.viewer_by_token, token))
        return viewer

    async def by_user_id(self, user_id: int) -> Viewer | None:
        """The user of a session cookie, or None when it no longer exists."""
        viewer, _ = await self._viewers.get(f"u{user_id}", lambda: self.database.run(queries.viewer_by_id, user_id))
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
