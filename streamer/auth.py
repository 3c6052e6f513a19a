"""Who is asking: a login session's cookie or an `Authorization: Bearer` API token.

The cookie carries a session's random token (store/sessions.py), signed with
the process secret as well (Tornado's signed cookies: HMAC-SHA256 and a
timestamp), so a forged or random value costs no lookup. Lookups run in the
database executor behind a small cache with a short TTL: a dashboard opening a
stream, two snapshots and a strategy list costs one query, not four, and a
thousand clients connecting with one token at once share a single lookup.

Ending sessions (an `end_sessions` control message: logout, a password change,
a deactivated user) drops the cached answers they concern and is remembered for
revocations.MEMORY_S, like the hub's revocations: an answer read before the
message arrived, still in the cache or in flight, is refused (`ended`).
"""

from __future__ import annotations

import time
from collections.abc import Hashable

from tornado.httputil import HTTPHeaders, parse_cookie
from tornado.web import decode_signed_value

from bus.events import EndSessionsMessage
from store.auth import token_hash
from streamer import queries
from streamer.cache import TtlCache
from streamer.queries import Database, Viewer
from streamer.revocations import Ending, Revocations

SESSION_COOKIE = "tradestream_session"
CACHE_TTL_S = 5.0


def _targets(user_id: int, session_id: int | None) -> tuple[Hashable, ...]:
    """What ending would end a credential: its session, all of its user's sessions, its user (an API token: only that)."""
    if session_id is None:
        return (("user", user_id),)
    return ("session", session_id), ("sessions", user_id), ("user", user_id)


def _target(message: EndSessionsMessage) -> Hashable:
    if message.api_token:
        return ("user", message.user_id)
    if message.session_id is None:
        return ("sessions", message.user_id)
    return ("session", message.session_id)


def ends(message: EndSessionsMessage, user_id: int, session_id: int | None) -> bool:
    """Whether the message ends a credential: a user's login session, or (session_id None) their API token."""
    return user_id == message.user_id and _target(message) in _targets(user_id, session_id)


class Authenticator:
    """Resolves session tokens and API tokens to Viewers, cached for CACHE_TTL_S; remembers ended sessions."""

    def __init__(self, database: Database, ttl: float = CACHE_TTL_S) -> None:
        self.database = database
        self._viewers: TtlCache[str, Viewer | None] = TtlCache(ttl)
        self._ended = Revocations()

    async def by_token(self, token: str) -> tuple[Viewer | None, float]:
        """The holder of an API token (or None), and when that was read."""
        if not token:
            return None, time.monotonic()
        # Keyed by the token's hash: the cache holds no usable secret.
        return self._checked(await self._viewers.get("t" + token_hash(token), lambda: self.database.run(queries.viewer_by_token, token)))

    async def by_session(self, token: str) -> tuple[Viewer | None, float]:
        """The user of a session cookie's token (or None), and when that was read."""
        return self._checked(await self._viewers.get("s" + token_hash(token), lambda: self.database.run(queries.viewer_by_session, token)))

    def ended(self, viewer: Viewer, read_at: float) -> Ending | None:
        """How the viewer's credential ended after `read_at`, if it did."""
        return self._ended.since_any(_targets(viewer.id, viewer.session_id), read_at, time.monotonic())

    def end(self, message: EndSessionsMessage) -> None:
        """Forget what the message ends, and refuse answers about it read before now."""
        self._ended.remember(_target(message), Ending(message.reason, message.message), time.monotonic())
        self._viewers.forget_values(lambda viewer: viewer is not None and ends(message, viewer.id, viewer.session_id))

    def _checked(self, answer: tuple[Viewer | None, float]) -> tuple[Viewer | None, float]:
        viewer, read_at = answer
        if viewer is not None and self.ended(viewer, read_at) is not None:
            return None, read_at
        return viewer, read_at


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def cookie_token(value: bytes | None) -> str | None:
    """The session token a verified session cookie carries (URL-safe base64, as store.auth makes them)."""
    if value is None or not 0 < len(value) <= 128:
        return None
    try:
        token = value.decode("ascii")
    except UnicodeDecodeError:
        return None
    return token if token.replace("-", "").replace("_", "").isalnum() else None


def session_token(headers: HTTPHeaders, secret: str, max_age_days: float) -> str | None:
    """The session token of a request's valid signed session cookie, else None.

    What RequestHandler.get_signed_cookie reads (HTTPServerRequest.cookies: the
    Cookie header by parse_cookie; names SimpleCookie refuses are dropped, which
    SESSION_COOKIE is not), without a RequestHandler: the stream's lean path has none.
    Only Tornado's version 2 (what set_signed_cookie writes): its version 1 check
    logs a WARNING with the cookie's text for every value of the form `a|b|c`
    that fails it, which any client can send on every request.
    """
    header = headers.get("Cookie")
    value = None if header is None else parse_cookie(header).get(SESSION_COOKIE)
    return cookie_token(decode_signed_value(secret, SESSION_COOKIE, value, max_age_days=max_age_days, min_version=2))
